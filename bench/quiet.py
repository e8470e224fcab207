"""Waiting, with a deadline, for our processes or the whole machine to go quiet."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bench.procstats import CLK_TCK, cpu_seconds, system_busy_seconds

log = logging.getLogger("bench")


def wait_idle(pids: Sequence[int], timeout: float = 120.0, window: float = 0.5) -> float:
    """Poll until ``pids`` together use under 5% of a CPU over ``window``; returns the wait."""
    started = time.monotonic()
    deadline = started + timeout
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pids)
        if now - before <= 0.05 * window + 1.0 / CLK_TCK:
            return time.monotonic() - started
        before = now
    log.warning("processes %s still busy after %.0fs", list(pids), timeout)
    return time.monotonic() - started


def wait_machine_quiet(max_cores: float = 0.3, timeout: float = 60.0, window: float = 1.0) -> float:
    """Poll until the whole machine is under ``max_cores`` busy over ``window``.

    Other jobs on a shared machine disturb timings; returns the busy share seen last (the
    caller reports it; on timeout the run goes ahead and the figure tells).
    """
    deadline = time.monotonic() + timeout
    while True:
        before = system_busy_seconds()
        time.sleep(window)
        busy = (system_busy_seconds() - before) / window
        if busy <= max_cores or time.monotonic() >= deadline:
            if busy > max_cores:
                log.warning("machine still %.2f cores busy after %.0fs: going ahead", busy, timeout)
            return round(busy, 2)
