"""``./lab/demo``: the evpn-agent lab in network namespaces, built from lab/evpn.clab.yml.

    up             build the fabric, show sessions, VNIs, a ping matrix and convergence times
    status         what runs
    down           remove everything the lab made
    move           a host moves to another leaf: time until every VTEP follows it
    rr-restart     stop and start a route reflector while pinging: pings lost
    agent-restart  kill one leaf's agent core (ExaBGP respawns it) while pinging: pings lost

Exit status: 0 when the lab does what it should, 1 when a check fails (the lab then stays
up for inspection), 2 on usage errors or a lab that is not there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import runner, topology
from lab.fabric import BRIDGE, IP, PYTHON, CommandError, missing_requirements, pid_alive, run
from lab.runner import LabState, PingStream, evpn_peers, ping_matrix
from lab.topology import Host, Plan

LAB_DIR = Path(__file__).resolve().parent
DEFAULT_TOPOLOGY = LAB_DIR / "evpn.clab.yml"
SESSION_DEADLINE = 60.0
PING_DEADLINE = 60.0
MATRIX_TIMEOUT = 1.5  # a ping across VNIs must stay unanswered this long


class LabFailed(Exception):
    """A check failed; the lab stays up for inspection."""


class Usage(Exception):
    """The command cannot run as asked (exit status 2)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} ==")


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` is truthy, or None at the deadline (no fixed sleeps)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(interval)


# ---------------------------------------------------------------- the lab as built


@dataclass
class Lab:
    state: LabState
    plan: Plan

    @property
    def vtep_addresses(self) -> dict[str, str]:
        return {n.name: n.address or "" for n in self.plan.by_role(*topology.VTEP_ROLES)}

    @property
    def route_reflectors(self) -> list[str]:
        return [n.name for n in self.plan.by_role("route-reflector")]

    @property
    def agents(self) -> list[str]:
        return [n.name for n in self.plan.by_role("agent-vtep")]

    def sessions(self) -> dict[str, dict[str, str]]:
        """Per RR: VTEP name -> BGP state."""
        out = {}
        for rr in self.route_reflectors:
            peers = evpn_peers(self.state, rr)
            out[rr] = {v: peers.get(a, "-") for v, a in self.vtep_addresses.items()}
        return out

    def all_established(self, rrs: Iterable[str] | None = None) -> bool:
        sessions = self.sessions()
        wanted = self.route_reflectors if rrs is None else list(rrs)
        return all(s == "Established" for rr in wanted for s in sessions[rr].values())

    def ip_json(self, node: str, *args: str) -> Any:
        """``ip -j ARGS`` in the node's namespace, decoded."""
        return json.loads(run([IP, "-n", self.state.nodes[node].netns, "-j", *args]) or "[]")

    def vxlan_of(self, node: str, vni: int) -> str:
        for link in self.ip_json(node, "-d", "link", "show", "type", "vxlan"):
            if link.get("linkinfo", {}).get("info_data", {}).get("id") == vni:
                return str(link["ifname"])
        raise LabFailed(f"{node} has no VXLAN device for VNI {vni}")

    def remote_vtep_of(self, node: str, vni: int, mac: str) -> str | None:
        """The VTEP that ``node`` sends ``mac`` to over VXLAN (None: unknown, or local)."""
        netns, vxlan = self.state.nodes[node].netns, self.vxlan_of(node, vni)
        out = run([BRIDGE, "-n", netns, "fdb", "show", "dev", vxlan], check=False)
        for line in out.splitlines():
            words = line.split()
            if words[:1] == [mac] and "dst" in words:
                return words[words.index("dst") + 1]
        return None


def open_lab(args: argparse.Namespace) -> Lab:
    state = LabState.load(args.state_dir)
    if state is None:
        raise Usage(f"no lab is up (no {LabState.path(args.state_dir)}): ./lab/demo up")
    missing = set(rec.netns for rec in state.nodes.values()) - set(state.existing_namespaces())
    if missing:
        raise Usage(f"the lab is broken ({len(missing)} namespaces gone): ./lab/demo down")
    return Lab(state, topology.load(state.topology))


# ---------------------------------------------------------------- up


def cmd_up(args: argparse.Namespace) -> int:
    state = LabState.load(args.state_dir)
    if state is not None:
        if is_alive(state):
            say(
                f"The lab is already up (namespaces {state.tag}-*, built "
                f"{time.strftime('%H:%M:%S', time.localtime(state.created))})."
            )
            say("./lab/demo status shows it; ./lab/demo down removes it.")
            return 0
        say("An earlier lab is only partly running: removing it first...")
    if state is not None or runner.lab_namespaces(args.prefix):
        runner.teardown(args.state_dir, args.prefix, say)

    plan = topology.load(args.topology)
    rel = os.path.relpath(plan.source)
    say(f"Building {rel} in network namespaces (prefix {args.prefix})...")
    begin = time.monotonic()
    state, daemons_started = runner.build(
        plan, prefix=args.prefix, state_dir=args.state_dir, note=lambda t: say(f"  {t}")
    )
    lab = Lab(state, plan)
    built = time.monotonic()
    say(f"  {describe(plan)}")
    say(f"  built in {built - begin:.1f} s; the daemons started {daemons_started - begin:.1f} s in")

    failures: list[str] = []
    sessions_at = poll(lab.all_established, SESSION_DEADLINE, 0.1)
    if sessions_at is not None:
        sessions_at = time.monotonic() - daemons_started
    else:
        failures.append(f"BGP sessions not all established after {SESSION_DEADLINE:.0f} s")

    pings_at: float | None = None
    slowest: list[str] = []
    if sessions_at is not None:
        pings_at, slowest = converge_pings(lab, PING_DEADLINE)
        if pings_at is None:
            failures.append(
                f"hosts in a VNI did not all reach each other in {PING_DEADLINE:.0f} s "
                f"(no answer: {', '.join(slowest)})"
            )
        else:
            pings_at = pings_at - daemons_started
    matrix = full_matrix(lab)

    heading("BGP sessions (show bgp l2vpn evpn summary, on each route reflector)")
    for rr in lab.route_reflectors:
        say(f"--- {rr}")
        say(runner.vtysh(state, rr, "show bgp l2vpn evpn summary").strip("\n"))
    heading("VNIs on each VTEP (evpn-agent show vni; vtysh show evpn vni on the FRR VTEP)")
    for node in lab.plan.by_role(*topology.VTEP_ROLES):
        say(f"--- {node.name}")
        if node.role == "agent-vtep":
            try:
                say(state.agent_cli(node.name, "show", "vni").rstrip("\n"))
            except CommandError as exc:
                say(f"evpn-agent show vni failed: {str(exc.stderr).strip()}")
                failures.append(f"evpn-agent on {node.name} does not answer")
        else:
            say(runner.vtysh(state, node.name, "show evpn vni").rstrip("\n"))
    heading("Ping matrix")
    verdict_ok, lines = render_matrix(plan, matrix)
    for line in lines:
        say(line)
    if not verdict_ok:
        failures.append("the ping matrix is wrong")

    heading("Convergence (from the start of the first routing daemon)")
    n = len(lab.route_reflectors) * len(lab.vtep_addresses)
    say(f"  all {n} BGP sessions established   {fmt_seconds(sessions_at)}")
    last = f" (last to answer: {', '.join(slowest)})" if 0 < len(slowest) <= 3 else ""
    say(f"  every host reaches its VNI      {fmt_seconds(pings_at)}{last}")
    say(
        f"  (building namespaces, links and bridges before that: {daemons_started - begin:.1f} s;"
        f" whole command {time.monotonic() - begin:.1f} s)"
    )
    say()
    if failures:
        for failure in failures:
            say(f"FAILED: {failure}")
        say("The lab stays up for inspection; ./lab/demo down removes it.")
        return 1
    say("The lab is up. Next: ./lab/demo status | move | rr-restart | agent-restart | down")
    return 0


def fmt_seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:5.1f} s"


def describe(plan: Plan) -> str:
    names = {
        "route-reflector": ("FRR route reflector", "FRR route reflectors"),
        "agent-vtep": ("evpn-agent leaf", "evpn-agent leaves"),
        "frr-vtep": ("FRR VTEP", "FRR VTEPs"),
        "host": ("host", "hosts"),
    }
    counts = {role: len(plan.by_role(role)) for role in names}
    parts = [f"{n} {names[role][n != 1]}" for role, n in counts.items() if n]
    return ", ".join(parts) + f", VNIs {', '.join(str(v) for v in plan.vnis)}"


def is_alive(state: LabState) -> bool:
    """Every namespace there, every daemon running."""
    if len(state.existing_namespaces()) != len(state.nodes):
        return False
    for node, rec in state.nodes.items():
        if rec.agent_pid is not None and not pid_alive(rec.agent_pid):
            return False
        if rec.role in topology.FRR_ROLES and state.frr(node).pid("bgpd") is None:
            return False
    return True


def peers_in_vni(plan: Plan, host: Host) -> list[Host]:
    return [h for h in plan.hosts if h.vni == host.vni and h.name != host.name]


def converge_pings(lab: Lab, deadline: float) -> tuple[float | None, list[str]]:
    """Monotonic time when every host first reached all hosts of its VNI (None: never),
    and the pairs that took longest (or never answered)."""
    sources = {h.name: [p.ip for p in peers_in_vni(lab.plan, h)] for h in lab.plan.hosts}
    names = {h.ip: h.name for h in lab.plan.hosts}
    slowest: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        # a round ends as soon as everything answered: the time resolution stays fine
        results = ping_matrix(lab.state, sources, timeout=1.0)
        slowest = [f"{src} -> {names[dst]}" for src, dsts in sources.items() for dst in dsts]
        sources = {h: [d for d, rtt in r.items() if rtt is None] for h, r in results.items()}
        sources = {h: dsts for h, dsts in sources.items() if dsts}
        if not sources:
            return time.monotonic(), slowest
    return None, [f"{src} -> {names[dst]}" for src, dsts in sources.items() for dst in dsts]


def full_matrix(lab: Lab) -> dict[str, dict[str, float | None]]:
    sources = {h.name: [o.ip for o in lab.plan.hosts if o is not h] for h in lab.plan.hosts}
    return ping_matrix(lab.state, sources, timeout=MATRIX_TIMEOUT)


def render_matrix(plan: Plan, matrix: dict[str, dict[str, float | None]]) -> tuple[bool, list[str]]:
    """The matrix as a table and a verdict line; True if it is what it should be."""
    hosts = plan.hosts
    label = {h.name: f"{h.name} {h.ip:<15} VNI {h.vni} {h.vtep}" for h in hosts}
    width = max(len(v) for v in label.values())
    lines = [
        "Each row pings every other host: + answered, . no answer, ! where that is wrong.",
        f"All hosts are in {_subnet(hosts)}: only the VNI separates them.",
        "",
        " " * width + "".join(f"{h.name:>5}" for h in hosts),
    ]
    within = [0, 0]  # answered, total
    across = [0, 0]
    wrong = []
    for a in hosts:
        cells = []
        for b in hosts:
            if a is b:
                cells.append(f"{'-':>5}")
                continue
            answered = matrix.get(a.name, {}).get(b.ip) is not None
            expected = plan.expected_reachable(a, b)
            counter = within if expected else across
            counter[0] += answered
            counter[1] += 1
            mark = "+" if answered else "."
            if answered != expected:
                mark += "!"
                wrong.append(f"{a.name} -> {b.name}")
            cells.append(f"{mark:>5}")
        lines.append(f"{label[a.name]:<{width}}" + "".join(cells))
    lines.append("")
    ok = not wrong
    lines.append(
        f"{'OK' if ok else 'WRONG'}: within a VNI {within[0]}/{within[1]} pings answered; "
        f"across VNIs {across[0]}/{across[1]} answered"
        + (" (isolated)" if across[0] == 0 else "")
        + ("" if ok else f"; wrong: {', '.join(wrong)}")
    )
    return ok, lines


def _subnet(hosts: Iterable[Host]) -> str:
    import ipaddress

    nets = {str(ipaddress.ip_interface(h.address).network) for h in hosts}
    return " and ".join(sorted(nets))


# ---------------------------------------------------------------- status, down


def cmd_status(args: argparse.Namespace) -> int:
    state = LabState.load(args.state_dir)
    leftovers = runner.lab_namespaces(args.prefix)
    if state is None:
        if leftovers:
            say(
                f"No lab record, but {len(leftovers)} namespaces named {args.prefix}* exist "
                "(an interrupted lab): ./lab/demo down removes them."
            )
            return 1
        say("No lab is up. ./lab/demo up builds it.")
        return 0
    present = set(state.existing_namespaces())
    say(f"Lab from {state.topology}, built {time.ctime(state.created)}; work dir {state.workdir}")
    say(f"{'node':<7} {'role':<16} {'namespace':<26} processes")
    for name, rec in state.nodes.items():
        procs = []
        if rec.netns not in present:
            procs.append("NAMESPACE GONE")
        elif rec.role in topology.FRR_ROLES:
            frr = state.frr(name)
            for daemon in ("zebra", "bgpd"):
                pid = frr.pid(daemon)
                procs.append(f"{daemon} {pid}" if pid else f"{daemon} NOT RUNNING")
        elif rec.agent_pid is not None:
            core = state.core_pid(name)
            if pid_alive(rec.agent_pid):
                procs.append(f"exabgp {rec.agent_pid}")
                procs.append(f"agent core {core}" if core else "agent core NOT RUNNING")
            else:
                procs.append(f"exabgp {rec.agent_pid} NOT RUNNING")
        say(f"{name:<7} {rec.role:<16} {rec.netns:<26} {', '.join(procs)}")
    lab = Lab(state, topology.load(state.topology))
    say()
    say("BGP sessions (l2vpn evpn) seen by the route reflectors:")
    for rr, peers in lab.sessions().items():
        say(f"  {rr}: " + ", ".join(f"{v} {s}" for v, s in peers.items()))
    healthy = is_alive(state) and lab.all_established()
    return 0 if healthy else 1


def cmd_down(args: argparse.Namespace) -> int:
    if runner.teardown(args.state_dir, args.prefix, say):
        left = runner.lab_namespaces(args.prefix)
        if left:
            say(f"Could not remove: {', '.join(left)}")
            return 1
        say("The lab is down: its processes are stopped and its namespaces deleted.")
    else:
        say("No lab was up.")
    return 0


# ---------------------------------------------------------------- move


@dataclass(frozen=True)
class Plug:
    """Where a host's NIC is plugged in: a VTEP's port and the host's interface."""

    vtep: str
    port: str
    interface: str


def cmd_move(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    if args.host not in {h.name for h in lab.plan.hosts}:
        raise Usage(f"no host {args.host!r}: {', '.join(h.name for h in lab.plan.hosts)}")
    host = lab.plan.host(args.host)
    if host.mac is None:
        raise Usage(f"{host.name} has no fixed MAC in the clab file")
    can_take = [
        n.name
        for n in lab.plan.by_role(*topology.VTEP_ROLES)
        if n.name != host.vtep and n.vtep and any(v.vni == host.vni for v in n.vtep.vnis)
    ]
    target = args.to or next((n for n in can_take if n in lab.agents), None)
    if target not in can_take:
        raise Usage(f"{host.name} can move to a VTEP with VNI {host.vni}: {can_take}")
    say(
        f"{host.name} ({host.mac}, {host.ip}, VNI {host.vni}) moves from {host.vtep} to "
        f"{target} and back, as a live-migrating VM: a new NIC at the other leaf gets its MAC "
        "and address and sends one gratuitous ARP; the old NIC stays plugged in (its leaf "
        "still has the MAC as local) until the move is seen, then it is unplugged. Times count "
        "from the gratuitous ARP."
    )
    home = Plug(host.vtep, host.port, host.interface)
    away = Plug(target, f"mv-{host.name}", "eth9")
    ok = move_once(lab, host, home, away)
    ok &= move_once(lab, host, away, home)
    return 0 if ok else 1


def move_once(lab: Lab, host: Host, old: Plug, new: Plug) -> bool:
    state, mac = lab.state, host.mac or ""
    new_vtep = lab.vtep_addresses[new.vtep]
    link = lab.plan.link_of(host.vtep, host.port)
    mtu = str(link.mtu if link else 1500)
    heading(f"{host.name}: {old.vtep} -> {new.vtep} ({new_vtep})")
    host_ns, vtep_ns = state.nodes[host.name].netns, state.nodes[new.vtep].netns
    run([IP, "-n", vtep_ns, "link", "add", new.port, "type", "veth",
         "peer", "name", new.interface, "netns", host_ns])  # fmt: skip
    attach(lab, new.vtep, new.port, host.vni)
    run([IP, "-n", vtep_ns, "link", "set", new.port, "mtu", mtu, "up"])
    # as the clab file's hosts: IPv4 only, so the NIC left behind stays silent
    runner.in_netns(host_ns, ["sysctl", "-qw", f"net.ipv6.conf.{new.interface}.disable_ipv6=1"])
    run([IP, "-n", host_ns, "link", "set", new.interface, "address", mac, "mtu", mtu, "up"])
    run([IP, "-n", host_ns, "address", "del", host.address, "dev", old.interface])
    run([IP, "-n", host_ns, "address", "add", host.address, "dev", new.interface])

    watchers = [v for v in lab.vtep_addresses if v != new.vtep]
    followed: dict[str, float] = {}
    start = time.monotonic()
    runner.in_netns(host_ns, [PYTHON, str(runner.PINGER), "garp", new.interface, host.ip])

    def all_follow() -> bool:
        for vtep in watchers:
            if vtep not in followed and lab.remote_vtep_of(vtep, host.vni, mac) == new_vtep:
                followed[vtep] = time.monotonic() - start
        return len(followed) == len(watchers)

    poll(all_follow, 20.0, 0.01)
    # the source "hypervisor" cleans up: deleting the leaf's end deletes the host's too
    run([IP, "-n", state.nodes[old.vtep].netns, "link", "del", old.port])
    for vtep in watchers:
        seen = followed.get(vtep)
        after = f"{seen * 1000:4.0f} ms" if seen is not None else "NEVER (20 s)"
        was = " (had it as a local MAC)" if vtep == old.vtep else ""
        say(f"  {vtep:<6} sends {mac} to {new_vtep} after {after}{was}")
    everyone = len(followed) == len(watchers)
    if everyone:
        say(f"  every other VTEP followed the move within {max(followed.values()) * 1000:.0f} ms")
    for frr in lab.plan.by_role("frr-vtep"):
        say(f"  {frr.name} (FRR) sees {frr_mac_view(lab, frr.name, host.vni, mac)}")
    peers = peers_in_vni(lab.plan, host)
    result = ping_matrix(state, {host.name: [p.ip for p in peers]}, timeout=2.0)[host.name]
    reach = ", ".join(f"{p.name} {'ok' if result[p.ip] is not None else 'FAILED'}" for p in peers)
    say(f"  {host.name} pings its VNI from {new.vtep}: {reach}")
    return everyone and None not in result.values()


def attach(lab: Lab, node: str, port: str, vni: int) -> None:
    """Put ``port`` into the bridge (and VLAN) that carries ``vni`` on ``node``."""
    netns = lab.state.nodes[node].netns
    vxlan = lab.vxlan_of(node, vni)
    bridge = lab.ip_json(node, "-d", "link", "show", vxlan)[0]["master"]
    run([IP, "-n", netns, "link", "set", port, "master", bridge])
    info = lab.ip_json(node, "-d", "link", "show", bridge)[0]
    if info.get("linkinfo", {}).get("info_data", {}).get("vlan_filtering"):
        # the VNI's VLAN is the VXLAN port's PVID (as vtep-setup.sh sets it)
        vlans = json.loads(run([BRIDGE, "-n", netns, "-j", "vlan", "show", "dev", vxlan]))
        pvid = next(v["vlan"] for e in vlans for v in e["vlans"] if "PVID" in v.get("flags", []))
        run([BRIDGE, "-n", netns, "vlan", "del", "vid", "1", "dev", port], check=False)
        run([BRIDGE, "-n", netns, "vlan", "add", "vid", str(pvid), "dev", port, "pvid", "untagged"])


def frr_mac_view(lab: Lab, node: str, vni: int, mac: str) -> str:
    try:
        out = json.loads(runner.vtysh(lab.state, node, f"show evpn mac vni {vni} mac {mac} json"))
    except (CommandError, ValueError):
        return "unknown"
    entry = out.get(mac, out)
    return (
        f"{entry.get('type', '?')} MAC, remote VTEP {entry.get('remoteVtep', '-')}, "
        f"MAC mobility sequence {entry.get('remoteSequence', '?')}"
    )


# ---------------------------------------------------------------- restarts


def all_flows(lab: Lab) -> dict[str, list[str]]:
    return {h.name: [p.ip for p in peers_in_vni(lab.plan, h)] for h in lab.plan.hosts}


def report_loss(lab: Lab, results: dict[str, dict[str, dict[str, float]]], interval: float) -> int:
    """Print the pings lost per flow; returns the total lost."""
    by_ip = {h.ip: h for h in lab.plan.hosts}
    total_sent = total_lost = 0
    say(f"  pings every {interval * 1000:.0f} ms from every host to every host of its VNI:")
    for src, flows in results.items():
        if not flows:
            say(f"  {src}: the pinger failed")
            total_lost += 1
            continue
        for dst_ip, stats in flows.items():
            dst = by_ip[dst_ip]
            total_sent += int(stats["sent"])
            total_lost += int(stats["lost"])
            if stats["lost"]:
                say(
                    f"    {src} -> {dst.name} ({lab.plan.host(src).vtep} -> {dst.vtep}): "
                    f"{stats['lost']:.0f}/{stats['sent']:.0f} lost, longest outage "
                    f"{stats['longest_outage_s']:.1f} s"
                )
    say(f"  pings lost: {total_lost} of {total_sent}")
    return total_lost


def cmd_rr_restart(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    rr = args.rr or lab.route_reflectors[0]
    if rr not in lab.route_reflectors:
        raise Usage(f"{rr} is not a route reflector")
    others = [r for r in lab.route_reflectors if r != rr]
    if not lab.all_established():
        raise Usage("not every BGP session is up: see ./lab/demo status")
    frr = lab.state.frr(rr)
    config = (frr.directory / "bgpd.conf").read_text()
    say(
        f"Stopping {rr} (zebra and bgpd) while every host pings its VNI; the VTEPs keep their "
        f"sessions to {', '.join(others) or 'no other RR'}."
    )
    stream = PingStream(lab.state, all_flows(lab), args.interval)
    try:
        start = time.monotonic()
        frr.stop()
        stopped = time.monotonic() - start
        say(f"  {rr} stopped ({stopped:.1f} s)")
        gone = poll(lambda: not any(established_tcp(lab, v, rr) for v in lab.vtep_addresses), 30)
        say(f"  every VTEP saw its session to {rr} close: {fmt_seconds(gone)}")
        say(f"  {rr} stays down for {args.down:g} s")
        time.sleep(args.down)  # the outage is the experiment, not a wait for something
        start = time.monotonic()
        frr.start(config, rr)
        up_at: dict[str, float] = {}

        def all_back() -> bool:
            for vtep, bgp in lab.sessions()[rr].items():
                if bgp == "Established":
                    up_at.setdefault(vtep, time.monotonic() - start)
            return len(up_at) == len(lab.vtep_addresses)

        back = poll(all_back, SESSION_DEADLINE, 0.1)
        if back is not None:
            back = max(up_at.values())  # from the start command, as each VTEP's time
        each = ", ".join(f"{v} {t:.1f} s" for v, t in sorted(up_at.items(), key=lambda i: i[1]))
        say(f"  {rr} started again; all its sessions established after {fmt_seconds(back)}")
        say(f"    ({each})")
        if others:
            synced = poll(lambda: prefixes(lab, rr) == prefixes(lab, others[0]), 30, 0.1)
            since = None if synced is None else time.monotonic() - start
            say(f"  {rr} holds the same routes as {others[0]} after {fmt_seconds(since)}")
    finally:
        results = stream.stop()
    lost = report_loss(lab, results, args.interval)
    ok = back is not None and lost == 0
    say(
        "OK: no ping lost while a route reflector restarted"
        if ok
        else "FAILED: pings were lost or the sessions did not come back"
    )
    return 0 if ok else 1


def established_tcp(lab: Lab, vtep: str, rr: str) -> bool:
    """An established TCP connection from ``vtep`` to the RR's BGP port."""
    netns, rr_ip = lab.state.nodes[vtep].netns, lab.plan.nodes[rr].address or ""
    out = run(["ss", "-N", netns, "-Htn", "state", "established", "dst", rr_ip], check=False)
    return any(line.split()[-1].endswith(":179") for line in out.splitlines() if line.strip())


def prefixes(lab: Lab, rr: str) -> dict[str, int]:
    """Routes received per peer, from the RR's summary."""
    try:
        summary = json.loads(runner.vtysh(lab.state, rr, "show bgp l2vpn evpn summary json"))
    except (CommandError, ValueError):
        return {}
    return {p: int(i.get("pfxRcd", -1)) for p, i in summary.get("peers", {}).items()}


def cmd_agent_restart(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    node = args.leaf or lab.agents[0]
    if node not in lab.agents:
        raise Usage(f"{node} runs no evpn-agent")
    old = lab.state.core_pid(node)
    if old is None:
        raise Usage(f"{node}: the agent core is not running: see ./lab/demo status")
    before_vni = show_vni(lab, node)
    before_up = peer_uptimes(lab, node)
    say(
        f"Killing {node}'s agent core (PID {old}, SIGKILL: a crash) while every host pings its "
        "VNI; ExaBGP keeps the BGP sessions and starts a new core."
    )
    stream = PingStream(lab.state, all_flows(lab), args.interval)
    try:
        start = time.monotonic()
        os.kill(old, signal.SIGKILL)
        respawned = poll(lambda: (lab.state.core_pid(node) or old) != old, 30)
        new = lab.state.core_pid(node)
        say(f"  new agent core: PID {new}, started {fmt_seconds(respawned)} after the kill")
        answers = poll(lambda: show_vni(lab, node) is not None, 30)
        since = None if answers is None else time.monotonic() - start
        say(f"  it answers evpn-agent show vni {fmt_seconds(since)} after the kill")
        same = poll(lambda: show_vni(lab, node) == before_vni, 30, 0.1)
        since = None if same is None else time.monotonic() - start
        say(f"  its VNIs, MAC counts and flood lists are as before {fmt_seconds(since)} after")
        say(f"  watching {args.observe:g} s more (stale-entry sweep, late withdraws)")
        time.sleep(args.observe)  # an observation window, not a wait for a condition
    finally:
        results = stream.stop()
    after_up = peer_uptimes(lab, node)
    kept = bool(before_up) and all(after_up.get(rr, 0) > t for rr, t in before_up.items())
    say(
        f"  BGP sessions of {node} stayed up across the restart: {'yes' if kept else 'NO'}"
        f" ({', '.join(f'{rr} up {after_up.get(rr, 0) / 1000:.0f} s' for rr in before_up)})"
    )
    lost = report_loss(lab, results, args.interval)
    ok = respawned is not None and same is not None and kept and lost == 0
    say(
        "OK: no ping lost and no session reset while the agent core restarted"
        if ok
        else "FAILED: see above"
    )
    return 0 if ok else 1


def show_vni(lab: Lab, node: str) -> dict[str, dict[str, Any]] | None:
    """``show vni --json``: FRR's map of VNI to its row."""
    try:
        by_vni: dict[str, dict[str, Any]] = json.loads(
            lab.state.agent_cli(node, "show", "vni", "--json")
        )
    except (CommandError, ValueError):
        return None
    return by_vni


def peer_uptimes(lab: Lab, node: str) -> dict[str, int]:
    """Per RR: how long (ms) its session with ``node`` has been up."""
    address = lab.plan.nodes[node].address
    out = {}
    for rr in lab.route_reflectors:
        try:
            summary = json.loads(runner.vtysh(lab.state, rr, "show bgp l2vpn evpn summary json"))
            out[rr] = int(summary["peers"][address]["peerUptimeMsec"])
        except (CommandError, ValueError, KeyError):
            pass
    return out


# ---------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./lab/demo",
        description="The evpn-agent lab (lab/evpn.clab.yml) in network namespaces.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[-1] if __doc__ else None,
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=runner.DEFAULT_STATE_DIR,
        help="where the lab's record and files live (default: %(default)s)",
    )
    p.add_argument(
        "--prefix",
        default=runner.DEFAULT_PREFIX,
        help="namespace name prefix, at most 8 characters (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build the lab and show it working")
    up.add_argument("--topology", type=Path, default=DEFAULT_TOPOLOGY)
    sub.add_parser("status", help="show what runs")
    sub.add_parser("down", help="remove everything the lab made")
    move = sub.add_parser("move", help="move a host to another leaf and back")
    move.add_argument("--host", default="h1")
    move.add_argument("--to", help="leaf to move to (default: another evpn-agent leaf)")
    rr = sub.add_parser("rr-restart", help="restart a route reflector while pinging")
    rr.add_argument("--rr", help="which one (default: the first)")
    rr.add_argument("--down", type=float, default=3.0, help="seconds it stays down")
    rr.add_argument("--interval", type=float, default=0.1, help="ping interval (s)")
    agent = sub.add_parser("agent-restart", help="kill a leaf's agent core while pinging")
    agent.add_argument("--leaf", help="which leaf (default: the first evpn-agent leaf)")
    agent.add_argument(
        "--observe",
        type=float,
        default=4.0,
        help="seconds to keep pinging after the new core is ready",
    )
    agent.add_argument("--interval", type=float, default=0.1, help="ping interval (s)")
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up,
    "status": cmd_status,
    "down": cmd_down,
    "move": cmd_move,
    "rr-restart": cmd_rr_restart,
    "agent-restart": cmd_agent_restart,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if len(args.prefix) > 8 or not args.prefix.isalnum():
        say("--prefix: up to 8 letters/digits")
        return 2
    # down and status need root only: they must work where FRR is gone
    missing = missing_requirements() if args.command not in ("down", "status") else []
    if os.geteuid() != 0:
        missing = missing or ["root"]
    if missing:
        say("The lab needs: " + ", ".join(missing) + " (sudo ./lab/demo up installs FRR).")
        return 2
    try:
        with runner.locked(args.state_dir):
            return COMMANDS[args.command](args)
    except (topology.TopologyError, Usage) as exc:
        say(str(exc))
        return 2
    except LabFailed as exc:
        say(f"FAILED: {exc}")
        return 1
    except BrokenPipeError:  # output piped into head & co.: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
