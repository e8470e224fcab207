"""ARP suppression on an evpn-agent VTEP, end to end.

The agent installs every remote MAC+IP route as an ``extern_learn NOARP`` neighbour on
the VNI's bridge; with ``neigh_suppress on`` on the VXLAN bridge port the kernel then
answers a local host's ARP request for that IP itself, and no ARP crosses the underlay.
The agent also advertises the MAC+IP bindings its SVI learns.

Fabric: an FRR route reflector, evpn-agent VTEPs a1 (where suppression is toggled) and
a2, an FRR VTEP f1; VNI 100 with an SVI address on every bridge. Hosts: h1 behind a1 (the
one asking), h2 behind a2 and h3 behind f1 (their bindings are learned by the leaves' SVIs
and advertised), h4 behind a2 (never talks to an SVI: no MAC+IP route exists for it).

What crosses the underlay is counted on a1's ``eth0`` by a small AF_PACKET sniffer run
in a1's namespace (tcpdump may not be installed): VXLAN (UDP 4789) packets, decoded down
to the inner ARP or ICMP header.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lab.fabric import (
    IP,
    PYTHON,
    AgentProcess,
    Box,
    CommandError,
    Fabric,
    Host,
    skip_unless_supported,
    stop_pids,
    wait_until,
)

pytestmark = [pytest.mark.netns, pytest.mark.frr]

VNI = 100
BRIDGE, VXLAN = f"br{VNI}", f"vxlan{VNI}"
TENANT = "198.51.100.{}"
RETRY = (CommandError, json.JSONDecodeError, KeyError)


@dataclass
class Topology:
    fab: Fabric
    rr: Box
    a1: Box
    a2: Box
    f1: Box
    agents: dict[str, AgentProcess]
    hosts: dict[str, Host]
    svi: dict[str, str]


def kernel_neigh(box: Box, ip: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = json.loads(
        box.netns.ip("-j", "neigh", "show", "dev", BRIDGE, "to", ip)
    )
    return entries[0] if entries else None


def is_remote_neigh(entry: dict[str, Any] | None, mac: str) -> bool:
    """What the agent (and zebra) install from a MAC+IP route: ``extern_learn NOARP``."""
    return (
        entry is not None
        and entry.get("lladdr") == mac
        and "extern_learn" in entry
        and entry.get("state") == ["NOARP"]
    )


def agent_neigh(agent: AgentProcess, ip: str) -> dict[str, Any] | None:
    view: dict[str, Any] | None = json.loads(agent.cli("show", "neigh", str(VNI), "--json"))[
        str(VNI)
    ].get(ip)
    return view


def frr_neigh(box: Box, ip: str) -> dict[str, Any] | None:
    try:
        view: dict[str, Any] = box.vtysh_json(f"show evpn arp-cache vni {VNI} ip {ip} json")
    except json.JSONDecodeError:
        return None  # "% Requested neighbor does not exist in VNI 100"
    return view or None


def set_suppression(box: Box, on: bool) -> None:
    box.netns.bridge("link", "set", "dev", VXLAN, "neigh_suppress", "on" if on else "off")
    [link] = json.loads(box.netns.bridge("-j", "-d", "link", "show", "dev", VXLAN))
    assert link.get("neigh_suppress") is on, link


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    skip_unless_supported()
    with Fabric("evarp") as fab:
        rr = fab.add_route_reflector("rr", 1)
        f1 = fab.add_frr_vtep("f1", 11, rrs=[rr])
        a1 = fab.add_agent_vtep("a1", 21)
        a2 = fab.add_agent_vtep("a2", 22)
        svi = {"f1": TENANT.format(211), "a1": TENANT.format(221), "a2": TENANT.format(222)}
        for box in (f1, a1, a2):
            box.add_vni(VNI, svi_addresses=[f"{svi[box.name]}/24"])
            # a fixed bridge MAC (as ifupdown2 sets): a bridge that takes its lowest port's
            # MAC changes it as hosts are plugged in, and each change flushes its neighbours
            octet = int(box.address.split(".")[-1])
            box.netns.ip("link", "set", BRIDGE, "address", f"02:00:5e:ff:00:{octet:02x}")
        hosts = {
            name: fab.add_host(name, box, VNI, f"{TENANT.format(n)}/24", ipv6=False)
            for n, (name, box) in enumerate((("h1", a1), ("h2", a2), ("h3", f1), ("h4", a2)), 1)
        }
        agents = {box.name: fab.start_agent(box, rrs=[rr]) for box in (a1, a2)}
        try:
            for box in (f1, a1, a2):
                fab.wait_established(rr, box.address)
            topo = Topology(fab, rr, a1, a2, f1, agents, hosts, svi)
            # h1, h2 and h3 talk to their leaf's SVI: the leaf learns their ARP entry and
            # advertises a MAC+IP route. h4 never does.
            for name, leaf in (("h1", "a1"), ("h2", "a2"), ("h3", "f1")):
                host = hosts[name]
                wait_until(partial(host.ping, svi[leaf]), 20, f"{name} -> {leaf}'s SVI")
            yield topo
        except BaseException:
            print(fab.logs())
            raise


# ---------------------------------------------------------------- the underlay sniffer

# Runs in the VTEP's namespace: every VXLAN packet on IFACE, one JSON line each, with the
# inner frame decoded far enough to tell ARP (op, addresses) and ICMP (type, addresses).
_SNIFFER_SOURCE = r"""
import json, signal, socket, struct, sys
iface = sys.argv[1]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((iface, 0))
print(json.dumps({"ready": True}), flush=True)
ip4 = socket.inet_ntoa
while True:
    frame, addr = sock.recvfrom(65535)
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        continue
    ihl = (frame[14] & 15) * 4
    if frame[23] != 17:
        continue
    udp = 14 + ihl
    sport, dport = struct.unpack("!HH", frame[udp:udp + 4])
    if 4789 not in (sport, dport):
        continue
    inner = frame[udp + 16:]
    rec = {"dir": "out" if addr[2] == socket.PACKET_OUTGOING else "in",
           "outer": [ip4(frame[26:30]), ip4(frame[30:34])],
           "ethertype": "%04x" % struct.unpack("!H", inner[12:14])[0]}
    if inner[12:14] == b"\x08\x06":
        arp = inner[14:42]
        rec.update(op=struct.unpack("!H", arp[6:8])[0], spa=ip4(arp[14:18]), tpa=ip4(arp[24:28]))
    elif inner[12:14] == b"\x08\x00" and inner[23] == 1:
        rec.update(icmp=inner[14 + (inner[14] & 15) * 4], src=ip4(inner[26:30]),
                   dst=ip4(inner[30:34]))
    print(json.dumps(rec), flush=True)
"""


class Sniffer:
    """The sniffer as a background process in ``box``; stopped by its PID."""

    def __init__(self, box: Box, iface: str = "eth0") -> None:
        self.output = box.directory / f"sniff-{id(self)}.jsonl"
        with self.output.open("wb") as out:
            # ``ip netns exec`` execs the command: the PID is the sniffer's own
            self.process = subprocess.Popen(
                [IP, "netns", "exec", box.netns.name, PYTHON, "-c", _SNIFFER_SOURCE, iface],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: '"ready"' in self._text(), 10, "the sniffer is listening")
        except BaseException:
            self.stop()
            raise

    def _text(self) -> str:
        if self.process.poll() is not None:
            raise RuntimeError(f"sniffer exited: {Path(self.output).read_text()}")
        return self.output.read_text()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._text().splitlines()[1:] if line]

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_pids([self.process.pid], timeout=5)
        self.process.wait(5)

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Crossed:
    """What crossed a1's underlay while h1 resolved and pinged a target."""

    arps: list[dict[str, Any]]  # ARP packets between h1 and the target
    all_arps: list[dict[str, Any]]  # any ARP packet
    packets: int  # VXLAN packets of any kind


def arp_through_underlay(topo: Topology, target: Host) -> Crossed:
    """h1 forgets its ARP entries and pings ``target``: what crossed a1's underlay."""
    h1 = topo.hosts["h1"]
    # The target knows h1 for good: only h1's question can make ARP cross the underlay.
    target.netns.ip("neigh", "replace", h1.ip, "lladdr", h1.mac, "dev", "eth0", "nud", "permanent")
    with Sniffer(topo.a1) as sniffer:
        h1.netns.ip("neigh", "flush", "dev", "eth0")
        assert not json.loads(h1.netns.ip("-j", "neigh", "show", "dev", "eth0", "to", target.ip))
        wait_until(lambda: h1.ping(target.ip), 10, f"h1 -> {target.name}")

        # The echo reply came back through the underlay: the sniffer has seen the whole
        # exchange, ARP included, once it has logged that reply.
        def reply_seen() -> bool:
            return any(
                r.get("icmp") == 0 and r.get("src") == target.ip and r.get("dst") == h1.ip
                for r in sniffer.records()
            )

        wait_until(reply_seen, 10, f"the sniffer logs {target.name}'s echo reply")
        records = sniffer.records()
    [entry] = json.loads(h1.netns.ip("-j", "neigh", "show", "dev", "eth0", "to", target.ip))
    assert entry["lladdr"] == target.mac, entry  # whoever answered, the answer was right
    all_arps = [r for r in records if r["ethertype"] == "0806"]
    pair = {h1.ip, target.ip}
    return Crossed([r for r in all_arps if {r["spa"], r["tpa"]} == pair], all_arps, len(records))


# ---------------------------------------------------------------- tests


def test_local_binding_is_advertised(topo: Topology) -> None:
    """h1's ARP entry learned on a1's SVI becomes a MAC+IP route: a2 (agent) and f1 (FRR)
    install it as a neighbour on their bridge, FRR's arp-cache shows it remote at a1."""
    h1 = topo.hosts["h1"]

    def advertised() -> bool:
        local = agent_neigh(topo.agents["a1"], h1.ip)
        remote = agent_neigh(topo.agents["a2"], h1.ip)
        frr = frr_neigh(topo.f1, h1.ip)
        return bool(
            local
            and (local["type"], local["state"], local["mac"]) == ("local", "active", h1.mac)
            and remote
            and (remote["type"], remote["mac"], remote["remoteVtep"])
            == ("remote", h1.mac, topo.a1.address)
            and frr
            and (frr["type"], frr["mac"], frr["remoteVtep"]) == ("remote", h1.mac, topo.a1.address)
            and is_remote_neigh(kernel_neigh(topo.a2, h1.ip), h1.mac)
            and is_remote_neigh(kernel_neigh(topo.f1, h1.ip), h1.mac)
        )

    wait_until(advertised, 20, "h1's MAC+IP on a2 and f1", retry_on=RETRY)


@pytest.mark.parametrize("target", ["h2", "h3"], ids=["from-agent", "from-frr"])
def test_remote_binding_is_a_neighbour_on_the_bridge(topo: Topology, target: str) -> None:
    host = topo.hosts[target]
    origin = topo.a2 if target == "h2" else topo.f1

    def installed() -> bool:
        view = agent_neigh(topo.agents["a1"], host.ip)
        return bool(
            is_remote_neigh(kernel_neigh(topo.a1, host.ip), host.mac)
            and view
            and (view["type"], view["mac"], view["remoteVtep"])
            == ("remote", host.mac, origin.address)
        )

    wait_until(installed, 20, f"{target}'s MAC+IP as a neighbour on a1's br100", retry_on=RETRY)


def test_without_suppression_arp_crosses_the_underlay(topo: Topology) -> None:
    """The control: the sniffer does see ARP when the bridge does not answer it."""
    h2 = topo.hosts["h2"]
    wait_until(lambda: is_remote_neigh(kernel_neigh(topo.a1, h2.ip), h2.mac), 20, "h2's entry")
    set_suppression(topo.a1, False)
    crossed = arp_through_underlay(topo, h2)
    arps = crossed.arps
    print(f"\nneigh_suppress off: {len(arps)} ARP of {crossed.packets} VXLAN packets: {arps}")
    assert any(a["dir"] == "out" and a["op"] == 1 and a["spa"] == topo.hosts["h1"].ip for a in arps)
    assert any(a["dir"] == "in" and a["op"] == 2 and a["spa"] == h2.ip for a in arps)


@pytest.mark.parametrize("target", ["h2", "h3"], ids=["agent-route", "frr-route"])
def test_suppressed_arp_is_answered_locally(topo: Topology, target: str) -> None:
    host = topo.hosts[target]
    wait_until(
        lambda: is_remote_neigh(kernel_neigh(topo.a1, host.ip), host.mac),
        20,
        f"{target}'s MAC+IP as a neighbour on a1",
    )
    set_suppression(topo.a1, True)
    crossed = arp_through_underlay(topo, host)
    print(
        f"\nneigh_suppress on, {target}: {len(crossed.all_arps)} ARP of {crossed.packets} packets"
    )
    assert crossed.packets > 0, "the echo request and reply crossed the underlay"
    assert crossed.all_arps == [], f"ARP crossed although a1 knows {host.ip}: {crossed.all_arps}"


def test_arp_for_an_ip_without_binding_crosses_the_underlay(topo: Topology) -> None:
    """Suppression answers only what a MAC+IP route told: h4's IP is unknown, so h1's
    question is flooded to the other VTEPs (and h4's answer comes back)."""
    h4 = topo.hosts["h4"]
    assert kernel_neigh(topo.a1, h4.ip) is None
    set_suppression(topo.a1, True)
    crossed = arp_through_underlay(topo, h4)
    arps = crossed.arps
    print(f"\nneigh_suppress on, no binding: {len(arps)} ARP of {crossed.packets} VXLAN packets")
    assert any(a["dir"] == "out" and a["op"] == 1 and a["tpa"] == h4.ip for a in arps), arps
