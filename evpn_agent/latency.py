"""Latency summaries over a bounded window of recent samples (seconds in, ms out)."""

from __future__ import annotations

from collections import deque
from typing import Any

WINDOW = 4096


class Latency:
    def __init__(self, window: int = WINDOW) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self.count = 0

    def record(self, seconds: float) -> None:
        self.samples.append(max(seconds, 0.0))
        self.count += 1

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"count": self.count}

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)

        return {
            "count": self.count,
            "window": len(ordered),
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 3),
        }
