"""The scale lab's cold start alone, many times, for two checkouts of the agent in turn.

Run as root from the repository root:

    .venv/bin/python bench/bench_alone.py --trials 4                      # this checkout
    .venv/bin/python bench/bench_alone.py --trials 4 --other ../wt        # A/B, alternating

The fabric of ``bench_scale.py`` (8 agents, an FRR VTEP, 64 emulated VTEPs, 1,000 VNIs,
two reflectors), its cold start of all VTEPs, then each agent's first periodic reconcile;
then, --trials times: a1 from this checkout, f1 (FRR), and with --other a1 from that
checkout and f1 again. One trial moves by ~10% from run to run on a shared machine, and
two runs of the whole scale bench differ more than a change does; trials alternating in
one fabric compare two trees under the same load. ``--other`` is another checkout (a git
worktree) run with the same interpreter and packages: a1's processes start in its
directory (``Fabric.start_agent(code=)``: ``python -m`` puts the working directory first
on the path, so PYTHONPATH alone would not win over it). Nothing else in the fabric runs
its code.

Prints one JSON object: every trial, and per side the median of each figure and its ratio
to the FRR VTEP's median.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_scale import ALONE_FIGURES, Lab
from bench.harness import bench_fabric
from bench.options import setup_logging
from bench.results import code_version
from lab.fabric import missing_requirements

log = logging.getLogger("bench.alone")


def lab_args(args: argparse.Namespace) -> argparse.Namespace:
    """What Lab reads of bench_scale's options: its defaults but for the sizes here."""
    return argparse.Namespace(
        agents=args.agents,
        emulated=args.emulated,
        vnis=args.vnis,
        macs=1,
        vni_base=1000,
        no_frr=False,
        hold_time=30,
        alone_trials=1,
        deadline=600.0,
        quiet_timeout=60.0,
        profile=None,
    )


def trial(lab: Lab, vtep: Any, code: Path | None) -> dict[str, Any]:
    """One cold start alone of ``vtep``; an agent's code from ``code`` (None: this one)."""
    lab.agent_code = code
    try:
        row = lab._cold_start_alone(vtep, 1)
    finally:
        lab.agent_code = None
    return {key: row.get(key) for key in ALONE_FIGURES}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ALONE_FIGURES:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4, help="cold starts alone per side (4)")
    parser.add_argument("--other", type=Path, help="another checkout of the agent, for A/B")
    parser.add_argument("--agents", type=int, default=8, help="agent VTEPs (8)")
    parser.add_argument("--emulated", type=int, default=64, help="emulated VTEPs (64)")
    parser.add_argument("--vnis", type=int, default=1000, help="VNIs per VTEP (1000)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    if not 1 <= args.trials <= 20:
        parser.error("--trials 1..20")
    other = args.other.resolve() if args.other else None
    if other is not None and not (other / "evpn_agent" / "__init__.py").is_file():
        parser.error(f"--other {args.other}: no evpn_agent package there")
    missing = missing_requirements()
    if missing:
        log.error("cannot build a fabric here: %s", ", ".join(missing))
        return 1
    sides: dict[str, Path | None] = {"this": None}
    if other is not None:
        sides["other"] = other
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in (*sides, "frr")}
    with bench_fabric("bal") as fab:
        lab = Lab(fab, lab_args(args))
        lab.start_generator()
        lab.add_vteps()
        lab.cold_start()
        lab.wait_first_reconciles()  # none of them falls inside a trial
        agent, frr = lab._one_of_each()
        for n in range(args.trials):
            for name, tree in sides.items():
                rows[name].append(trial(lab, agent, tree))
                log.info("trial %d, %s: %s", n + 1, name, rows[name][-1])
                rows["frr"].append(trial(lab, frr, None))
                log.info("trial %d, frr: %s", n + 1, rows["frr"][-1])
        lab.sampler.stop()
    medians = {name: summary(r) for name, r in rows.items()}
    ratios = {
        name: {
            key: round(m[key] / medians["frr"][key], 3)
            for key in ("all_s", "cpu_s")
            if m[key] and medians["frr"][key]
        }
        for name, m in medians.items()
        if name != "frr"
    }
    output = {
        "benchmark": "alone",
        "code": code_version(),
        "other": str(other) if other else None,
        "trials": rows,
        "median": medians,
        "ratio_to_frr": ratios,
    }
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
