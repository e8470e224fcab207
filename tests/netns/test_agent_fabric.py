"""The agent core end to end: a real FRR route reflector, an FRR VTEP and two evpn-agent
VTEPs in network namespaces, two VNIs, hosts behind every VTEP.

Hosts of both VNIs share one tenant subnet, so "unreachable across VNIs" checks isolation,
not routing.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.fabric import AgentProcess, Box, Fabric, Host, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]


@dataclass
class Topology:
    fab: Fabric
    rr: Box
    frr: Box
    a1: Box
    a2: Box
    agents: dict[str, AgentProcess]
    hosts: dict[str, Host]


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    skip_unless_supported()
    with Fabric("evag") as fab:
        rr = fab.add_route_reflector("rr", 1)
        frr = fab.add_frr_vtep("frr", 11, rrs=[rr])
        a1 = fab.add_agent_vtep("a1", 21)
        a2 = fab.add_agent_vtep("a2", 22)
        for box in (frr, a1, a2):
            box.add_vni(100, svi_addresses=["198.51.100.250/24"] if box is frr else ())
            box.add_vni(200)
        hosts: dict[str, Host] = {}
        for n, box in enumerate((frr, a1, a2), start=1):
            hosts[f"x{n}"] = fab.add_host(f"x{n}", box, 100, f"198.51.100.{n}/24")
            hosts[f"y{n}"] = fab.add_host(f"y{n}", box, 200, f"198.51.100.{100 + n}/24")
        agents = {
            # a1 reconciles every second (drift test); a2 only on demand (reconcile test)
            b.name: fab.start_agent(
                b,
                rrs=[rr],
                settings={
                    "reconcile-interval": 1 if b is a1 else 0,
                    "metrics-address": "127.0.0.1:9600",
                },
            )
            for b in (a1, a2)
        }
        try:
            for box in (frr, a1, a2):
                fab.wait_established(rr, box.address)
            yield Topology(fab, rr, frr, a1, a2, agents, hosts)
        except BaseException:
            print(fab.logs())
            raise


def _same_vni(a: Host, b: Host) -> bool:
    return a.vni == b.vni


def test_every_host_reaches_its_vni_and_never_the_other(topo: Topology) -> None:
    hosts = list(topo.hosts.values())
    for src, dst in itertools.permutations(hosts, 2):
        if _same_vni(src, dst):
            wait_until(lambda s=src, d=dst: s.ping(d.ip), 20, f"{src.name} -> {dst.name}")
    for src, dst in itertools.permutations(hosts, 2):
        if not _same_vni(src, dst):
            assert not src.ping(dst.ip, timeout=0.3), f"{src.name} reached {dst.name} across VNIs"


def _fdb(box: Box, device: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(
        box.netns.bridge("-j", "fdb", "show", "dev", device)
    )
    return entries


def _shape(entry: dict[str, object]) -> tuple[object, ...]:
    """An FDB entry without what differs per box (ifindex, the dst VTEP)."""
    return (
        entry.get("mac"),
        entry.get("master"),
        tuple(sorted(map(str, entry.get("flags", [])))),
        entry.get("state"),
        "dst" in entry,
    )  # type: ignore[call-overload]


def test_kernel_entries_match_what_frr_installs(topo: Topology) -> None:
    # x3 (behind a2) is remote for both a1 and the FRR VTEP: both must hold identical entries.
    x3 = topo.hosts["x3"]

    def entries(box: Box) -> set[tuple[object, ...]]:
        return {_shape(e) for e in _fdb(box, "vxlan100") if e.get("mac") == x3.mac}

    wait_until(
        lambda: len(entries(topo.a1)) == 2 and len(entries(topo.frr)) == 2,
        20,
        "x3's MAC on a1 and on the FRR VTEP",
    )
    assert entries(topo.a1) == entries(topo.frr)
    dst = {e.get("dst") for e in _fdb(topo.a1, "vxlan100") if e.get("mac") == x3.mac}
    assert dst == {None, topo.a2.address}
    # Flood list: one zero-MAC entry per remote VTEP, same flags as FRR's.
    flood_a1 = {e["dst"] for e in _fdb(topo.a1, "vxlan100") if e["mac"] == "00:00:00:00:00:00"}
    assert flood_a1 == {topo.frr.address, topo.a2.address}
    flood_frr = [e for e in _fdb(topo.frr, "vxlan100") if e["mac"] == "00:00:00:00:00:00"]
    flood_ours = [e for e in _fdb(topo.a1, "vxlan100") if e["mac"] == "00:00:00:00:00:00"]
    assert {_shape(e) for e in flood_ours} == {_shape(e) for e in flood_frr}
    # No remote MAC of VNI 200 leaked into VNI 100's device.
    y3 = topo.hosts["y3"]
    assert all(e.get("mac") != y3.mac for e in _fdb(topo.a1, "vxlan100"))


def test_frr_mac_ip_becomes_a_suppression_neighbour(topo: Topology) -> None:
    x1 = topo.hosts["x1"]
    # The FRR VTEP learns x1's MAC+IP from ARP on its SVI and advertises a MAC+IP route.
    wait_until(lambda: x1.ping("198.51.100.250"), 10, "x1 reaches the FRR VTEP's SVI")

    def neigh() -> list[dict[str, object]]:
        out: list[dict[str, object]] = json.loads(
            topo.a1.netns.ip("-j", "neigh", "show", "dev", "br100", "198.51.100.1")
        )
        return out

    [entry] = wait_until(neigh, 20, "x1's ARP entry on a1's br100")
    assert entry["lladdr"] == x1.mac
    assert "extern_learn" in entry  # iproute2 prints the flag as a key
    assert entry.get("state") == ["NOARP"]


def test_show_vni(topo: Topology) -> None:
    def rows() -> dict[int, dict[str, object]]:
        return {r["vni"]: r for r in topo.agents["a1"].show_vni()}

    wait_until(lambda: rows()[100]["numRemoteMacs"] == 2, 20, "two remote MACs in VNI 100")
    row = rows()[100]
    assert row["vxlanIf"] == "vxlan100" and row["bridge"] == "br100"
    assert row["numLocalMacs"] == 1
    assert sorted(row["remoteVteps"]) == sorted([topo.frr.address, topo.a2.address])  # type: ignore[type-var]
    text = topo.agents["a1"].cli("show", "vni")
    assert "vxlan100" in text and topo.a2.address in text


def test_entry_deleted_by_hand_is_restored(topo: Topology) -> None:
    x3 = topo.hosts["x3"]

    def on_vxlan() -> bool:
        return any(e.get("mac") == x3.mac and "dst" in e for e in _fdb(topo.a1, "vxlan100"))

    wait_until(on_vxlan, 20, "x3's MAC on a1's vxlan100")
    topo.a1.netns.bridge("fdb", "del", x3.mac, "dev", "vxlan100", "self")
    assert not on_vxlan()
    wait_until(on_vxlan, 10, "the periodic reconcile restores x3's entry")


def test_removed_host_is_withdrawn_everywhere(topo: Topology) -> None:
    x2 = topo.hosts["x2"]  # behind a1

    def known_on(box: Box) -> bool:
        return any(e.get("mac") == x2.mac for e in _fdb(box, "vxlan100"))

    wait_until(lambda: x2.ping(topo.hosts["x1"].ip), 10, "x2 is learned")
    wait_until(lambda: known_on(topo.a2) and known_on(topo.frr), 20, "x2 known remotely")
    topo.fab.del_host(x2)
    del topo.hosts["x2"]
    wait_until(
        lambda: not known_on(topo.a2) and not known_on(topo.frr),
        20,
        "x2's MAC withdrawn from a2 and the FRR VTEP",
    )


def test_vni_added_at_run_time_becomes_reachable(topo: Topology) -> None:
    for box in (topo.a1, topo.a2, topo.frr):
        box.add_vni(300)
    z1 = topo.fab.add_host("z1", topo.a1, 300, "203.0.113.1/24")
    z2 = topo.fab.add_host("z2", topo.a2, 300, "203.0.113.2/24")
    z3 = topo.fab.add_host("z3", topo.frr, 300, "203.0.113.3/24")
    wait_until(lambda: z1.ping(z2.ip), 20, "z1 -> z2 in the new VNI")
    wait_until(lambda: z1.ping(z3.ip), 20, "z1 -> z3 (FRR VTEP) in the new VNI")
    wait_until(lambda: z3.ping(z2.ip), 20, "z3 -> z2")
    wait_until(lambda: 300 in {r["vni"] for r in topo.agents["a2"].show_vni()}, 10, "VNI 300 shown")


def test_vni_removed_at_run_time_withdraws_its_routes(topo: Topology) -> None:
    def flood(box: Box) -> set[object]:
        return {e.get("dst") for e in _fdb(box, "vxlan200") if e["mac"] == "00:00:00:00:00:00"}

    wait_until(
        lambda: topo.a2.address in flood(topo.frr), 20, "a2 in the FRR VTEP's VNI 200 flood list"
    )
    topo.fab.del_host(topo.hosts.pop("y3"))
    topo.a2.del_vni(200)
    wait_until(
        lambda: topo.a2.address not in flood(topo.frr), 20, "a2's type 3 for VNI 200 withdrawn"
    )
    wait_until(lambda: topo.a2.address not in flood(topo.a1), 20, "and on a1")
    assert 200 not in {r["vni"] for r in topo.agents["a2"].show_vni()}


def test_show_commands_text_and_json(topo: Topology) -> None:
    agent = topo.agents["a1"]
    x1, x3 = topo.hosts["x1"], topo.hosts["x3"]
    wait_until(lambda: x1.ping(x3.ip), 20, "x1 -> x3")

    vni = json.loads(agent.cli("show", "vni", "100", "--json"))
    assert vni["vni"] == 100 and vni["vxlanIf"] == "vxlan100" and vni["type"] == "L2"
    assert vni["rd"] == f"{topo.a1.address}:100" and vni["exportRts"] == ["65000:100"]
    detail = agent.cli("show", "vni", "--detail")
    assert f"RD: {topo.a1.address}:100" in detail and "flood: HER" in detail

    macs = json.loads(agent.cli("show", "mac", "100", "--json"))["100"]["macs"]
    assert macs[x3.mac]["type"] == "remote" and macs[x3.mac]["remoteVtep"] == topo.a2.address
    assert x1.mac in agent.cli("show", "mac", "--mac", x1.mac.upper())
    assert x3.mac not in agent.cli("show", "mac", "--mac", x1.mac)

    neigh = json.loads(agent.cli("show", "neigh", "100", "--json"))["100"]
    assert neigh["198.51.100.1"]["mac"] == x1.mac
    assert "198.51.100.1" in agent.cli("show", "neigh")

    [peer] = json.loads(agent.cli("show", "peers", "--json"))
    assert peer["peer"] == topo.rr.address and peer["state"] == "Established"
    assert peer["routesReceived"] > 0 and peer["routesAdvertised"] > 0
    assert "Established" in agent.cli("show", "peers")

    routes = json.loads(agent.cli("show", "routes", "--type", "3", "--json"))
    assert {r["prefix"] for r in routes["advertised"]} == {f"[3]:[0]:[32]:[{topo.a1.address}]"}
    assert all(r["type"] == 3 for r in routes["received"])
    text = agent.cli("show", "routes", "--vni", "100", "--type", "2")
    assert (
        f"[2]:[0]:[48]:[{x3.mac}]" in text and f"Route Distinguisher: {topo.a2.address}:100" in text
    )

    hrep = agent.cli("show", "vxlans", "hrep")
    assert "HREP Addrs" in hrep and topo.a2.address in hrep
    assert "Svc Node" in agent.cli("show", "vxlans")
    counters = json.loads(agent.cli("show", "counters", "--json"))
    assert counters["counters"]["routes-received"] > 0


def test_show_error_paths(topo: Topology) -> None:
    agent = topo.agents["a1"]
    out = topo.a1.exec(
        "sh", "-c", f"{agent.cli_argv('show', 'vni', '4242')} 2>&1; echo rc=$?", check=False
    )
    assert "VNI 4242 is not configured on this VTEP" in out and "rc=1" in out
    assert "Traceback" not in out
    out = topo.a1.exec(
        "sh",
        "-c",
        f"{agent.cli_argv('show', 'mac', '--mac', 'nope')} 2>&1; echo rc=$?",
        check=False,
    )
    assert "is not a MAC address" in out and "rc=2" in out
    missing = topo.a1.directory / "absent.sock"
    out = topo.a1.exec(
        "sh",
        "-c",
        f"{agent.cli_argv('show', 'peers')} --socket {missing} 2>&1; echo rc=$?",
        check=False,
    )
    assert "evpn-agent is not running" in out and "rc=1" in out


def test_prometheus_endpoint(topo: Topology) -> None:
    def scrape() -> str:
        return topo.a1.exec(
            "python3", "-c",
            "import urllib.request as u;"
            "print(u.urlopen('http://127.0.0.1:9600/metrics', timeout=5).read().decode())",
        )  # fmt: skip

    text = wait_until(scrape, 10, "metrics endpoint answers", retry_on=(Exception,))
    assert 'evpn_agent_session_up{peer="192.0.2.1"} 1.0' in text
    assert 'evpn_agent_macs{origin="remote",vni="100"}' in text
    assert "evpn_agent_route_to_kernel_seconds_count" in text


def test_core_restart_keeps_kernel_and_session_and_withdraws_what_left(topo: Topology) -> None:
    agent = topo.agents["a1"]
    y2, x3 = topo.hosts["y2"], topo.hosts["x3"]  # y2 behind a1 (VNI 200), x3 behind a2

    def frr_knows_y2() -> bool:
        return any(e.get("mac") == y2.mac for e in _fdb(topo.frr, "vxlan200"))

    def a1_has_x3() -> bool:
        return any(e.get("mac") == x3.mac and "dst" in e for e in _fdb(topo.a1, "vxlan100"))

    wait_until(lambda: y2.ping(topo.hosts["y1"].ip), 10, "y2 is learned on a1")
    wait_until(frr_knows_y2, 20, "the FRR VTEP knows y2")
    wait_until(a1_has_x3, 20, "a1 has x3")
    old_core = agent.core_pid()
    assert old_core is not None
    os.kill(old_core, signal.SIGSTOP)  # frozen: it cannot see y2 leave
    try:
        topo.fab.del_host(topo.hosts.pop("y2"))
    finally:
        os.kill(old_core, signal.SIGKILL)
    assert a1_has_x3(), "the kernel keeps our entries while no core runs"
    new_core = wait_until(
        lambda: (pid := agent.core_pid()) is not None and pid != old_core and pid,
        20,
        "ExaBGP respawns the core",
    )
    assert agent.running() and new_core
    agent.wait_ready()  # later tests ask a1 over its control socket
    # The new core re-announced its set; ExaBGP withdrew y2, which no core announces now.
    wait_until(lambda: not frr_knows_y2(), 20, "y2 withdrawn from the FRR VTEP")
    assert topo.rr.evpn_peer_state(topo.a1.address) == "Established"
    assert a1_has_x3()
    wait_until(lambda: topo.hosts["x1"].ping(x3.ip), 10, "x1 -> x3 after the restart")


def test_reconcile_command_restores_and_removes_only_ours(topo: Topology) -> None:
    agent = topo.agents["a2"]
    x1 = topo.hosts["x1"]
    box = topo.a2
    wait_until(
        lambda: any(e.get("mac") == x1.mac and "dst" in e for e in _fdb(box, "vxlan100")),
        20, "a2 has x1",
    )  # fmt: skip
    box.netns.bridge("fdb", "del", x1.mac, "dev", "vxlan100", "self")
    bogus = "02:00:5e:99:99:99"
    box.netns.bridge(
        "fdb", "add", bogus, "dev", "vxlan100", "dst", "192.0.2.99", "self", "extern_learn"
    )  # fmt: skip
    foreign = "02:00:5e:88:88:88"  # not extern_learn: an operator's static entry, not ours
    box.netns.bridge("fdb", "add", foreign, "dev", "vxlan100", "dst", "192.0.2.98", "self")

    planned = json.loads(agent.cli("reconcile", "--dry-run", "--json"))
    assert planned["dryRun"] and planned["sweeping"]
    text = "\n".join(planned["ops"])
    assert (
        f"AddFdb: bridge fdb replace {x1.mac}" in text and f"DelFdb: bridge fdb del {bogus}" in text
    )
    assert foreign not in text
    assert any(e.get("mac") == bogus for e in _fdb(box, "vxlan100")), "a dry run changes nothing"

    out = agent.cli("reconcile")
    assert "reconcile made" in out
    macs = {e.get("mac") for e in _fdb(box, "vxlan100")}
    assert x1.mac in macs and bogus not in macs and foreign in macs
