"""MAC mobility (RFC 7432 s15) and duplicate address detection, end to end.

One fabric: an FRR route reflector, two evpn-agent VTEPs (a1, a2) and two FRR VTEPs (f1,
f2), VNI 100 with a distinct SVI address on every VTEP's bridge, so MAC+IP routes exist.
A host moves the way a live-migrating VM does (make before break): its old NIC goes
silent but stays plugged in, a host with the same MAC and IP appears at the new leaf and
sends a gratuitous ARP and pings the leaf's SVI; once everyone follows, the old NIC is
deleted. RFC 7432 s15 then wants the new leaf to advertise the MAC with the sequence
number it had plus one, every other VTEP (the old leaf too) to point at the new leaf,
and the MAC+IP binding to follow.

A second fabric (agents d1, d2, d3 with ``duplicate-detection: {max-moves: 3, time: 60,
freeze: permanent}``, FRR VTEPs f3, f4, f5 with FRR's defaults) flaps MACs between leaves
for duplicate detection: the threshold, the freeze, ``clear duplicate``, and VTEPs that
only watch a MAC move between other leaves.

Run with ``-s`` to see the measured move convergence times.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
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
    wait_until,
)
from lab.reflectors import Reflector, add_reflector, missing_for

pytestmark = [pytest.mark.netns, pytest.mark.frr]

VNI = 100
BRIDGE, VXLAN = f"br{VNI}", f"vxlan{VNI}"
TENANT = "198.51.100.{}"
# RETRY: what a show command may raise while state is in flux (FRR prints a non-JSON
# "% ... does not exist" for an unknown MAC; a CLI call may race an agent restart).
RETRY = (CommandError, json.JSONDecodeError, KeyError)


# ---------------------------------------------------------------- helpers


@dataclass
class Leaf:
    """A VTEP: evpn-agent (``agent`` set) or FRR, with its SVI address and a fixed host."""

    box: Box
    svi: str
    agent: AgentProcess | None = None
    anchor: Host | None = None

    @property
    def name(self) -> str:
        return self.box.name

    @property
    def address(self) -> str:
        return self.box.address

    @property
    def kind(self) -> str:
        return "agent" if self.agent is not None else "FRR"


def pin_bridge_mac(box: Box, octet: int) -> None:
    """Give the VNI's bridge a fixed MAC, as ifupdown2 does. Left alone, a bridge takes the
    lowest MAC of its ports, and each change of it flushes the bridge's neighbour table
    (the MAC+IP entries with it); hosts come and go all the time in these tests."""
    box.netns.ip("link", "set", BRIDGE, "address", f"02:00:5e:ff:00:{octet:02x}")


def fdb_of(box: Box, mac: str) -> list[dict[str, Any]]:
    """Every FDB entry for ``mac`` on the VNI's bridge and its ports (VXLAN included)."""
    entries: list[dict[str, Any]] = json.loads(box.netns.bridge("-j", "fdb", "show", "br", BRIDGE))
    return [e for e in entries if e.get("mac") == mac]


def bridge_ports(box: Box, mac: str) -> set[str]:
    """Ports the bridge itself sends ``mac`` to (its master entries)."""
    return {e["ifname"] for e in fdb_of(box, mac) if e.get("master") == BRIDGE}


def remote_dsts(box: Box, mac: str) -> set[str]:
    """VTEPs the VXLAN device sends ``mac`` to (its self entries with a dst)."""
    return {e["dst"] for e in fdb_of(box, mac) if "dst" in e}


def learned_on(box: Box, mac: str, port: str) -> bool:
    """The bridge learned ``mac`` on its local port ``port``."""
    return port in bridge_ports(box, mac)


def points_at(box: Box, mac: str, vtep: str) -> bool:
    """The kernel sends ``mac`` to ``vtep`` only: bridge entry on the VXLAN port, one dst."""
    return bridge_ports(box, mac) == {VXLAN} and remote_dsts(box, mac) == {vtep}


def kernel_neigh(box: Box, ip: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = json.loads(
        box.netns.ip("-j", "neigh", "show", "dev", BRIDGE, "to", ip)
    )
    return entries[0] if entries else None


def is_remote_neigh(entry: dict[str, Any] | None, mac: str) -> bool:
    """A MAC+IP binding installed from BGP: ``extern_learn NOARP`` (iproute2's JSON)."""
    return (
        entry is not None
        and entry.get("lladdr") == mac
        and "extern_learn" in entry
        and entry.get("state") == ["NOARP"]
    )


def mac_view(leaf: Leaf, mac: str) -> dict[str, Any] | None:
    """FRR's ``show evpn mac vni 100 mac M json`` fields, from either kind of VTEP."""
    if leaf.agent is not None:
        data = json.loads(leaf.agent.cli("show", "mac", str(VNI), "--mac", mac, "--json"))
        entry: dict[str, Any] | None = data[str(VNI)]["macs"].get(mac)
        return entry
    try:
        frr: dict[str, Any] = leaf.box.vtysh_json(f"show evpn mac vni {VNI} mac {mac} json")
    except json.JSONDecodeError:
        return None  # "% Requested MAC does not exist in VNI 100"
    return frr.get(mac)


def neigh_view(leaf: Leaf, ip: str) -> dict[str, Any] | None:
    """FRR's ``show evpn arp-cache vni 100 ip IP json`` fields, from either kind of VTEP."""
    if leaf.agent is not None:
        data = json.loads(leaf.agent.cli("show", "neigh", str(VNI), "--json"))
        entry: dict[str, Any] | None = data[str(VNI)].get(ip)
        return entry
    try:
        frr: dict[str, Any] = leaf.box.vtysh_json(f"show evpn arp-cache vni {VNI} ip {ip} json")
    except json.JSONDecodeError:
        return None
    return frr or None


def mobility_community_ok(communities: str, seq: int) -> bool:
    """RFC 7432 s7.7: the MAC Mobility community carries seq; seq 0 may leave it out."""
    if seq == 0:
        return "MM:" not in communities or "MM:0" in communities.split()
    return f"MM:{seq}" in communities.split()


# A gratuitous ARP request (sender = target = IP) from MAC out of IFACE: what a moved VM
# sends. AF_PACKET, so the source MAC can be any (a marker MAC, a second NIC's MAC).
_GARP_SOURCE = """
import socket, struct, sys
iface, mac, ip = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3]
ip = socket.inet_aton(ip)
frame = (b"\\xff" * 6 + mac + struct.pack("!H", 0x0806)
         + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\\0" * 6 + ip)
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
    sock.bind((iface, 0))
    sock.send(frame)
"""


def garp(host: Host, ip: str, *, iface: str = "eth0", mac: str | None = None) -> None:
    host.exec(PYTHON, "-c", _GARP_SOURCE, iface, mac or host.mac, ip)


def silence(host: Host, iface: str = "eth0") -> None:
    """The host's NIC stays plugged in but sends nothing (no IPv4, no IPv6, no ARP)."""
    host.netns.ip("address", "flush", "dev", iface)
    host.exec("sysctl", "-qw", f"net.ipv6.conf.{iface}.disable_ipv6=1")
    host.netns.ip("link", "set", iface, "arp", "off")


def plug_leg(fab: Fabric, host: Host, leaf: Leaf, iface: str, port: str) -> None:
    """A second NIC ``iface`` for ``host`` (same MAC), plugged into ``leaf``'s bridge as
    ``port``; silent (no addresses, no ARP) until the test sends from it."""
    leaf.box.netns.ip(
        "link", "add", port, "type", "veth", "peer", "name", iface, "netns", host.netns.name
    )
    leaf.box.netns.ip("link", "set", port, "master", BRIDGE, "up")
    host.exec("sysctl", "-qw", f"net.ipv6.conf.{iface}.disable_ipv6=1")
    host.netns.ip("link", "set", iface, "address", host.mac, "arp", "off", "up")


def describe(leaves: list[Leaf], mac: str) -> str:
    """Everyone's view of ``mac``, for assertion messages."""
    lines = []
    for leaf in leaves:
        try:
            view = mac_view(leaf, mac)
        except RETRY as exc:
            view = {"error": str(exc)}
        lines.append(f"  {leaf.name} ({leaf.kind}): fdb {fdb_of(leaf.box, mac)} view {view}")
    return "\n".join(lines)


# ---------------------------------------------------------------- mobility fabric


@dataclass
class Mobility:
    fab: Fabric
    rr: Reflector
    leaves: dict[str, Leaf]
    timings: list[str] = field(default_factory=list)

    def others(self, leaf: Leaf) -> list[Leaf]:
        return [x for x in self.leaves.values() if x is not leaf]


@pytest.fixture(scope="module", params=["frr", "gobgp"])
def mob(request: pytest.FixtureRequest) -> Iterator[Mobility]:
    """The moves through an FRR reflector, and through GoBGP (its default settings)."""
    kind: str = request.param
    skip_unless_supported()
    if missing := missing_for(kind):
        pytest.skip(f"{kind} reflector needs: " + ", ".join(missing))
    with Fabric("evmob") as fab:
        rr = add_reflector(fab, kind)
        leaves: dict[str, Leaf] = {}
        mobility = Mobility(fab, rr, leaves)
        try:
            for name, octet in (("a1", 21), ("a2", 22), ("f1", 11), ("f2", 12)):
                if name.startswith("f"):
                    box = fab.add_frr_vtep(name, octet, rrs=[rr.box])
                else:
                    box = fab.add_agent_vtep(name, octet)
                svi = TENANT.format(200 + octet)  # .221, .222, .211, .212: one per VTEP
                box.add_vni(VNI, svi_addresses=[f"{svi}/24"])
                pin_bridge_mac(box, octet)
                leaves[name] = Leaf(box, svi)
            rr.start([leaf.box for leaf in leaves.values()])
            for leaf in leaves.values():
                if leaf.name.startswith("a"):
                    # No periodic full resync: what is tested is the event-driven path (a
                    # resync from a dump would paper over a missed or mishandled event).
                    leaf.agent = fab.start_agent(
                        leaf.box, rrs=[rr.box], settings={"reconcile-interval": 0}
                    )
                # a host that stays put on every leaf: the moved host pings them all
                octet = int(leaf.address.split(".")[-1])
                anchor_ip = TENANT.format(100 + octet)  # .121, .122, .111, .112
                leaf.anchor = fab.add_host(f"s{leaf.name}", leaf.box, VNI, f"{anchor_ip}/24")
            for leaf in leaves.values():
                rr.wait_established(leaf.address)
            yield mobility
        except BaseException:
            print(fab.logs())
            print(rr.logs())
            raise
        finally:
            rr.stop()
            if mobility.timings:
                print(f"\nmove convergence through {kind} (B learns the MAC -> every other VTEP"
                      " points at B):")  # fmt: skip
                print("\n".join(mobility.timings))


def wait_following(
    mob: Mobility,
    host: Host,
    leaf: Leaf,
    seq: int,
    *,
    old: Host | None = None,
    old_leaf: Leaf | None = None,
) -> dict[str, float]:
    """``host`` (a new incarnation of a MAC/IP) just plugged into ``leaf``: have ``leaf``
    learn it, wait until everyone follows, then check sequence numbers, the ARP entry
    and pings. Returns when each other VTEP pointed at ``leaf`` (seconds after it learned).
    """
    mac, ip = host.mac, host.ip
    others = mob.others(leaf)
    port = f"h-{host.name}"

    # The "VM" (silent so far: no IPv6) announces itself with a gratuitous ARP, as after a
    # live migration; the leaf learning its MAC is the start of the clock.
    sender = subprocess.Popen(
        [IP, "netns", "exec", host.netns.name, PYTHON, "-c", _GARP_SOURCE, "eth0", mac, ip]
    )
    try:
        learned_at = wait_until(
            lambda: port in bridge_ports(leaf.box, mac) and time.monotonic(),
            10,
            f"{leaf.name} learns {mac} on {port}",
            interval=0.001,
        )
    finally:
        sender.wait(10)
    followed: dict[str, float] = {}

    def everyone_follows() -> bool:
        for other in others:
            if other.name not in followed and points_at(other.box, mac, leaf.address):
                followed[other.name] = time.monotonic() - learned_at
        return len(followed) == len(others)

    try:
        wait_until(everyone_follows, 20, f"every VTEP sends {mac} to {leaf.name}", interval=0.01)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{describe(list(mob.leaves.values()), mac)}") from None
    if old is not None:
        mob.fab.del_host(old)  # the source hypervisor cleans up once the move is seen

    # RFC 7432 s15: the learning leaf advertises seq+1; everyone else shows it remote.
    def sequences_right() -> bool:
        here = mac_view(leaf, mac)
        if not (here and here["type"] == "local" and here["localSequence"] == seq):
            return False
        for other in others:
            view = mac_view(other, mac)
            if not (
                view
                and view["type"] == "remote"
                and view["remoteVtep"] == leaf.address
                and view["remoteSequence"] == seq
            ):
                return False
        return True

    try:
        wait_until(sequences_right, 10, f"MAC mobility sequence {seq} everywhere", retry_on=RETRY)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{describe(list(mob.leaves.values()), mac)}") from None

    # The MAC+IP binding: the host talks to the leaf's SVI, the leaf learns the ARP entry
    # and advertises it; every other VTEP installs it as a remote neighbour.
    def binding_follows() -> bool:
        host.ping(leaf.svi, timeout=0.3)
        here = neigh_view(leaf, ip)
        if not (here and (here["type"], here["state"], here["mac"]) == ("local", "active", mac)):
            return False
        for other in others:
            if not is_remote_neigh(kernel_neigh(other.box, ip), mac):
                return False
            if other is old_leaf and other.agent is not None:
                continue  # see test_old_agent_leaf_shows_the_moved_binding_as_remote
            view = neigh_view(other, ip)
            if not (
                view
                and (view["type"], view["mac"]) == ("remote", mac)
                and view["remoteVtep"] == leaf.address
            ):
                return False
        return True

    try:
        wait_until(binding_follows, 20, f"{ip}'s ARP entry follows to {leaf.name}", retry_on=RETRY)
    except TimeoutError as exc:
        views = {o.name: (neigh_view(o, ip), kernel_neigh(o.box, ip)) for o in mob.leaves.values()}
        raise AssertionError(f"{exc}\n{views}") from None

    # The route reflector holds only the new leaf's routes (MAC and MAC+IP), with MM:seq.
    def rr_right() -> bool:
        paths = mob.rr.mac_paths(mac)
        return (
            len(paths) == 2
            and all(nh == leaf.address for _p, nh, _c in paths)
            and all(mobility_community_ok(c, seq) for _p, _nh, c in paths)
        )

    wait_until(rr_right, 10, f"the RR holds {leaf.name}'s MAC and MAC+IP routes, MM:{seq}")

    for other in others:
        assert other.anchor is not None
        target = other.anchor.ip
        wait_until(partial(host.ping, target), 10, f"{host.name} at {leaf.name} -> {target}")

    return followed


def timing(mac: str, what: str, followed: dict[str, float]) -> str:
    each = ", ".join(f"{name} {followed[name] * 1000:.0f}" for name in sorted(followed))
    return f"  {mac} {what}: all in {max(followed.values()) * 1000:.0f} ms ({each} ms)"


MOVES = [("a1", "a2"), ("a2", "f1"), ("f1", "a1"), ("f1", "f2")]


@pytest.mark.parametrize(
    ("src", "dst"), MOVES, ids=["agent-to-agent", "agent-to-frr", "frr-to-agent", "frr-to-frr"]
)
def test_host_moves_and_back(mob: Mobility, src: str, dst: str) -> None:
    """A host moves src -> dst -> src: seq 0, 1, 2; everyone follows every time."""
    index = MOVES.index((src, dst))
    mac, ip = f"02:00:5e:6d:00:{index + 1:02x}", TENANT.format(10 + index)
    a, b = mob.leaves[src], mob.leaves[dst]
    here = mob.fab.add_host(f"mv{index}a", a.box, VNI, f"{ip}/24", mac=mac, ipv6=False)
    followed = wait_following(mob, here, a, 0)
    mob.timings.append(timing(mac, f"appears at {a.name} ({a.kind}), seq 0", followed))
    for hop, (old, new) in enumerate(((a, b), (b, a)), start=1):
        silence(here)
        name = f"mv{index}{'abc'[hop]}"
        there = mob.fab.add_host(name, new.box, VNI, f"{ip}/24", mac=mac, ipv6=False)
        followed = wait_following(mob, there, new, hop, old=here, old_leaf=old)
        what = f"moves {old.name} ({old.kind}) -> {new.name} ({new.kind}), seq {hop}"
        mob.timings.append(timing(mac, what, followed))
        here = there


def eventually(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """wait_until, failing as an assertion error naming what did not happen."""
    try:
        wait_until(predicate, timeout, what, retry_on=RETRY)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def test_old_agent_leaf_shows_the_moved_binding_as_remote(mob: Mobility) -> None:
    a1, a2 = mob.leaves["a1"], mob.leaves["a2"]
    mac, ip = "02:00:5e:6d:00:10", TENANT.format(20)
    here = mob.fab.add_host("nb0", a1.box, VNI, f"{ip}/24", mac=mac, ipv6=False)
    wait_following(mob, here, a1, 0)
    # a1's ARP entry for the host, REACHABLE: it cannot fail (and so be deleted, which
    # would hide the bug) while the silenced host moves.
    a1.box.netns.ip("neigh", "replace", ip, "lladdr", mac, "dev", BRIDGE, "nud", "reachable")
    silence(here)
    there = mob.fab.add_host("nb1", a2.box, VNI, f"{ip}/24", mac=mac, ipv6=False)
    # checks everything but a1's own view of the binding (the kernel entry on a1 included)
    wait_following(mob, there, a2, 1, old=here, old_leaf=a1)
    assert is_remote_neigh(kernel_neigh(a1.box, ip), mac)

    def shown_remote() -> bool:
        view = neigh_view(a1, ip)
        return bool(view and view["type"] == "remote" and view["remoteVtep"] == a2.address)

    eventually(shown_remote, 10, f"a1's show neigh: {ip} remote at a2; last {neigh_view(a1, ip)}")


# ---------------------------------------------------------------- duplicate detection

MAX_MOVES = 3
DAD = {"max-moves": MAX_MOVES, "time": 60, "freeze": "permanent"}


@dataclass
class Flapping:
    fab: Fabric
    rr: Reflector
    leaves: dict[str, Leaf]

    @property
    def agents(self) -> list[Leaf]:
        return [leaf for leaf in self.leaves.values() if leaf.agent is not None]


@pytest.fixture(scope="module")
def flap() -> Iterator[Flapping]:
    """RR, agents d1 d2 d3 (duplicate-detection max-moves 3 / 60 s / freeze permanent),
    FRR VTEPs f3 f4 f5 (FRR's default: 5 moves in 180 s, no freeze)."""
    skip_unless_supported()
    with Fabric("evdad") as fab:
        rr = add_reflector(fab, "frr")
        leaves: dict[str, Leaf] = {}
        for name, octet in (("d1", 31), ("d2", 32), ("d3", 33), ("f3", 13), ("f4", 14), ("f5", 15)):
            if name.startswith("f"):
                box = fab.add_frr_vtep(name, octet, rrs=[rr.box])
            else:
                box = fab.add_agent_vtep(name, octet)
            box.add_vni(VNI)
            pin_bridge_mac(box, octet)
            leaves[name] = Leaf(box, svi="")
        for leaf in leaves.values():
            if leaf.name.startswith("d"):
                leaf.agent = fab.start_agent(
                    leaf.box, rrs=[rr.box], settings={"duplicate-detection": DAD}
                )
        try:
            for leaf in leaves.values():
                rr.wait_established(leaf.address)
            yield Flapping(fab, rr, leaves)
        except BaseException:
            print(fab.logs())
            raise


def flapping_host(fab: Fabric, name: str, legs: list[Leaf], mac: str, ip: str) -> list[str]:
    """A host with one silent NIC per leaf in ``legs`` (eth0, eth1, ...), all with ``mac``:
    it is wherever the test sends a frame from. Returns the leaves' port names."""
    host = fab.add_host(name, legs[0].box, VNI, f"{ip}/24", mac=mac, ipv6=False)
    silence(host)
    ports = [f"h-{name}"]
    for n, leaf in enumerate(legs[1:], start=1):
        ports.append(f"h-{name}{n}")
        plug_leg(fab, host, leaf, f"eth{n}", ports[-1])
    return ports


def test_flapping_mac_is_detected_frozen_and_cleared(flap: Flapping) -> None:
    d1, d2, d3, f3 = (flap.leaves[n] for n in ("d1", "d2", "d3", "f3"))
    agent = d2.agent
    assert agent is not None
    mac, ip = "02:00:5e:dd:00:01", TENANT.format(50)
    ports = flapping_host(flap.fab, "flap", [d1, d2], mac, ip)
    host = flap.fab.hosts["flap"]
    sides = [(d1, "eth0", ports[0]), (d2, "eth1", ports[1])]

    # The MAC shows up at d1, then alternately at d2 and d1: each arrival after the first
    # is one move. The third move (max-moves) must make it a duplicate, not earlier.
    frozen: Leaf | None = None
    detected_at = 0
    for flip in range(2 * MAX_MOVES):
        side, iface, port = sides[flip % 2]
        other = sides[(flip + 1) % 2][0]
        garp(host, ip, iface=iface)
        wait_until(partial(learned_on, side.box, mac, port), 10, f"{side.name} learns {mac}")

        def settled(side: Leaf = side, other: Leaf = other) -> str | bool:
            view = mac_view(side, mac)
            if view and view["isDuplicate"]:
                return "duplicate"
            return points_at(other.box, mac, side.address) and points_at(f3.box, mac, side.address)

        outcome = wait_until(
            settled, 10, f"{other.name} follows {mac} to {side.name}", retry_on=RETRY
        )
        if outcome == "duplicate":
            frozen, detected_at = side, flip
            break
        for leaf in (d1, d2):
            view = mac_view(leaf, mac)
            assert view is not None and not view["isDuplicate"], (leaf.name, flip, view)
    assert frozen is not None, f"no duplicate after {flip} moves:\n{describe(flap.agents, mac)}"
    assert detected_at == MAX_MOVES, f"detected at move {detected_at}, max-moves {MAX_MOVES}"
    assert frozen is d2  # d2 learned it on the third move
    view = mac_view(d2, mac)
    assert view is not None
    assert (view["type"], view["isDuplicate"], view["detectionCount"]) == ("local", True, MAX_MOVES)
    kept = sorted(json.dumps(e, sort_keys=True) for e in fdb_of(d2.box, mac))
    assert remote_dsts(d2.box, mac) == {d1.address}, "d2's entry from before the third move"

    # Frozen: d2 does not advertise the MAC. A marker MAC learned at d2 afterwards reaches
    # the route reflector; the duplicate does not, and d1 and f3 stay with d1.
    marker = "02:00:5e:dd:00:99"
    garp(host, TENANT.format(51), iface="eth1", mac=marker)
    wait_until(
        lambda: any(nh == d2.address for _p, nh, _c in flap.rr.mac_paths(marker)),
        10,
        "d2's marker MAC reaches the RR",
    )
    assert {nh for _p, nh, _c in flap.rr.mac_paths(mac)} == {d1.address}
    advertised = json.loads(agent.cli("show", "routes", "--type", "2", "--json"))["advertised"]
    assert not [r for r in advertised if mac in r["prefix"]], advertised
    assert bridge_ports(d1.box, mac) == {ports[0]} and points_at(f3.box, mac, d1.address)

    # Frozen: d2 keeps its FDB entries even when d1 withdraws the MAC (d1's NIC unplugged).
    d1.box.netns.ip("link", "del", ports[0])

    def withdrawn_at_d2() -> bool:
        routes = json.loads(agent.cli("show", "routes", "--type", "2", "--json"))
        return not [r for r in routes["received"] if mac in r["prefix"]]

    wait_until(withdrawn_at_d2, 10, "d1's withdraw of the MAC reaches d2", retry_on=RETRY)
    wait_until(lambda: not fdb_of(d3.box, mac), 10, "d3 removes the withdrawn MAC")
    assert sorted(json.dumps(e, sort_keys=True) for e in fdb_of(d2.box, mac)) == kept

    # clear duplicate: d2 advertises the MAC again (its sequence number from the third move,
    # 3) and drops the stale entry; the others follow it.
    out = agent.cli("clear", "duplicate", str(VNI), "--mac", mac)
    assert "cleared 1 duplicate MAC(s)" in out, out
    view = mac_view(d2, mac)
    assert view is not None and not view["isDuplicate"], view
    wait_until(
        lambda: (
            [(nh, mobility_community_ok(c, 3)) for _p, nh, c in flap.rr.mac_paths(mac)]
            == [(d2.address, True)]
        ),
        10,
        "d2's route, MM:3, on the RR",
    )
    for leaf in (d1, d3, f3):
        wait_until(partial(points_at, leaf.box, mac, d2.address), 10, f"{leaf.name} -> d2")
    assert bridge_ports(d2.box, mac) == {ports[1]} and not remote_dsts(d2.box, mac)

    # ... and d2 follows the MAC again: it shows up at f3 (seq 4).
    plug_leg(flap.fab, host, f3, "eth2", "h-flapf3")
    garp(host, ip, iface="eth2")

    def d2_follows() -> bool:
        view = mac_view(d2, mac)
        return bool(
            points_at(d2.box, mac, f3.address)
            and view
            and (view["type"], view["remoteVtep"], view["remoteSequence"])
            == ("remote", f3.address, 4)
            and not view["isDuplicate"]
        )

    eventually(d2_follows, 10, f"d2 follows {mac} to f3 (seq 4)")


def test_bystanders_follow_a_mac_flapping_between_other_leaves(flap: Flapping) -> None:
    """A MAC moving back and forth between f3 and f4 (4 moves: under FRR's 5): the VTEPs
    that never have it locally (f5, d1, d2, d3) follow every move and detect nothing."""
    f3, f4, f5 = (flap.leaves[n] for n in ("f3", "f4", "f5"))
    mac, ip = "02:00:5e:dd:00:02", TENANT.format(52)
    ports = flapping_host(flap.fab, "bys", [f3, f4], mac, ip)
    host = flap.fab.hosts["bys"]
    sides = [(f3, "eth0", ports[0]), (f4, "eth1", ports[1])]
    bystanders = [f5, *flap.agents]

    def follows(leaf: Leaf, side: Leaf, seq: int) -> bool:
        view = mac_view(leaf, mac)
        return bool(
            points_at(leaf.box, mac, side.address)
            and view
            and (view["type"], view["remoteVtep"], view["remoteSequence"])
            == ("remote", side.address, seq)
            and not view["isDuplicate"]
        )

    def all_follow(side: Leaf, seq: int) -> bool:
        return all(follows(b, side, seq) for b in bystanders)

    failures: list[str] = []
    for flip in range(5):
        side, iface, port = sides[flip % 2]
        other = sides[(flip + 1) % 2][0]
        garp(host, ip, iface=iface)
        wait_until(partial(learned_on, side.box, mac, port), 10, f"{side.name} learns {mac}")
        wait_until(
            partial(points_at, other.box, mac, side.address),
            10,
            f"{other.name} follows {mac} to {side.name}",
        )
        try:
            wait_until(
                partial(all_follow, side, flip),
                10,
                f"every bystander follows move {flip}",
                retry_on=RETRY,
            )
        except TimeoutError:
            failures += [
                f"move {flip} to {side.name}: {b.name} sends it to {remote_dsts(b.box, mac)}, "
                f"shows {mac_view(b, mac)}"
                for b in bystanders
                if not follows(b, side, flip)
            ]
    f5_view = mac_view(f5, mac)
    failures += [] if f5_view and f5_view["detectionCount"] == 0 else [f"FRR f5: {f5_view}"]
    assert not failures, "\n".join(failures)
