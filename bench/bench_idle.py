"""Idle benchmark: CPU and wake-ups of an idle agent VTEP against an idle FRR VTEP.

Run as root from the repository root:

    .venv/bin/python bench/bench_idle.py                 # 60 s window
    .venv/bin/python bench/bench_idle.py --duration 20   # a smoke run

Fabric (own uniquely named namespaces, removed even on failure): --reflectors FRR route
reflectors (2, as the demo), one evpn-agent VTEP (ExaBGP + agent core; hold time
--hold-time, 9 s as the demo) and one FRR VTEP (bgpd + zebra), --vnis VNIs each.
Once both sessions are up, both VTEPs flood to each other and these processes are quiet,
nothing happens for --duration seconds; over that window each process's CPU (the scheduler's on-CPU
nanoseconds, /proc/PID/task/*/schedstat) and wake-ups (voluntary context switches of every
thread: each is one sleep that ended) are read at both ends. Prints one JSON object with
per-process figures, agent (ExaBGP + core) and FRR (bgpd + zebra) totals and the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_fabric
from bench.options import setup_logging
from bench.quiet import wait_idle, wait_machine_quiet
from bench.results import code_version
from lab.fabric import Box, missing_requirements, wait_until

log = logging.getLogger("bench.idle")

FIRST_VNI = 100


def task_counters(pid: int) -> tuple[int, int, dict[str, int]] | None:
    """(on-CPU ns, voluntary context switches) summed over the threads of ``pid``, and
    the switches per thread ("TID:name")."""
    cpu_ns = switches = 0
    threads = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        base = f"/proc/{pid}/task/{task}"
        try:
            cpu_ns += int(Path(f"{base}/schedstat").read_text().split()[0])
            name = Path(f"{base}/comm").read_text().strip()
            for line in Path(f"{base}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
                    threads[f"{task}:{name}"] = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return cpu_ns, switches, threads


def idle_window(pids: dict[str, int], duration: float) -> dict[str, dict[str, Any]]:
    """Per process, over ``duration`` seconds: CPU share of a core and wake-ups per second."""
    before = {name: task_counters(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(duration)  # the measurement window itself: nothing to wait for
    elapsed = time.monotonic() - started
    figures = {}
    for name, pid in pids.items():
        first, last = before[name], task_counters(pid)
        if first is None or last is None:
            raise RuntimeError(f"{name} (pid {pid}) ended during the idle window")
        figures[name] = {
            "cpu_percent": round(100 * (last[0] - first[0]) / 1e9 / elapsed, 4),
            "wakeups_per_s": round((last[1] - first[1]) / elapsed, 3),
            "wakeups_per_thread": {
                thread: n - first[2].get(thread, 0) for thread, n in sorted(last[2].items())
            },
        }
    return figures


def total(figures: dict[str, dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    return {
        key: round(sum(figures[n][key] for n in names), 4)
        for key in ("cpu_percent", "wakeups_per_s")
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def flood_list(box: Box, vni: int) -> set[str]:
    out = box.netns.bridge("-j", "fdb", "show", "dev", box.vnis[vni].vxlan)
    return {e["dst"] for e in json.loads(out or "[]") if e.get("mac") == "00:00:00:00:00:00"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="idle window (60 s)")
    parser.add_argument("--vnis", type=int, default=2, help="VNIs per VTEP (2)")
    parser.add_argument(
        "--reflectors", type=int, choices=(1, 2), default=2, help="route reflectors (2)"
    )
    parser.add_argument("--hold-time", type=int, default=9, help="agent's hold time (9 s)")
    parser.add_argument("--quiet-timeout", type=float, default=60.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    missing = missing_requirements()
    if missing:
        log.error("cannot build a fabric here: %s", ", ".join(missing))
        return 1
    output: dict[str, Any] = {
        "benchmark": "idle",
        "duration_s": args.duration,
        "vnis": args.vnis,
        "reflectors": args.reflectors,
        "agent_hold_time_s": args.hold_time,
        "code": code_version(),
    }
    vnis = range(FIRST_VNI, FIRST_VNI + args.vnis)
    with bench_fabric("bidl") as fab:
        rrs = [fab.add_route_reflector(f"rr{i + 1}", i + 1) for i in range(args.reflectors)]
        agent_box = fab.add_agent_vtep("a1", 21)
        frr_box = fab.add_frr_vtep("f1", 11, rrs=rrs)
        for box in (agent_box, frr_box):
            for vni in vnis:
                box.add_vni(vni)
        agent = fab.start_agent(agent_box, rrs=rrs, hold_time=args.hold_time)
        for rr in rrs:
            for box in (agent_box, frr_box):
                fab.wait_established(rr, box.address, timeout=60)
        for box, other in ((agent_box, frr_box), (frr_box, agent_box)):
            for vni in vnis:
                wait_until(
                    lambda box=box, vni=vni, other=other: other.address in flood_list(box, vni),
                    60,
                    f"{box.name} to flood VNI {vni} to {other.name}",
                    interval=0.2,
                )
        assert frr_box.frr is not None
        core = agent.core_pid()
        pids = {
            "agent_exabgp": agent.pid,
            "agent_core": core,
            "frr_bgpd": frr_box.frr.pid("bgpd"),
            "frr_zebra": frr_box.frr.pid("zebra"),
        }
        missing_pids = [name for name, pid in pids.items() if pid is None]
        if missing_pids:
            log.error("no process for %s", ", ".join(missing_pids))
            return 1
        found = {name: pid for name, pid in pids.items() if pid is not None}
        # start-up work (the sweep, a route refresh) must be over: our processes quiet first
        output["waited_for_our_processes_s"] = round(wait_idle(list(found.values()), 60), 1)
        output["machine_busy_cores_before"] = wait_machine_quiet(timeout=args.quiet_timeout)
        log.info("idle window of %gs", args.duration)
        figures = idle_window(found, args.duration)
    agent_total = total(figures, ("agent_exabgp", "agent_core"))
    frr_total = total(figures, ("frr_bgpd", "frr_zebra"))
    output["processes"] = figures
    output["agent"] = agent_total
    output["frr"] = frr_total
    output["agent_over_frr"] = {
        key: ratio(agent_total[key], frr_total[key]) for key in ("cpu_percent", "wakeups_per_s")
    }
    output["targets"] = {
        "agent_idle_cpu_below_frr": agent_total["cpu_percent"] < frr_total["cpu_percent"],
    }
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
