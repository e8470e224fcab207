"""What goes into a benchmark's JSON result besides its figures: the code measured, and
summaries of timings."""

from __future__ import annotations

import random
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> dict[str, Any]:
    """The commit measured, and whether evpn_agent/ differs from it (read-only git)."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO_ROOT), *argv], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "evpn_agent_modified": bool(git("status", "--porcelain", "--", "evpn_agent")),
    }


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    """median/p90/min/max/mean in ms of values in seconds."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        # nearest-rank percentile
        index = max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))
        return round(ordered[index] * 1000, 1)

    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": pct(0.90),
        "min_ms": round(ordered[0] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def ratio_range(
    agent: Sequence[float], frr: Sequence[float], *, level: float = 0.9, draws: int = 4000
) -> tuple[float, float] | None:
    """The ``level`` bootstrap interval of median(agent) / median(frr): each side's trials
    resampled with replacement, ``draws`` times (seeded: the same runs give the same
    interval). None with fewer than three trials a side or a zero median.

    A single ratio of medians moves by 10-20% from run to run on a shared 2-core machine;
    the interval says whether a run tells the sides apart: above 1.0 all of it, the agent
    is slower; across 1.0, the run cannot say."""
    if len(agent) < 3 or len(frr) < 3:
        return None
    rng = random.Random(0x5EED)
    ratios: list[float] = []
    for _ in range(draws):
        bottom = statistics.median(rng.choices(frr, k=len(frr)))
        if bottom <= 0:
            return None
        ratios.append(statistics.median(rng.choices(agent, k=len(agent))) / bottom)
    ratios.sort()
    tail = (1 - level) / 2
    low = ratios[int(tail * (draws - 1))]
    high = ratios[int((1 - tail) * (draws - 1))]
    return round(low, 2), round(high, 2)
