"""A thread sampling our processes' CPU use and the machine's during a measurement."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.procstats import census, sched_stats, system_busy_seconds


class CpuSampler:
    """Samples named PIDs every ``interval`` on a thread (reads /proc only).

    Per PID: CPU seconds (all threads), run-queue delay (all threads, from schedstat: time
    runnable but waiting for a CPU) and the main thread's state and wait channel (what it
    blocks on: e.g. ``anon_pipe_write`` = a full pipe to its API process). Also the
    machine's total busy time, and a census of every process at start and stop, so that
    other jobs on a shared machine show up in the figures.
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._census_start = (time.time(), census())
        self._census_stop: tuple[float, dict[int, tuple[str, float]]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            sample: dict[str, Any] = {"@system": system_busy_seconds()}
            for name, pid in list(self.pids.items()):
                stats = sched_stats(pid)
                if stats is not None:
                    sample[name] = stats
            self.samples.append((now, sample))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(2)
            self._census_stop = (time.time(), census())

    def _at(self, t: float) -> dict[str, Any]:
        best: dict[str, Any] = {}
        for stamp, sample in self.samples:
            if stamp > t:
                break
            best = {**best, **sample}
        return best

    def between(self, start: float | None, end: float | None) -> dict[str, Any]:
        """Per PID in [start, end]: CPU seconds and share of one core, run-queue wait, and
        how the main thread's samples split over states/wait channels."""
        if start is None or end is None or end <= start:
            return {}
        before, after = self._at(start), self._at(end)
        span = end - start
        out: dict[str, Any] = {"window_s": round(span, 3)}
        ours = 0.0
        inside = [sample for stamp, sample in self.samples if start <= stamp <= end]
        for name in after:
            if name.startswith("@"):
                continue
            cpu0, delay0, _ = before.get(name, (0.0, 0.0, ""))
            cpu1, delay1, _ = after[name]
            ours += cpu1 - cpu0
            states: dict[str, int] = {}
            for sample in inside:
                if name in sample:
                    states[sample[name][2]] = states.get(sample[name][2], 0) + 1
            total = sum(states.values()) or 1
            out[name] = {
                "cpu_s": round(cpu1 - cpu0, 2),
                "core_share": round((cpu1 - cpu0) / span, 2),
                "runqueue_wait_s": round(delay1 - delay0, 2),
                "main_thread": {
                    k: round(v / total, 2)
                    for k, v in sorted(states.items(), key=lambda kv: -kv[1])
                    if v / total >= 0.02
                },
            }
        if "@system" in after and "@system" in before:
            system = after["@system"] - before["@system"]
            out["others_core_share"] = round(max(0.0, system - ours) / span, 2)
            out["machine_busy_cores"] = round(system / span, 2)
        return out

    def top_others(self, count: int = 5) -> list[list[Any]]:
        """The busiest processes we did not track, over the sampler's life (CPU seconds)."""
        if self._census_stop is None:
            return []
        first = self._census_start[1]
        tracked = set(self.pids.values())
        used: list[tuple[str, float]] = []
        for pid, (name, cpu) in self._census_stop[1].items():
            if pid in tracked:
                continue
            delta = cpu - first.get(pid, (name, 0.0))[1]
            if delta >= 0.05:
                used.append((f"{pid} {name}", round(delta, 2)))
        return [list(row) for row in sorted(used, key=lambda row: -row[1])[:count]]
