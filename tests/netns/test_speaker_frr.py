"""Integration: our speaker (ExaBGP + EVPN commands) against real FRR in namespaces.

    RR (FRR, 192.0.2.1) <- FRR VTEP (192.0.2.11, VNI 100, host h1)
                        <- our speaker (192.0.2.21), API process tests/speaker_peer.py

The speaker announces a type 3 and a type 2 on session up; the tests check what FRR's
VTEP made of them (kernel FDB, EVPN tables, BGP) and drive further announces/withdraws.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.fabric import Box, Fabric, Host, PeerScript, run, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]

OWN = "192.0.2.21"
FRR_VTEP = "192.0.2.11"
RD = f"{OWN}:1"
MAC_A = "02:00:5e:00:01:01"
IP_A = "198.51.100.21"
TYPE3 = f"announce evpn multicast rd {RD} ip {OWN} label 100 next-hop {OWN} rt 65000:100"
TYPE2 = f"announce evpn mac rd {RD} mac {MAC_A} ip {IP_A} label 100 next-hop {OWN} rt 65000:100"
H1_MAC = "02:00:5e:00:00:01"


@dataclass
class Lab:
    fabric: Fabric
    rr: Box
    vtep: Box
    h1: Host
    peer: PeerScript

    def vxlan_fdb(self) -> str:
        return self.vtep.fdb("vxlan100")

    def evpn_mac(self, mac: str) -> dict[str, Any] | None:
        """The FRR VTEP's ``show evpn mac`` entry for ``mac`` in VNI 100, if any."""
        entry = self.vtep.vtysh_json(f"show evpn mac vni 100 mac {mac} json")
        value = entry.get(mac)
        return value if isinstance(value, dict) else None

    def bgp_paths(self, rd: str, prefix: str) -> list[dict[str, Any]]:
        """Paths the FRR VTEP holds for ``prefix`` (e.g. ``[3]:[0]:[32]:[ip]``) in ``rd``."""
        table = self.vtep.vtysh_json("show bgp l2vpn evpn route detail json")
        entry = table.get(rd, {}).get(prefix, {})
        return [path for group in entry.get("paths", []) for path in group]

    def send_and_ack(self, line: str) -> str:
        """Send one command; return ExaBGP's ack for it (done or error)."""
        before = len(self.peer.acks())
        self.peer.send(line)
        wait_until(lambda: len(self.peer.acks()) > before, 10, f"ack for {line!r}")
        return self.peer.acks()[before]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    skip_unless_supported()
    with Fabric("spk") as fab:
        try:
            rr = fab.add_route_reflector("rr", 1)
            vtep = fab.add_frr_vtep("vtep1", 11, rrs=[rr])
            vtep.add_vni(100, svi_addresses=["198.51.100.254/24"])
            h1 = fab.add_host("h1", vtep, 100, "198.51.100.1/24", H1_MAC)
            fab.wait_established(rr, vtep.address)
            speaker_box = fab.add_box("spk", 21)
            peer = fab.start_peer_script(speaker_box, peers=[rr], on_up=[TYPE3, TYPE2])
            fab.wait_established(rr, OWN)
            wait_until(lambda: h1.ping("198.51.100.254"), 10, "h1 reaches the SVI")
            yield Lab(fab, rr, vtep, h1, peer)
        except BaseException:
            # pytest does not show fixture teardown output: print the logs while we can
            print(fab.logs())
            raise


def test_type3_installs_flood_entry(lab: Lab) -> None:
    wait_until(
        lambda: re.search(rf"^00:00:00:00:00:00 dst {OWN} self permanent", lab.vxlan_fdb(), re.M),
        10,
        "flood entry toward our VTEP",
    )
    (path,) = lab.bgp_paths(RD, f"[3]:[0]:[32]:[{OWN}]")
    # PMSI label = raw VNI (FRR shows 1601 for an MPLS-encoded 100)
    assert path["pmsi"] == {"tunnelType": "Ingress Replication", "label": 100}
    assert "RT:65000:100" in path["extendedCommunity"]["string"]
    assert "ET:8" in path["extendedCommunity"]["string"]


def test_type2_installs_remote_mac(lab: Lab) -> None:
    wait_until(
        lambda: re.search(rf"^{MAC_A} dst {OWN} self extern_learn", lab.vxlan_fdb(), re.M),
        10,
        "our MAC on vxlan100, pointing at our VTEP",
    )
    entry = lab.evpn_mac(MAC_A)
    assert entry is not None
    assert entry["type"] == "remote"
    assert entry["remoteVtep"] == OWN
    arp = lab.vtep.vtysh_json("show evpn arp-cache vni 100 json")
    assert arp[IP_A]["type"] == "remote"
    assert arp[IP_A]["mac"] == MAC_A
    assert arp[IP_A]["remoteVtep"] == OWN


def test_type2_label_is_the_vni(lab: Lab) -> None:
    wait_until(lambda: lab.evpn_mac(MAC_A), 10, "our MAC in FRR")
    (path,) = lab.bgp_paths(RD, f"[2]:[0]:[48]:[{MAC_A}]:[32]:[{IP_A}]")
    assert path["vni"] == "100"  # not "1601"
    assert [hop["ip"] for hop in path["nexthops"]] == [OWN]


def test_mobility_sequence_and_withdraw(lab: Lab) -> None:
    mac = "02:00:5e:00:01:0b"
    route = f"announce evpn mac rd {RD} mac {mac} label 100 next-hop {OWN} rt 65000:100"
    assert lab.send_and_ack(route + " mobility 5") == "done"
    wait_until(lambda: (lab.evpn_mac(mac) or {}).get("remoteSequence") == 5, 10, "FRR sees seq 5")
    assert lab.send_and_ack(route + " mobility 6") == "done"
    wait_until(lambda: (lab.evpn_mac(mac) or {}).get("remoteSequence") == 6, 10, "FRR sees seq 6")
    assert "MM:6" in lab.bgp_paths(RD, f"[2]:[0]:[48]:[{mac}]")[0]["extendedCommunity"]["string"]
    assert mac in lab.vxlan_fdb()

    withdraw = f"withdraw evpn mac rd {RD} mac {mac} label 100 next-hop {OWN}"
    assert lab.send_and_ack(withdraw) == "done"
    wait_until(lambda: mac not in lab.vxlan_fdb(), 10, "remote MAC gone from vxlan100")
    wait_until(lambda: lab.evpn_mac(mac) is None, 10, "remote MAC gone from FRR")
    assert lab.bgp_paths(RD, f"[2]:[0]:[48]:[{mac}]") == []


def test_sticky_mac(lab: Lab) -> None:
    mac = "02:00:5e:00:01:0c"
    route = f"announce evpn mac rd {RD} mac {mac} label 100 next-hop {OWN} rt 65000:100"
    assert lab.send_and_ack(route + " mobility 0 sticky") == "done"
    wait_until(lambda: lab.bgp_paths(RD, f"[2]:[0]:[48]:[{mac}]"), 10, "sticky route in FRR")
    communities = lab.bgp_paths(RD, f"[2]:[0]:[48]:[{mac}]")[0]["extendedCommunity"]["string"]
    assert "MM:0, sticky MAC" in communities
    assert lab.send_and_ack(f"withdraw evpn mac rd {RD} mac {mac} label 100 next-hop {OWN}") == (
        "done"
    )
    wait_until(lambda: not lab.bgp_paths(RD, f"[2]:[0]:[48]:[{mac}]"), 10, "sticky route gone")


def test_type3_withdraw_removes_flood_entry(lab: Lab) -> None:
    flood = rf"^00:00:00:00:00:00 dst {OWN} "
    wait_until(lambda: re.search(flood, lab.vxlan_fdb(), re.M), 10, "flood entry")
    withdraw = f"withdraw evpn multicast rd {RD} ip {OWN} label 100 next-hop {OWN}"
    assert lab.send_and_ack(withdraw) == "done"
    wait_until(lambda: not re.search(flood, lab.vxlan_fdb(), re.M), 10, "flood entry removed")
    assert lab.send_and_ack(TYPE3) == "done"  # put it back for the other tests
    wait_until(lambda: re.search(flood, lab.vxlan_fdb(), re.M), 10, "flood entry back")


def test_bad_commands_are_answered_error(lab: Lab) -> None:
    bad = [
        TYPE2.replace(MAC_A, "01:00:5e:00:00:01"),  # multicast MAC
        TYPE2.replace("label 100", "label 16777216"),
        TYPE2.replace(f"rd {RD}", "rd 192.0.2.21:65536"),
        f"neighbor 192.0.2.99 {TYPE2}",  # not our peer
    ]
    for line in bad:
        assert lab.send_and_ack(line) == "error", line
    assert lab.peer.speaker.running()
    stderr = lab.peer.speaker.stderr_path.read_text()
    assert "multicast or broadcast" in stderr
    assert "no neighbor matches" in stderr
    assert lab.send_and_ack(f"neighbor 192.0.2.1 {TYPE2}") == "done"


def test_receives_frr_routes_and_own_reflections(lab: Lab) -> None:
    def announced() -> list[tuple[str | None, dict[str, Any]]]:
        found = []
        for message in lab.peer.messages():
            update = message.get("neighbor", {}).get("message", {}).get("update", {})
            origin = update.get("attribute", {}).get("originator-id")
            for nlris in update.get("announce", {}).get("l2vpn evpn", {}).values():
                found += [(origin, nlri) for nlri in nlris]
        return found

    def frr_mac() -> bool:
        return any(
            origin == FRR_VTEP and n["code"] == 2 and n["mac"] == H1_MAC.upper()
            for origin, n in announced()
        )

    wait_until(frr_mac, 10, "the FRR VTEP's type 2 for h1")
    frr_type3 = [n for origin, n in announced() if origin == FRR_VTEP and n["code"] == 3]
    assert frr_type3 and frr_type3[0]["ip"] == FRR_VTEP
    own = [n for origin, n in announced() if origin == OWN]
    assert {n["code"] for n in own} >= {2, 3}  # the RR reflects our routes back to us


def test_evpn_updates_reach_the_api_as_bytes_not_decoded_by_exabgp(lab: Lab) -> None:
    # A second speaker with the receive fast path on (the lab's peer scripts turn it off
    # to record ExaBGP's JSON): what FRR's reflector sends reaches the API process as
    # wire-update lines (the UPDATEs' bytes) or wire-events lines (decoded by the launcher
    # in ExaBGP's process while the API process is behind), which read as FRR's routes and
    # End-of-RIB, and ExaBGP writes no JSON for any of it.
    from evpn_agent.model import EndOfRib, ImetRoute, MacRoute, RouteAnnounced, one_per_route
    from evpn_agent.speaker.wire_decode import decode_update
    from evpn_agent.speaker.wire_records import decode_events
    from lab.fabric import PEER_SCRIPT, PYTHON

    box = lab.fabric.add_box("wire", 22)
    record = box.directory / "received.jsonl"
    argv = [PYTHON, str(PEER_SCRIPT), "--record", str(record)]
    lab.fabric.start_speaker(box, peers=[lab.rr], process_argv=argv)

    def events() -> list[Any]:
        lines = record.read_text().splitlines() if record.exists() else []
        found = []
        for line in lines:
            # the UPDATEs queued behind one come in its line
            if line.startswith("wire-events "):
                _, peer, stamp, payload = line.split()
                assert peer == lab.rr.address and float(stamp) > 0
                found += decode_events(payload.encode(), peer)
            elif line.startswith("wire-update "):
                _, peer, stamp, *bodies = line.split()
                assert peer == lab.rr.address and float(stamp) > 0 and bodies
                for body in bodies:
                    found += decode_update(bytes.fromhex(body), peer, box.router_id)
        return one_per_route(found)  # a route an event, however the lines came

    def frr_routes() -> bool:
        routes = [e.route for e in events() if isinstance(e, RouteAnnounced)]
        return any(
            isinstance(r, MacRoute) and r.key.mac == H1_MAC and r.vtep == FRR_VTEP for r in routes
        ) and any(isinstance(r, ImetRoute) and r.vtep == FRR_VTEP for r in routes)

    wait_until(frr_routes, 10, "FRR's type 2 and type 3 as wire lines")
    assert EndOfRib(lab.rr.address) in events()
    parsed_updates = [
        line for line in record.read_text().splitlines() if '"type": "update"' in line
    ]
    assert parsed_updates == []


def test_route_refresh_is_accepted(lab: Lab) -> None:
    # what a respawned agent core sends to get the table again
    before = len(lab.peer.messages())
    assert lab.send_and_ack("announce route-refresh l2vpn evpn") == "done"
    wait_until(lambda: len(lab.peer.messages()) > before, 10, "routes re-sent after refresh")


# ---------------------------------------------------------------- the harness itself


def _netns_names() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line}


def _alive(pid: int) -> bool:
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:1])
    )


def test_fabric_cleans_up_even_on_error() -> None:
    skip_unless_supported()
    pids: list[int] = []
    names: set[str] = set()
    with pytest.raises(RuntimeError, match="test failure"), Fabric("cln") as fab:
        rr = fab.add_route_reflector("rr", 1)
        box = fab.add_box("spk", 21)
        peer = fab.start_peer_script(box, peers=[rr], on_up=[TYPE3])
        fab.wait_established(rr, OWN)
        assert rr.frr is not None
        pids = [pid for d in ("zebra", "bgpd") if (pid := rr.frr.pid(d)) is not None]
        pids.append(peer.speaker.pid)
        pids += [int(p) for p in run(["ip", "netns", "pids", box.netns.name]).split()]
        names = {netns.name for netns in fab.namespaces}
        assert len(set(pids)) >= 4  # zebra, bgpd, ExaBGP, the peer script
        raise RuntimeError("test failure")
    assert names and not names & _netns_names()
    assert [pid for pid in pids if _alive(pid)] == []
    assert not fab.workdir.exists()


def test_missing_requirements_names_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab import fabric

    monkeypatch.setattr(fabric.os, "geteuid", lambda: 1000)
    assert "root (network namespaces)" in fabric.missing_requirements()


def test_vtysh_json_helpers(lab: Lab) -> None:
    from lab import fabric

    summary = fabric.vtysh_json(lab.rr, "show bgp l2vpn evpn summary json")
    assert summary["peers"][OWN]["state"] == "Established"
    assert "dynamic neighbor" in fabric.vtysh(lab.rr, "show bgp l2vpn evpn summary")
    with pytest.raises(subprocess.CalledProcessError):
        lab.rr.vtysh("show no-such-command")
    assert json.loads(lab.rr.vtysh("show bgp l2vpn evpn summary json"))


def test_md5_password_with_listen_range() -> None:
    skip_unless_supported()
    with Fabric("md5") as fab:
        rr = fab.add_route_reflector("rr", 1, password="s3cret-pw")
        fab.start_peer_script(fab.add_box("spk", 21), peers=[rr], password="s3cret-pw")
        fab.wait_established(rr, OWN)
