"""Time series of each VTEP's processes for the scale lab: RSS, CPU seconds and wake-ups
(context switches of every thread), sampled from /proc once a second on a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.procstats import command_of, proc_stats


def wakeups(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid``: each one is
    the thread going to sleep or being preempted, i.e. about one wake-up."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def group_stats(pids: Sequence[int]) -> dict[str, Any]:
    """Summed RSS, peak RSS (VmHWM), CPU seconds and wake-ups of a VTEP's processes."""
    stats = [s for s in (proc_stats(pid) for pid in pids) if s]
    return {
        "rss_mib": round(sum(s["rss_mib"] for s in stats), 1),
        "hwm_mib": round(sum(s["hwm_mib"] for s in stats), 1),
        "cpu_s": round(sum(s["cpu_s"] for s in stats), 2),
        "wakeups": sum(wakeups(pid) for pid in pids),
        "processes": {str(s["pid"]): s for s in stats},
    }


def per_process(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each process of a VTEP between two ``group_stats`` readings: which one it is, its
    RSS at both ends and the CPU it used (one started meanwhile counts from ``after``)."""
    out = {}
    for pid, now in after["processes"].items():
        was = before["processes"].get(pid)
        out[pid] = {
            "command": command_of(int(pid)),
            "rss_mib_before": was["rss_mib"] if was else None,
            "rss_mib_after": now["rss_mib"],
            "cpu_s": round(now["cpu_s"] - (was or now)["cpu_s"], 2),
        }
    return out


class GroupSampler:
    """Samples, every ``interval``, each named VTEP's processes (``pids_of`` is asked each
    time, so a restarted VTEP is followed)."""

    def __init__(self, pids_of: dict[str, Callable[[], list[int]]], interval: float = 1.0) -> None:
        self.pids_of = pids_of
        self.interval = interval
        self.series: dict[str, list[tuple[float, float, float]]] = {n: [] for n in pids_of}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for name, pids_of in self.pids_of.items():
                try:
                    pids = pids_of()
                except Exception:  # a VTEP being restarted has no PIDs
                    pids = []
                stats = [s for s in (proc_stats(pid) for pid in pids) if s]
                if stats:
                    rss = sum(s["rss_mib"] for s in stats)
                    cpu = sum(s["cpu_s"] for s in stats)
                    self.series[name].append((now, round(rss, 1), round(cpu, 2)))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
