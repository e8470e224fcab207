"""``./lab/demo rr-restart`` and ``agent-restart``: a route reflector restarts, an agent
core is killed, while every host pings its VNI; the pings lost."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from typing import Any

from lab import runner
from lab.console import Usage, fmt_seconds, say
from lab.fabric import CommandError, run
from lab.live import SESSION_DEADLINE, Lab, open_lab, peers_in_vni, poll
from lab.runner import PingStream


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
    """``show vni --json``: FRR's map of VNI to its row, without the kernel check's times
    and counts (they belong to the core, and a new core starts them again)."""
    try:
        by_vni: dict[str, dict[str, Any]] = json.loads(
            lab.state.agent_cli(node, "show", "vni", "--json")
        )
    except (CommandError, ValueError):
        return None
    return {
        vni: {k: v for k, v in row.items() if not k.startswith("kernel")}
        for vni, row in by_vni.items()
    }


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
