"""Time series of bench_bulk.py: routes in the kernel over time, per side, written as JSON
and (when matplotlib is installed: ``pip install -e '.[bench]'``) as a PNG per scenario."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("bench.bulk")

COLOURS = {"agent": "tab:blue", "frr": "tab:orange"}
PHASE_TITLES = {"in": "burst in: routes in the kernel", "out": "burst out: routes still there"}


def write_series(out: Path, name: str, series: dict[str, list[dict[str, Any]]]) -> Path:
    """``series``: per side, one entry per trial and phase with ``points`` [[s, n], ...]."""
    path = out / f"{name}.series.json"
    # one line per run: readable, and small at 100 points per run
    lines = [
        f"  {json.dumps(side)}: [\n" + ",\n".join(f"    {json.dumps(r)}" for r in runs) + "\n  ]"
        for side, runs in series.items()
    ]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    return path


def plot(out: Path, name: str, title: str, series: dict[str, list[dict[str, Any]]]) -> Path | None:
    """A PNG with one panel per phase (in, out), a line per side and trial; None (and a
    log line) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: plots skipped (pip install -e '.[bench]')")
        return None
    present = {run["phase"] for runs in series.values() for run in runs}
    phases = [p for p in PHASE_TITLES if p in present]
    figure, axes = plt.subplots(1, len(phases), figsize=(6 * len(phases), 4), squeeze=False)
    for axis, phase in zip(axes[0], phases, strict=True):
        for side, runs in series.items():
            for number, run in enumerate(r for r in runs if r["phase"] == phase):
                # from the burst's start: the count before the first change
                points = [[0.0, run["start"]], *run["points"]]
                axis.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    color=COLOURS.get(side),
                    alpha=0.9 if number == 0 else 0.5,
                    label=side if number == 0 else None,
                    drawstyle="steps-post",
                )
        axis.set_title(PHASE_TITLES[phase])
        axis.set_xlabel("seconds since the burst started")
        axis.set_ylabel("routes in the kernel")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = out / f"{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
