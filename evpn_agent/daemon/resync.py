"""When to dump the kernel again: after a dump that was incomplete, and periodically.

After an incomplete dump, while events were lost since the last complete one (or none was
taken yet), dump again soon: 1 s, doubling to 16 s while the kernel keeps changing under
the dumps. With no events lost, the events already tell what an incomplete dump missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

FIRST, LAST = 1.0, 16.0  # seconds


@dataclass
class Resync:
    redump_at: float | None = None
    delay: float = FIRST

    def dumped(self, complete: bool, events_lost: bool, now: float) -> None:
        if complete:
            self.redump_at, self.delay = None, FIRST
            return
        if not events_lost:
            self.redump_at = None
            return
        log.info("kernel dump was incomplete (tables changed meanwhile): again in %gs", self.delay)
        self.redump_at = now + self.delay
        self.delay = min(self.delay * 2, LAST)

    def due(self, now: float) -> bool:
        return self.redump_at is not None and now >= self.redump_at


def paced_interval(interval: float, budget_percent: float, cost: float) -> float:
    """Seconds to the next periodic reconcile after one that took ``cost`` CPU seconds:
    ``interval``, or longer so that reconciles take at most ``budget_percent`` of a core
    (0: no limit). At 137,000 remote entries one costs ~0.7 s: every ~12 min at 0.1%."""
    if budget_percent <= 0:
        return interval
    return max(interval, cost * 100 / budget_percent)
