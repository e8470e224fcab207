"""GoBGP as the route reflector: two evpn-agent VTEPs and one FRR VTEP behind Debian's
GoBGP (3.10), with GoBGP's default neighbor settings and with graceful restart.

    rr (GoBGP, 192.0.2.1: passive, a static route-reflector client per VTEP)
    frr (FRR VTEP, .11)   a1 (agent, .21)   a2 (agent, .22)
    x1..x3 in VNI 100, y1..y3 in VNI 200, one of each behind every VTEP

What differs from the FRR reflector, checked here: GoBGP sends End-of-RIB only to a
neighbor with graceful restart, so without it the agent takes the table as complete after
a quiet period (the OPEN tells it that no marker will come); with graceful restart GoBGP
keeps a client's routes (marked stale) when its session ends without a NOTIFICATION, where
FRR 8.4 drops them. And GoBGP reflects what FRR 8.4 cannot: IPv6-underlay type 3 routes (last test).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lab import gobgp as gobgp_lab
from lab.fabric import (
    AgentProcess,
    Box,
    Fabric,
    Host,
    PeerScript,
    skip_unless_supported,
    wait_until,
)
from lab.gobgp import Client, Gobgp, start_gobgp

ZERO_MAC = "00:00:00:00:00:00"
STALE_MAC = "02:00:5e:99:99:99"  # an extern_learn entry left over from an earlier run
MODES = {"default": False, "graceful-restart": True}


def _skip_unless_gobgp() -> None:
    skip_unless_supported()
    missing = gobgp_lab.missing_requirements()
    if missing:
        pytest.skip("GoBGP reflector needs: " + ", ".join(missing) + " (Debian: gobgpd)")


def _fdb(box: Box, device: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(box.netns.bridge("-j", "fdb", "show", "dev", device))
    return entries


def _entries(box: Box, device: str, mac: str) -> set[tuple[object, ...]]:
    """A MAC's entries on a VXLAN device: flags, state and destination (not the ifindex)."""
    return {
        (tuple(sorted(e.get("flags", []))), e.get("state"), e.get("master"), e.get("dst"))
        for e in _fdb(box, device)
        if e["mac"] == mac
    }


def _flood(box: Box, device: str) -> set[str]:
    return {e["dst"] for e in _fdb(box, device) if e["mac"] == ZERO_MAC}


def _paths_from(gobgp: Gobgp, address: str) -> dict[str, list[bool]]:
    """The reflector's EVPN paths learned from ``address``: prefix -> stale flags."""
    return {
        prefix: [bool(p.get("stale")) for p in paths if p.get("neighbor-ip") == address]
        for prefix, paths in gobgp.evpn_rib().items()
        if any(p.get("neighbor-ip") == address for p in paths)
    }


# ---------------------------------------------------------------- the rendered configuration


def test_rendered_config_is_a_passive_route_reflector() -> None:
    text = gobgp_lab.render_config(
        router_id="192.0.2.1",
        listen_address="192.0.2.1",
        clients=[Client("192.0.2.21"), Client("192.0.2.22", graceful_restart=True)],
    )
    config = tomllib.loads(text)
    assert config["global"]["config"] == {
        "as": 65000,
        "router-id": "192.0.2.1",
        "local-address-list": ["192.0.2.1"],
        "port": 179,
    }
    plain, graceful = config["neighbors"]
    for neighbor, address in ((plain, "192.0.2.21"), (graceful, "192.0.2.22")):
        assert neighbor["config"] == {"neighbor-address": address, "peer-as": 65000}
        assert neighbor["transport"]["config"]["passive-mode"] is True
        assert neighbor["route-reflector"]["config"] == {
            "route-reflector-client": True,
            "route-reflector-cluster-id": "192.0.2.1",
        }
        [family] = neighbor["afi-safis"]
        assert family["config"] == {"afi-safi-name": "l2vpn-evpn"}
    assert "graceful-restart" not in plain
    assert "mp-graceful-restart" not in plain["afi-safis"][0]
    assert graceful["graceful-restart"]["config"] == {"enabled": True, "restart-time": 120}
    assert graceful["afi-safis"][0]["mp-graceful-restart"]["config"] == {"enabled": True}


# ---------------------------------------------------------------- IPv4 fabric, both modes


@dataclass
class Topology:
    fab: Fabric
    rr: Box
    gobgp: Gobgp
    frr: Box
    a1: Box
    a2: Box
    agents: dict[str, AgentProcess]
    hosts: dict[str, Host]
    graceful_restart: bool


@pytest.fixture(scope="module", params=list(MODES))
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    _skip_unless_gobgp()
    graceful_restart = MODES[request.param]
    with Fabric("evgo") as fab:
        gobgp: Gobgp | None = None
        try:
            rr = fab.add_box("rr", 1)  # GoBGP runs here once the clients' addresses exist
            frr = fab.add_frr_vtep("frr", 11, rrs=[rr])
            a1 = fab.add_agent_vtep("a1", 21)
            a2 = fab.add_agent_vtep("a2", 22)
            hosts: dict[str, Host] = {}
            for n, box in enumerate((frr, a1, a2), start=1):
                box.add_vni(100)
                box.add_vni(200)
                hosts[f"x{n}"] = fab.add_host(f"x{n}", box, 100, f"198.51.100.{n}/24")
                hosts[f"y{n}"] = fab.add_host(f"y{n}", box, 200, f"198.51.100.{100 + n}/24")
            # Left by "an earlier run": only a complete table (End-of-RIB) lets a1 remove it.
            a1.netns.bridge(
                "fdb", "add", STALE_MAC, "dev", "vxlan100", "dst", "192.0.2.99", "self",
                "extern_learn",
            )  # fmt: skip
            gobgp = start_gobgp(
                rr,
                [Client(b.address, graceful_restart=graceful_restart) for b in (frr, a1, a2)],
            )
            agents = {b.name: fab.start_agent(b, rrs=[rr]) for b in (a1, a2)}
            for box in (frr, a1, a2):
                gobgp.wait_established(box.address)
            yield Topology(fab, rr, gobgp, frr, a1, a2, agents, hosts, graceful_restart)
        except BaseException:
            print(fab.logs())
            if gobgp is not None:
                print(gobgp.logs())
            raise
        finally:
            if gobgp is not None:
                gobgp.stop()


@pytest.mark.netns
@pytest.mark.frr
def test_every_host_reaches_its_vni_and_never_the_other(topo: Topology) -> None:
    hosts = list(topo.hosts.values())
    for src, dst in itertools.permutations(hosts, 2):
        if src.vni == dst.vni:
            wait_until(functools.partial(src.ping, dst.ip), 20, f"{src.name} -> {dst.name}")
    for src, dst in itertools.permutations(hosts, 2):
        if src.vni != dst.vni:
            assert not src.ping(dst.ip, timeout=0.3), f"{src.name} reached {dst.name} across VNIs"


def _same_as_frr(topo: Topology, box: Box, device: str, mac: str) -> bool:
    ours = _entries(box, device, mac)
    return len(ours) == 2 and ours == _entries(topo.frr, device, mac)


def _floods_to(box: Box, device: str, vteps: set[str]) -> bool:
    return _flood(box, device) == vteps


@pytest.mark.netns
@pytest.mark.frr
def test_agents_install_what_the_frr_vtep_installs(topo: Topology) -> None:
    # Every MAC behind one agent is remote for the other agent and for the FRR VTEP: both
    # must hold the same entries for it (bridge entry + VXLAN entry toward the same VTEP).
    for here, there in ((topo.a1, topo.a2), (topo.a2, topo.a1)):
        for vni, letter in ((100, "x"), (200, "y")):
            device = f"vxlan{vni}"
            [host] = [h for h in topo.hosts.values() if h.box is there and h.vni == vni]
            peer = topo.hosts[f"{letter}1"]  # behind the FRR VTEP
            wait_until(functools.partial(host.ping, peer.ip), 20, f"{host.name} -> {peer.name}")
            wait_until(
                functools.partial(_same_as_frr, topo, here, device, host.mac),
                20,
                f"{host.name}'s entries on {here.name} equal the FRR VTEP's",
            )
            assert {dst for *_, dst in _entries(here, device, host.mac)} == {None, there.address}
            # Flood lists: one entry per remote VTEP, with the FRR VTEP's flags.
            others = {topo.frr.address, there.address}
            wait_until(
                functools.partial(_floods_to, here, device, others),
                20,
                f"{here.name} {device} floods to {sorted(others)}",
            )
            ours = {e[:3] for e in _entries(here, device, ZERO_MAC)}
            assert ours == {e[:3] for e in _entries(topo.frr, device, ZERO_MAC)}
    # Nothing of VNI 200 leaked into VNI 100's device.
    assert not _entries(topo.a1, "vxlan100", topo.hosts["y3"].mac)


@pytest.mark.netns
@pytest.mark.frr
def test_end_of_rib_only_with_graceful_restart(topo: Topology) -> None:
    gr = topo.graceful_restart

    def rows() -> list[dict[str, Any]]:
        return [
            row
            for agent in topo.agents.values()
            for row in json.loads(agent.cli("show", "peers", "--json"))
        ]

    # With graceful restart the marker follows GoBGP's initial table at once; without,
    # GoBGP 3.10 sends none: 5 s into the sessions, with every route received, still none.
    wait_until(
        lambda: all(r["state"] == "Established" and r["uptimeSeconds"] >= 5 for r in rows()),
        20,
        "both agents' sessions up for 5 s",
    )
    assert all(r["routesReceived"] >= 4 for r in rows())  # the other two VTEPs' type 3s
    assert [r["endOfRib"] for r in rows()] == [gr, gr]
    assert all(r["peer"] == topo.rr.address for r in rows())
    # FRR's own record of what it received agrees.
    info = topo.frr.vtysh_json(f"show bgp neighbors {topo.rr.address} json")[topo.rr.address]
    assert info["gracefulRestartInfo"]["endOfRibRecv"] == ({"l2VpnEvpn": True} if gr else {})
    neighbor = topo.gobgp.neighbor(topo.a1.address)
    assert bool(neighbor["graceful_restart"].get("enabled")) is gr


@pytest.mark.netns
@pytest.mark.frr
def test_stale_entries_are_swept_with_or_without_end_of_rib(topo: Topology) -> None:
    """With graceful restart the End-of-RIB completes the table; without, GoBGP sends no
    marker and the agent takes the table as complete after a quiet period (3 s)."""
    agent = topo.agents["a1"]
    wait_until(
        lambda: not _entries(topo.a1, "vxlan100", STALE_MAC), 30, "a1 sweeps the stale entry"
    )
    [peer] = json.loads(agent.cli("show", "peers", "--json"))
    assert peer["tableComplete"] is True
    assert peer["completeBy"] == ("end-of-rib" if topo.graceful_restart else "quiet-period")
    assert peer["gracefulRestart"] is topo.graceful_restart
    assert peer["enhancedRefresh"] is False  # GoBGP has no enhanced route refresh
    assert json.loads(agent.cli("reconcile", "--dry-run", "--json"))["sweeping"] is True
    text = agent.cli("show", "peers")
    assert ("complete: end-of-rib" if topo.graceful_restart else "complete: quiet-period") in text


@pytest.mark.netns
@pytest.mark.frr
def test_client_reset_without_notification(topo: Topology) -> None:
    """a1's session ends with a TCP reset (a1's ExaBGP frozen, its socket destroyed): with
    graceful restart GoBGP keeps a1's routes, marked stale, and a2 keeps forwarding to a1;
    without, GoBGP withdraws them at once. Runs last: it adds a host."""
    a1, a2, frr = topo.a1, topo.a2, topo.frr
    x2, x3 = topo.hosts["x2"], topo.hosts["x3"]  # behind a1, a2
    wait_until(lambda: x2.ping(x3.ip), 20, "x2 -> x3")
    wait_until(lambda: _flood(a2, "vxlan100") == {frr.address, a1.address}, 20, "a2 floods to a1")
    before = _entries(a2, "vxlan100", x2.mac)
    assert {dst for *_, dst in before} == {None, a1.address}
    assert _paths_from(topo.gobgp, a1.address)

    speaker = topo.agents["a1"]  # ExaBGP's PID: the agent execs it
    os.kill(speaker.pid, signal.SIGSTOP)
    try:
        a1.exec("ss", "-K", "-tn", "dst", topo.rr.address, "dport", "=", ":179")
        if a1.exec("ss", "-Htn", "dst", topo.rr.address, "dport", "=", ":179").strip():
            pytest.skip("this kernel cannot destroy sockets (ss -K, CONFIG_INET_DIAG_DESTROY)")
        wait_until(
            lambda: topo.gobgp.session_state(a1.address) != "established",
            10,
            "GoBGP sees a1's session end",
        )
        # Barrier: a new MAC behind the FRR VTEP reaches a2 through GoBGP after whatever
        # GoBGP sent a2 about the reset.
        z = topo.fab.add_host("z1", frr, 100, "198.51.100.9/24")
        wait_until(lambda: z.ping(topo.hosts["x1"].ip), 10, "z1 is learned by the FRR VTEP")
        wait_until(lambda: _entries(a2, "vxlan100", z.mac), 20, "z1's MAC reaches a2")
        held = _paths_from(topo.gobgp, a1.address)
        if topo.graceful_restart:
            assert held and all(all(flags) for flags in held.values()), held
            assert _entries(a2, "vxlan100", x2.mac) == before
            assert a1.address in _flood(a2, "vxlan100")
        else:
            assert held == {}
            wait_until(lambda: not _entries(a2, "vxlan100", x2.mac), 10, "x2 gone from a2")
            assert _flood(a2, "vxlan100") == {frr.address}
    finally:
        os.kill(speaker.pid, signal.SIGCONT)
    topo.gobgp.wait_established(a1.address)
    # a1's End-of-RIB (ExaBGP sends one at session up) ends the helper's stale state.
    wait_until(
        lambda: (
            (paths := _paths_from(topo.gobgp, a1.address))
            and not any(any(flags) for flags in paths.values())
        ),
        20,
        "a1's routes fresh on GoBGP",
    )
    wait_until(lambda: x2.ping(x3.ip), 20, "x2 -> x3 after the reset")
    assert _entries(a2, "vxlan100", x2.mac) == before


# ---------------------------------------------------------------- IPv6 underlay


PS_MAC = "02:00:5e:00:03:01"
PS_IPS = ("198.51.100.31", "2001:db8:100::31")


@dataclass
class Underlay6:
    fab: Fabric
    gobgp: Gobgp
    a1: Box
    a2: Box
    ps: Box
    peer: PeerScript
    hosts: dict[str, Host]


@pytest.fixture(scope="module")
def v6() -> Iterator[Underlay6]:
    """Two agents and an ExaBGP peer script (MAC+IP routes) on 2001:db8::/64, all
    clients of GoBGP (default settings); FRR 8.4 as RR resets on their type 3 routes."""
    _skip_unless_gobgp()
    with Fabric("evgo6", underlay6=True) as fab:
        gobgp: Gobgp | None = None
        try:
            rr = fab.add_box("rr", 1)
            a1 = fab.add_agent_vtep("a1", 21)
            a2 = fab.add_agent_vtep("a2", 22)
            ps = fab.add_box("ps", 31)
            hosts: dict[str, Host] = {}
            for n, box in enumerate((a1, a2), start=1):
                for vni, letter, last in ((100, "x", n), (200, "y", 100 + n)):
                    box.add_vni(vni)
                    hosts[f"{letter}{n}"] = fab.add_host(
                        f"{letter}{n}",
                        box,
                        vni,
                        f"198.51.100.{last}/24",
                        extra_addresses=[f"2001:db8:100::{last}/64"],
                    )
            gobgp = start_gobgp(rr, [Client(b.address) for b in (a1, a2, ps)])
            for box in (a1, a2):
                fab.start_agent(box, rrs=[rr])
            peer = fab.start_peer_script(
                ps,
                peers=[rr],
                on_up=[
                    f"announce evpn mac rd 192.0.2.31:100 mac {PS_MAC} ip {ip} label 100"
                    f" next-hop {ps.address} rt 65000:100"
                    for ip in PS_IPS
                ],
            )
            for box in (a1, a2, ps):
                gobgp.wait_established(box.address)
            yield Underlay6(fab, gobgp, a1, a2, ps, peer, hosts)
        except BaseException:
            print(fab.logs())
            if gobgp is not None:
                print(gobgp.logs())
            raise
        finally:
            if gobgp is not None:
                gobgp.stop()


@pytest.mark.netns
@pytest.mark.frr
def test_ipv6_underlay_through_gobgp(v6: Underlay6) -> None:
    hosts = list(v6.hosts.values())
    for src, dst in itertools.permutations(hosts, 2):
        addresses = (dst.ip, dst.extra_addresses[0].split("/")[0])
        for address in addresses:
            if src.vni == dst.vni:
                wait_until(functools.partial(src.ping, address), 20, f"{src.name} -> {address}")
            else:
                assert not src.ping(address, timeout=0.3), f"{src.name} reached {address}"
    for box, other in ((v6.a1, v6.a2), (v6.a2, v6.a1)):
        for vni in (100, 200):
            assert _flood(box, f"vxlan{vni}") == {other.address}
    # GoBGP holds the type 3 routes with their 16-byte PMSI tunnel endpoint ...
    type3 = {
        prefix: {a["type"]: a for a in paths[0]["attrs"]}
        for prefix, paths in v6.gobgp.evpn_rib().items()
        if prefix.startswith("[type:multicast]")
    }
    assert len(type3) == 4
    for attrs in type3.values():
        assert attrs[22]["tunnel-id"] == attrs[14]["nexthop"]
        assert attrs[14]["nexthop"] in (v6.a1.address, v6.a2.address)
    # ... and MAC+IP routes with a 16-byte next hop become a1's neighbours toward ps.
    for ip in PS_IPS:
        family = "-6" if ":" in ip else "-4"

        def neighbour(ip: str = ip, family: str = family) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = json.loads(
                v6.a1.netns.ip("-j", family, "neigh", "show", "dev", "br100", ip)
            )
            return out

        [entry] = wait_until(neighbour, 20, f"{ip} neighbour on a1")
        assert entry["lladdr"] == PS_MAC and "extern_learn" in entry
    assert {e.get("dst") for e in _fdb(v6.a1, "vxlan100") if e["mac"] == PS_MAC} == {
        None,
        v6.ps.address,
    }
