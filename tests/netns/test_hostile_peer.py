"""A peer that misbehaves on the wire: raw BGP messages through ExaBGP's real decoder.

a1 peers with the route reflector (as usual: FRR, or GoBGP with its default settings)
and, passively, with ``evil``: a raw socket speaking just enough BGP (tests/bgp_wire.py)
to send routes our own launcher would refuse to announce. Whatever it sends, the agent
core keeps running (same PID), installs nothing it should not, counts what it refused and
why, and traffic between the honest VTEPs is untouched. When evil's session ends, its
routes go at once: the honest reflector's table is complete (with GoBGP, which sends no
End-of-RIB, by its quiet period), so nothing needs holding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bgp_wire
import pytest
from bgp_wire import RawPeer

from lab.fabric import AgentProcess, Box, Fabric, Host, skip_unless_supported, wait_until
from lab.reflectors import add_reflector, missing_for

pytestmark = [pytest.mark.netns, pytest.mark.frr]

ASN = 65000
VNI = 100
GOOD_MAC = "02:00:5e:00:66:01"


@dataclass
class Lab:
    fab: Fabric
    a1: Box
    evil: Box
    agent: AgentProcess
    h1: Host
    h2: Host


@pytest.fixture(scope="module", params=["frr", "gobgp"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    kind: str = request.param
    skip_unless_supported()
    if missing := missing_for(kind):
        pytest.skip(f"{kind} reflector needs: " + ", ".join(missing))
    with Fabric("evhp") as fab:
        rr = add_reflector(fab, kind)
        try:
            a1 = fab.add_agent_vtep("a1", 21)
            a2 = fab.add_agent_vtep("a2", 22)
            for box in (a1, a2):
                box.add_vni(VNI)
            h1 = fab.add_host("h1", a1, VNI, "198.51.100.1/24")
            h2 = fab.add_host("h2", a2, VNI, "198.51.100.2/24")
            evil = fab.add_box("evil", 66)
            rr.start([a1, a2])
            agent = fab.start_agent(
                a1,
                rrs=[rr.box],
                settings={
                    "local-address": a1.address,
                    "route-reflectors": [
                        {"address": rr.address, "hold-time": 9},
                        {"address": evil.address, "hold-time": 9, "passive": True},
                    ],
                },
            )
            fab.start_agent(a2, rrs=[rr.box])
            for box in (a1, a2):
                rr.wait_established(box.address)
            wait_until(lambda: h1.ping(h2.ip), 20, "h1 -> h2 before anything hostile")
            yield Lab(fab, a1, evil, agent, h1, h2)
        except BaseException:
            print(fab.logs())
            print(rr.logs())
            raise
        finally:
            rr.stop()


def _connect(lab: Lab, *, graceful_restart: bool = False) -> RawPeer:
    def attempt() -> RawPeer | None:
        try:
            return RawPeer.connect(
                lab.evil.netns.name, lab.a1.address, lab.evil.address, ASN, lab.evil.address,
                hold=9, graceful_restart=graceful_restart,
            )  # fmt: skip
        except (ConnectionError, OSError):
            return None  # ExaBGP not listening yet, or still closing the previous session

    peer = wait_until(attempt, 30, "a session from evil to a1", interval=0.5)

    def up() -> bool:
        return _peer_row(lab.agent, lab.evil.address)["state"] == "Established"

    wait_until(up, 20, "a1 to see the session with evil up")
    return peer


def _peer_row(agent: AgentProcess, address: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = json.loads(agent.cli("show", "peers", "--json"))
    return next(row for row in rows if row["peer"] == address)


def _counters(agent: AgentProcess) -> dict[str, int]:
    counters: dict[str, int] = json.loads(agent.cli("show", "counters", "--json"))["counters"]
    return counters


def _fdb(box: Box) -> str:
    return box.netns.bridge("fdb", "show", "dev", f"vxlan{VNI}")


def test_semantically_hostile_routes_are_refused_and_counted(lab: Lab) -> None:
    core = lab.agent.core_pid()
    peer = _connect(lab)
    try:
        evil = lab.evil.address
        rd = f"{evil}:{VNI}"
        rt = (ASN, VNI)
        before = _counters(lab.agent)
        sent = {
            # broadcast and multicast MACs: never a host
            "multicast-mac": [
                bgp_wire.update(bgp_wire.mac_nlri(rd, "ff:ff:ff:ff:ff:ff", VNI), evil, rt),
                bgp_wire.update(bgp_wire.mac_nlri(rd, "01:00:5e:00:00:01", VNI), evil, rt),
            ],
            "zero-mac": [
                bgp_wire.update(bgp_wire.mac_nlri(rd, "00:00:00:00:00:00", VNI), evil, rt)
            ],
            # a next hop that cannot be a VTEP
            "martian-nexthop": [
                bgp_wire.update(bgp_wire.mac_nlri(rd, "02:00:5e:00:66:02", VNI), "127.0.0.1", rt),
                bgp_wire.update(bgp_wire.mac_nlri(rd, "02:00:5e:00:66:03", VNI), "224.0.0.5", rt),
            ],
            # our own VTEP as the next hop: would loop our traffic back to us
            "own-vtep": [
                bgp_wire.update(bgp_wire.mac_nlri(rd, "02:00:5e:00:66:04", VNI), lab.a1.address, rt)
            ],
            # a VNI that is not configured here (tenant isolation), by RT and by label
            "vni-not-local": [
                bgp_wire.update(bgp_wire.mac_nlri(rd, "02:00:5e:00:66:05", 999), evil, (ASN, 999)),
                bgp_wire.update(
                    bgp_wire.imet_nlri(f"{evil}:999", evil), evil, (ASN, 999), pmsi=(999, evil)
                ),
            ],
            # route types an L2 VTEP has no use for: IP prefix, and one nobody defined
            "unsupported-route-type": [
                bgp_wire.update(bgp_wire.prefix_nlri(rd, "203.0.113.0/24", VNI), evil, rt),
                bgp_wire.update(bgp_wire.raw_nlri(42, bytes(20)), evil, rt),
            ],
            # a type 3 without its PMSI tunnel
            "no-pmsi": [bgp_wire.update(bgp_wire.imet_nlri(rd, evil), evil, rt)],
        }
        for messages in sent.values():
            for data in messages:
                peer.send(data)
        # and one honest route last: once it is installed, everything before it was read
        peer.send(bgp_wire.update(bgp_wire.mac_nlri(rd, GOOD_MAC, VNI), evil, rt))
        wait_until(lambda: GOOD_MAC in _fdb(lab.a1), 20, "the honest route from evil installed")

        after = _counters(lab.agent)
        refused = {
            reason: after.get(f"rejected:{reason}", 0) - before.get(f"rejected:{reason}", 0)
            for reason in sent
        }
        print(f"refused, by reason: {refused}")
        assert refused == {reason: len(messages) for reason, messages in sent.items()}
        fdb = _fdb(lab.a1)
        for bad in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "02:00:5e:00:66:0"):
            assert bad not in fdb.replace(GOOD_MAC, "")
        assert "127.0.0.1" not in fdb and "224.0.0.5" not in fdb
        assert "vxlan999" not in lab.a1.netns.ip("link", "show")
    finally:
        peer.close()
    wait_until(lambda: GOOD_MAC not in _fdb(lab.a1), 20, "evil's route gone with its session")
    assert lab.agent.core_pid() == core, "the core never died"
    wait_until(lambda: lab.h1.ping(lab.h2.ip), 10, "h1 -> h2 untouched")


def _malformed(what: str, rd: str) -> bytes:
    if what == "mac-length-47":
        return bgp_wire.mac_nlri(rd, "02:00:5e:00:66:10", VNI, mac_bits=47)
    if what == "truncated-nlri":
        return bgp_wire.mac_nlri(rd, "02:00:5e:00:66:11", VNI, cut=3)
    assert what == "ip-length-33"
    return bgp_wire.mac_nlri(rd, "02:00:5e:00:66:12", VNI, "198.51.100.12", ip_bits=33)


@pytest.mark.parametrize("what", ["mac-length-47", "truncated-nlri", "ip-length-33"])
def test_malformed_update_costs_only_that_session(lab: Lab, what: str) -> None:
    """ExaBGP answers a malformed NLRI with NOTIFICATION 3 (UPDATE message error) and drops
    that session; the agent forgets exactly that peer's routes and nothing else."""
    core = lab.agent.core_pid()
    peer = _connect(lab)
    evil = lab.evil.address
    rd = f"{evil}:{VNI}"
    try:
        peer.send(bgp_wire.update(bgp_wire.mac_nlri(rd, GOOD_MAC, VNI), evil, (ASN, VNI)))
        wait_until(lambda: GOOD_MAC in _fdb(lab.a1), 20, "evil's honest route installed")
        peer.send(bgp_wire.update(_malformed(what, rd), evil, (ASN, VNI)))
        wait_until(peer.closed.is_set, 20, "a1 to close the session")
    finally:
        peer.close()
    assert peer.notification is not None and peer.notification[0] == 3, peer.notification
    print(f"{what}: NOTIFICATION {peer.notification[:2].hex()} {peer.notification[2:]!r}")
    wait_until(lambda: GOOD_MAC not in _fdb(lab.a1), 20, "evil's routes gone with its session")
    row = _peer_row(lab.agent, evil)
    assert row["state"] == "Down" and row["lastError"].startswith("notification sent (3,")
    assert lab.agent.core_pid() == core, "the core never died"
    assert _peer_row(lab.agent, lab.fab.boxes["rr"].address)["state"] == "Established"
    assert lab.h2.mac in _fdb(lab.a1), "routes from the honest reflector untouched"
    wait_until(lambda: lab.h1.ping(lab.h2.ip), 10, "h1 -> h2 untouched")


def test_a_peer_that_promises_end_of_rib_and_sends_nothing_is_reset_once(lab: Lab) -> None:
    """What FRR 8.4 does to a dynamic peer in a race (frr#20120): the session is up,
    graceful restart promised an End-of-RIB, and nothing comes. A new session repairs it."""
    before = _counters(lab.agent).get("sessions-reset", 0)
    silent = _connect(lab, graceful_restart=True)
    try:
        assert _peer_row(lab.agent, lab.evil.address)["gracefulRestart"] is True
        # the agent resets it MARKER_WAIT (30 s) after it came up: the connection closes
        assert silent.closed.wait(60), "a1 reset the silent session"
        assert silent.notification is None  # graceful restart: the connection closes only
        assert _counters(lab.agent).get("sessions-reset", 0) == before + 1
        assert all(lab.h1.ping(lab.h2.ip) for _ in range(3)), "the honest reflector's routes"
    finally:
        silent.close()
