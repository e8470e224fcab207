"""``./lab/demo``: the evpn-agent lab in network namespaces, built from lab/evpn.clab.yml.

    up             build the fabric, show sessions, VNIs, a ping matrix and convergence times
    status         what runs
    down           remove everything the lab made
    move           a host moves to another leaf: time until every VTEP follows it
    rr-restart     stop and start a route reflector while pinging: pings lost
    agent-restart  kill one leaf's agent core (ExaBGP respawns it) while pinging: pings lost
    watch          per VTEP, flood entries and remote MACs once a second until converged

Exit status: 0 when the lab does what it should, 1 when a check fails (the lab then stays
up for inspection), 2 on usage errors or a lab that is not there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lab import runner, topology
from lab.console import LabFailed, Usage, fmt_seconds, heading, say
from lab.fabric import CommandError, missing_requirements, pid_alive
from lab.live import SESSION_DEADLINE, Lab, is_alive, peers_in_vni, poll
from lab.move import cmd_move
from lab.restarts import cmd_agent_restart, cmd_rr_restart
from lab.runner import LabState, ping_matrix
from lab.topology import Host, Plan
from lab.watch import cmd_watch

LAB_DIR = Path(__file__).resolve().parent
DEFAULT_TOPOLOGY = LAB_DIR / "evpn.clab.yml"
PING_DEADLINE = 60.0
MATRIX_TIMEOUT = 1.5  # a ping across VNIs must stay unanswered this long


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
    watch = sub.add_parser("watch", help="show each VTEP's kernel converging, once a second")
    watch.add_argument("--settle", type=float, default=3.0, help="unchanged this long (s)")
    watch.add_argument("--timeout", type=float, default=120.0, help="give up after (s)")
    return p


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up,
    "status": cmd_status,
    "down": cmd_down,
    "move": cmd_move,
    "rr-restart": cmd_rr_restart,
    "agent-restart": cmd_agent_restart,
    "watch": cmd_watch,
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
        # watch only reads: it must run beside the command whose convergence it shows
        watching = args.command == "watch"
        with contextlib.nullcontext() if watching else runner.locked(args.state_dir):
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
