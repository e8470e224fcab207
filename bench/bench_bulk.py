"""Bulk benchmark: receive, withdraw and advertise in bulk, evpn-agent against an FRR VTEP.

Run as root from the repository root:

    .venv/bin/python bench/bench_bulk.py --trials 3 --out /tmp/bulk     # every scenario
    .venv/bin/python bench/bench_bulk.py --quick --trials 1             # smoke sizes
    .venv/bin/python bench/bench_bulk.py --scenarios receive-100k,advertise-50k

Each repetition of each side (evpn-agent = ExaBGP + agent core; FRR VTEP = zebra -s
90000000 + bgpd) gets a FRESH fabric (own namespaces, FRR route reflector, removed at the
end), so the two sides see the same RR and the same generator, never each other's load.

- receive-*: a generator (bench/probes bgp_generator: a minimal BGP speaker with
  pre-packed UPDATEs) peers with the RR; the VTEP under test comes up with its VNIs
  (``ip -batch``), its session is up and idle; then the generator sends every announce
  at once: timed until all type-2 MACs are in the VTEP's kernel (rtnetlink counter,
  ``count-fdb --follow``); then every withdraw: timed until all are gone.
- advertise-*: the VTEP under test has a host port per VNI; another FRR VTEP (the
  observer) has the same VNIs. N MACs appear at once (``bridge -batch`` of ``fdb add ...
  master dynamic``: entries like learned ones): timed until all are in the observer's
  kernel; then deleted the same way: timed until all are gone there.

Per phase: seconds, CPU seconds of the VTEP under test's processes (to the end of the
phase, and until they are idle again), peak RSS; the generator's own timings. Prints one
JSON object (figures per side, medians over trials, agent/FRR ratios, each with its 90%
bootstrap range) on stdout, a table on stderr; with --out DIR also the JSON, the time
series and a PNG per scenario there.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bulk_plot import plot, write_series
from bench.bulk_scenarios import Scenario, scenarios
from bench.bulk_setup import LOCAL_MAC_PREFIX, add_vnis, run_bridge_batch, write_mac_batches
from bench.child import Child
from bench.cpu_sampler import CpuSampler
from bench.frr_readings import set_frr_log_precision
from bench.harness import bench_fabric
from bench.options import setup_logging
from bench.procstats import proc_stats
from bench.profiling import py_spy, stop_py_spy
from bench.quiet import wait_idle, wait_machine_quiet
from bench.results import code_version, ratio_range
from lab.fabric import (
    AgentProcess,
    Box,
    Fabric,
    missing_requirements,
    render_vtep_config,
    wait_until,
)

log = logging.getLogger("bench.bulk")

ASN = 65000
VNI_BASE = 1000
RR_OCTET, GENERATOR_OCTET, DUT_OCTET, OBSERVER_OCTET = 1, 2, 10, 20
GENERATOR_MAC_TAG = 0x20  # the generator's MACs: 02:20:<index>
GENERATOR_MAC_PREFIX = f"02:{GENERATOR_MAC_TAG:02x}"
EMULATED_VTEP_BASE = 200  # 192.0.2.200.. : next hops of the generator's routes (no box)
SIDES = ("agent", "frr")
PROCESSES = {"agent": ("exabgp", "core"), "frr": ("bgpd", "zebra")}

# per phase: (the counter event that ends it, the figure's name)
PHASES = {
    "receive": (("in", "done"), ("out", "empty")),
    "advertise": (("in", "done"), ("out", "empty")),
}


class Side:
    """The VTEP under test, started as evpn-agent or an FRR VTEP; its process PIDs."""

    def __init__(self, fab: Fabric, box: Box, rr: Box, kind: str) -> None:
        self.kind = kind
        self.box = box
        if kind == "agent":
            agent = fab.start_agent(box, rrs=[rr], wait=True)
            core = wait_until(agent.core_pid, 30, "the agent core to start", interval=0.05)
            assert core is not None  # wait_until returns a truthy value
            self.pids = {"exabgp": agent.pid, "core": core}
            # Its start-up sweep (sweep-delay after the start) re-plans every key once: a
            # one-off, like zebra reading the kernel at its start, that must not fall into
            # a measured burst. Both sides are measured in their steady state.
            wait_until(lambda: agent_sweeping(agent), 30, "the agent's start-up sweep")
        else:
            start_frr_vtep(fab, box, rr)
            assert box.frr is not None
            self.pids = {d: pid for d in ("bgpd", "zebra") if (pid := box.frr.pid(d))}

    def stats(self) -> dict[str, Any]:
        return {name: proc_stats(pid) for name, pid in self.pids.items()}


def agent_sweeping(agent: AgentProcess) -> bool:
    answer = json.loads(agent.cli("reconcile", "--dry-run", "--json"))
    return bool(answer["sweeping"])


def start_frr_vtep(fab: Fabric, box: Box, rr: Box) -> None:
    """zebra (lab.fabric's default -s 90000000, as Debian) and bgpd, advertise-all-vni."""
    config = render_vtep_config(
        router_id=box.router_id,
        route_reflectors=[rr.address],
        log_file=box.directory / "frr" / "bgpd.log",
        hostname=box.name,
    )
    fab.start_frr(box, config)


def cpu_total(stats: dict[str, Any]) -> float:
    return float(sum(s["cpu_s"] for s in stats.values() if s))


def counter_for(box: Box, vnis: list[int], target: int, mac_prefix: str) -> Child:
    devices = ",".join(box.vnis[vni].vxlan for vni in vnis)
    counter = Child(
        box.netns.name, "count-fdb", "--devices", devices, "--target", str(target),
        "--every", str(max(1, target // 100)), "--follow", "--mac-prefix", mac_prefix,
    )  # fmt: skip
    counter.wait_ready()
    return counter


def measure_phase(
    name: str,
    end_event: str,
    trigger: Callable[[], dict[str, Any]],
    counter: Child,
    side: Side,
    sampler: CpuSampler,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One burst: ``trigger`` starts it; ends at the counter's ``end_event``."""
    start_index = len(counter.snapshot())
    profilers = []
    if args.profile and side.kind == "agent":  # py-spy its processes during this burst
        args.profile.mkdir(parents=True, exist_ok=True)
        for process, pid in side.pids.items():
            out = args.profile / f"{side.kind}-{name}-{process}-{int(time.time())}.raw.txt"
            profilers.append(py_spy(pid, out))
    cpu0 = side.stats()
    t0 = time.time()
    extra = trigger()
    end = counter.wait_for(lambda x: x.get("event") == end_event, args.deadline, start_index)
    t_end = end["t"] if end else None
    for profiler in profilers:
        stop_py_spy(profiler)
    cpu_end = side.stats()
    idle_s = wait_idle(list(side.pids.values()), timeout=args.deadline)
    cpu_idle = side.stats()
    counted = counter.snapshot()
    lines = counted[start_index:]
    window = sampler.between(t0, t_end)
    progress = [x for x in lines if x.get("event") == "progress"]
    # the first count that moved (1% of the routes, as the counter reports): until then the
    # reflector (or the bridge command) had not delivered; the rest is the VTEP's own part
    before = next((x["n"] for x in reversed(counted[:start_index])
                   if x.get("event") == "progress"), 0)  # fmt: skip
    first = next((x["t"] for x in progress if x["n"] != before), None)
    result: dict[str, Any] = {
        "complete": end is not None,
        "seconds": None if t_end is None else round(t_end - t0, 3),
        "first_change_s": None if first is None else round(first - t0, 3),
        "after_first_s": None if first is None or t_end is None else round(t_end - first, 3),
        "last_count": progress[-1]["n"] if progress else None,
        "cpu_s": round(cpu_total(cpu_end) - cpu_total(cpu0), 2),
        "cpu_s_until_idle": round(cpu_total(cpu_idle) - cpu_total(cpu0), 2),
        "idle_after_s": round(idle_s, 2),
        "cpu_s_per_process": _per_process(cpu0, cpu_idle, "cpu_s"),
        "sys_s_per_process": _per_process(cpu0, cpu_idle, "sys_s"),
        "window": window,
        # time the VTEP's processes were runnable but waited for a CPU (other jobs)
        "runqueue_wait_s": round(
            sum(window.get(p, {}).get("runqueue_wait_s", 0.0) for p in side.pids), 2
        ),
        "points": [[round(x["t"] - t0, 4), x["n"]] for x in progress],
        **extra,
    }
    if "bridge_batch_s" in result and result["seconds"] is not None:
        # advertise: the MACs appear while the bridge command runs; what follows its end is
        # the pipeline's tail, through the VTEP, the reflector and the observer
        result["after_bridge_s"] = round(result["seconds"] - result["bridge_batch_s"], 3)
    if any(x.get("event") == "overflow" for x in lines):
        result["counter_overflow"] = True  # the count missed notifications: not reliable
    if end is None:
        log.warning("%s %s: %s not reached in %.0fs", side.kind, name, end_event, args.deadline)
    return result


def _per_process(before: dict[str, Any], after: dict[str, Any], key: str) -> dict[str, float]:
    """``key`` of each process's proc_stats, after minus before (0 for a process gone)."""
    return {
        p: round((stats or {}).get(key, 0) - (before[p] or {}).get(key, 0), 2)
        for p, stats in after.items()
    }


def _bridge_batch(box: Box, path: Path, timeout: float) -> dict[str, Any]:
    took, cpu = run_bridge_batch(box, path, timeout)
    return {"bridge_batch_s": round(took, 3), "bridge_batch_cpu_s": round(cpu, 2)}


def _others(phase: dict[str, Any]) -> float | None:
    """The cores other jobs used in a phase's window: not the scenario's own ``bridge``
    command (a third of a core while it adds 50,000 entries), which every side runs."""
    window = phase["window"]
    share = window.get("others_core_share")
    if share is None or not window.get("window_s"):
        return share
    return round(max(0.0, share - phase.get("bridge_batch_cpu_s", 0.0) / window["window_s"]), 2)


def run_receive(
    fab: Fabric, rr: Box, scenario: Scenario, kind: str, args: argparse.Namespace
) -> dict[str, Any]:
    vnis = list(range(VNI_BASE, VNI_BASE + scenario.vnis))
    gen_box = fab.add_box("gen", GENERATOR_OCTET)
    vteps = [f"192.0.2.{EMULATED_VTEP_BASE + k}" for k in range(scenario.vteps)]
    generator = Child(
        gen_box.netns.name, "bgp-generate", "--local", gen_box.address, "--peer", rr.address,
        "--asn", str(ASN), "--routes", str(scenario.routes), "--vnis", str(scenario.vnis),
        "--vni-base", str(VNI_BASE), "--vteps", ",".join(vteps),
        "--mac-tag", str(GENERATOR_MAC_TAG), stdin=True,
    )  # fmt: skip
    try:
        ready = generator.wait_ready(timeout=60)
        fab.wait_established(rr, gen_box.address, timeout=30)
        box = fab.add_box("dut", DUT_OCTET)
        add_vnis(box, vnis)
        counter = counter_for(box, vnis, scenario.routes, GENERATOR_MAC_PREFIX)
        return run_side(
            fab, rr, box, kind, counter, args,
            triggers={
                "in": lambda: sent(generator, "announce"),
                "out": lambda: sent(generator, "withdraw"),
            },
            extra_pids={"generator": generator.process.pid},
            setup={"generator": {k: v for k, v in ready.items() if k not in ("event", "t")}},
        )  # fmt: skip
    finally:
        generator.stop()


def sent(generator: Child, what: str) -> dict[str, Any]:
    """Tell the generator to send; its report comes back when the last byte is written
    (the RR reads at its own pace), so the report is read by the caller after the phase."""
    index = len(generator.snapshot())
    generator.write(what)
    return {"_generator": (generator, index, what)}


def run_advertise(
    fab: Fabric, rr: Box, scenario: Scenario, kind: str, args: argparse.Namespace
) -> dict[str, Any]:
    vnis = list(range(VNI_BASE, VNI_BASE + scenario.vnis))
    observer = fab.add_box("obs", OBSERVER_OCTET)
    add_vnis(observer, vnis)
    start_frr_vtep(fab, observer, rr)
    fab.wait_established(rr, observer.address, timeout=30)
    counter = counter_for(observer, vnis, scenario.routes, LOCAL_MAC_PREFIX)
    box = fab.add_box("dut", DUT_OCTET)
    add_vnis(box, vnis, host_ports=True)
    add_path, delete_path = write_mac_batches(box.directory, scenario.routes, vnis)
    limit = args.deadline
    assert observer.frr is not None
    return run_side(
        fab, rr, box, kind, counter, args,
        triggers={
            "in": lambda: _bridge_batch(box, add_path, limit),
            "out": lambda: _bridge_batch(box, delete_path, limit),
        },
        extra_pids={f"observer_{d}": p for d in ("bgpd", "zebra") if (p := observer.frr.pid(d))},
        setup={"observer": observer.address},
    )  # fmt: skip


def run_side(
    fab: Fabric,
    rr: Box,
    box: Box,
    kind: str,
    counter: Child,
    args: argparse.Namespace,
    *,
    triggers: dict[str, Callable[[], dict[str, Any]]],
    extra_pids: dict[str, int],
    setup: dict[str, Any],
) -> dict[str, Any]:
    """Start the VTEP under test, wait until its session is up and everything idle, then
    the two phases."""
    try:
        started = time.monotonic()
        side = Side(fab, box, rr, kind)
        fab.wait_established(rr, box.address, timeout=60)
        assert rr.frr is not None
        background = {"bench": os.getpid(), "counter": counter.process.pid, **extra_pids}
        if (pid := rr.frr.pid("bgpd")) is not None:
            background["rr_bgpd"] = pid
        wait_idle([*side.pids.values(), *background.values()], timeout=60)
        setup["up_and_idle_s"] = round(time.monotonic() - started, 2)
        setup["machine_busy_cores_before"] = wait_machine_quiet(timeout=args.quiet_timeout)
        sampler = CpuSampler({**background, **side.pids})
        result: dict[str, Any] = {"setup": setup}
        try:
            for name, end_event in PHASES["receive"]:
                phase = measure_phase(name, end_event, triggers[name], counter, side, sampler, args)
                handle = phase.pop("_generator", None)
                if handle is not None:
                    generator, index, what = handle
                    report = generator.wait_for(
                        lambda x, w=what: x.get("event") == "sent" and x.get("what") == w,
                        args.deadline,
                        index,
                    )
                    phase["generator"] = {
                        k: v for k, v in (report or {}).items() if k not in ("event", "what")
                    }
                result[name] = phase
                if not phase["complete"]:
                    break
        finally:
            sampler.stop()
        stats = side.stats()
        result["peak_rss_mib"] = round(sum(s["hwm_mib"] for s in stats.values() if s), 1)
        result["processes_at_end"] = stats
        others = [_others(result[p]) for p in ("in", "out") if p in result and result[p]["window"]]
        result["others_core_share"] = [o for o in others if o is not None]
        result["disturbed"] = any(o > args.max_others for o in result["others_core_share"])
        return result
    finally:
        counter.stop()


RUNNERS = {"receive": run_receive, "advertise": run_advertise}

# (figure, phase or None for the run, key): medians per side, agent / FRR
FIGURES = (
    ("in_s", "in", "seconds"),
    ("out_s", "out", "seconds"),
    ("in_after_first_s", "in", "after_first_s"),
    ("out_after_first_s", "out", "after_first_s"),
    ("in_after_bridge_s", "in", "after_bridge_s"),
    ("out_after_bridge_s", "out", "after_bridge_s"),
    ("in_cpu_s", "in", "cpu_s_until_idle"),
    ("out_cpu_s", "out", "cpu_s_until_idle"),
    ("peak_rss_mib", None, "peak_rss_mib"),
)


def figure(run: dict[str, Any], phase: str | None, key: str) -> float | None:
    value = (run.get(phase, {}) if phase else run).get(key)
    return None if value is None else float(value)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per figure: the median per side over complete runs, and agent / FRR. Only the
    undisturbed runs of a side count, if it has any."""
    figures: dict[str, Any] = {}
    chosen = {side: [r for r in rs if not r["disturbed"]] or rs for side, rs in runs.items()}
    figures["undisturbed_runs"] = {
        side: sum(1 for r in rs if not r["disturbed"]) for side, rs in runs.items()
    }
    for name, phase, key in FIGURES:
        row: dict[str, Any] = {}
        for side in SIDES:
            values = [v for r in chosen.get(side, []) if (v := figure(r, phase, key)) is not None]
            row[side] = median(values)
            row[f"{side}_all"] = values
        if row.get("agent") is not None and row.get("frr"):
            row["ratio"] = round(row["agent"] / row["frr"], 2)
            row["ratio_90"] = ratio_range(row["agent_all"], row["frr_all"])
        figures[name] = row
    return figures


def generator_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The generator's send windows against the FRR side's figure: the generator is not
    the bottleneck when it is done writing well before the FRR VTEP is done."""
    out: dict[str, Any] = {}
    for phase in ("in", "out"):
        rows = [
            (side, r[phase]["generator"], r[phase]["seconds"])
            for side in SIDES
            for r in runs.get(side, [])
            if phase in r and r[phase].get("generator")
        ]
        sends = [g["send_s"] for _, g, _ in rows if g.get("send_s") is not None]
        frr = [s for side, _, s in rows if side == "frr" and s is not None]
        out[phase] = {
            "send_s": sends,
            "cpu_s": [g.get("cpu_s") for _, g, _ in rows],
            "messages": rows[0][1].get("messages") if rows else None,
            "frr_seconds": frr,
            # done writing in under a tenth of the FRR VTEP's time: not what bounds it
            "not_the_bottleneck": bool(sends and frr) and max(sends) < 0.1 * min(frr),
        }
    return out


def print_table(output: dict[str, Any]) -> None:
    lines = [
        f"{'scenario':<17} {'figure':<18} {'evpn-agent':>11} {'FRR VTEP':>10} {'ratio':>7}"
        f"  {'90% range':<11}"
    ]
    for name, result in output["scenarios"].items():
        for key, row in result["figures"].items():
            if key == "undisturbed_runs":
                continue
            agent, frr, ratio = row.get("agent"), row.get("frr"), row.get("ratio")
            if agent is None and frr is None:
                continue  # a figure of the other kind of scenario
            span = row.get("ratio_90")
            lines.append(
                f"{name:<17} {key:<18} {_cell(agent):>11} {_cell(frr):>10} "
                f"{'' if ratio is None else f'{ratio:.2f}x':>7}"
                f"  {'' if not span else f'{span[0]:.2f}-{span[1]:.2f}':<11}"
            )
    sys.stderr.write("\n".join(lines) + "\n")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenarios",
        help="comma separated (default: all): receive-10k, receive-100k, receive-1000vni, "
        "advertise-10k, advertise-50k",
    )
    parser.add_argument("--quick", action="store_true", help="smoke sizes (2,000-5,000 routes)")
    parser.add_argument("--trials", type=int, default=3, help="runs per side (3); medians")
    parser.add_argument("--sides", default="agent,frr", help="agent,frr (default both)")
    parser.add_argument("--out", type=Path, help="write the JSON, time series and plots here")
    parser.add_argument("--deadline", type=float, help="per phase (300 s, 60 with --quick)")
    parser.add_argument("--quiet-timeout", type=float, help="wait for an idle machine (60/10 s)")
    parser.add_argument(
        "--max-others", type=float, default=0.3, help="'disturbed' above this many busy cores"
    )
    parser.add_argument(
        "--retries", type=int, help="repeat a disturbed run up to N times (1; 0 with --quick)"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the VTEP's processes during each burst, raw "
        "stacks into this directory (Python processes only; the figures are then slower)"
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    if args.quiet_timeout is None:
        args.quiet_timeout = 10.0 if args.quick else 60.0
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if args.deadline is None:
        args.deadline = 60.0 if args.quick else 300.0
    try:
        chosen = scenarios(args.scenarios.split(",") if args.scenarios else None, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    sides = [s for s in args.sides.split(",") if s]
    if not sides or any(s not in SIDES for s in sides) or not 1 <= args.trials <= 20:
        parser.error("--sides takes agent and/or frr; --trials 1..20")
    missing = missing_requirements()
    if missing:
        log.error("cannot build a fabric here: %s", ", ".join(missing))
        return 1
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    output: dict[str, Any] = {
        "benchmark": "bulk",
        "code": code_version(),
        "quick": args.quick,
        "trials": args.trials,
        "scenarios": {},
    }
    for scenario in chosen:
        runs: dict[str, list[dict[str, Any]]] = {}
        for trial in range(args.trials):
            # alternate which side goes first: neither always gets the cooler machine
            order = sides if trial % 2 == 0 else list(reversed(sides))
            for kind in order:
                for attempt in range(args.retries + 1):
                    log.info("%s: trial %d, %s (attempt %d)", scenario.name, trial + 1, kind,
                             attempt + 1)  # fmt: skip
                    with bench_fabric("bbk") as fab:
                        rr = fab.add_route_reflector("rr", RR_OCTET)
                        set_frr_log_precision(rr)
                        result = RUNNERS[scenario.kind](fab, rr, scenario, kind, args)
                    result["trial"] = trial + 1
                    runs.setdefault(kind, []).append(result)
                    log.info(
                        "%s %s: in %s s, out %s s%s",
                        scenario.name,
                        kind,
                        result.get("in", {}).get("seconds"),
                        result.get("out", {}).get("seconds"),
                        " (disturbed by other jobs)" if result["disturbed"] else "",
                    )
                    if not result["disturbed"]:
                        break
        entry: dict[str, Any] = {
            "description": scenario.description,
            "type2_routes": scenario.routes,
            "type3_routes": scenario.type3_routes,
            "vnis": scenario.vnis,
            "emulated_vteps": scenario.vteps if scenario.kind == "receive" else None,
            "figures": summarize(runs),
        }
        if scenario.kind == "receive":
            entry["generator"] = generator_summary(runs)
        series = {
            side: [
                {
                    "trial": r["trial"],
                    "phase": phase,
                    "start": 0 if phase == "in" else scenario.routes,
                    "points": r[phase]["points"],
                }
                for r in side_runs
                for phase in ("in", "out")
                if phase in r
            ]
            for side, side_runs in runs.items()
        }
        if args.out:
            entry["series_file"] = str(write_series(args.out, scenario.name, series))
            png = plot(args.out, scenario.name, scenario.description, series)
            entry["plot"] = str(png) if png else "skipped: matplotlib is not installed"
        for side_runs in runs.values():
            for r in side_runs:
                for phase in ("in", "out"):
                    r.get(phase, {}).pop("points", None)
        entry["runs"] = runs
        output["scenarios"][scenario.name] = entry
    text = json.dumps(output, indent=2)
    if args.out:
        (args.out / "bulk.json").write_text(text + "\n")
    print(text)
    print_table(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
