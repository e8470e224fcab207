"""What goes into a benchmark's JSON result besides its figures: the code measured, and
summaries of timings."""

from __future__ import annotations

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
