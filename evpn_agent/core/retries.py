"""Retry schedule for kernel writes the kernel refused.

A refused write (a device busy or briefly gone, a full neighbour table) is planned again
after a delay that doubles per failure, from ``FIRST`` up to ``LAST`` seconds, instead of
waiting for the periodic reconcile. Pure: the caller passes the time.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from evpn_agent.core.sizes import TableSize, indexed, size_of

K = TypeVar("K", bound=Hashable)

FIRST = 1.0
LAST = 30.0


@dataclass(slots=True)
class Retries(Generic[K]):
    # key -> (failures so far, when to plan it again); None while a retry is in flight
    _pending: dict[K, tuple[int, float | None]] = field(default_factory=dict)
    # (when, tie-break, key) per scheduled retry, earliest first: the daemon asks for the
    # next one in every round, which must not cost a scan of every refused write. Entries
    # of keys since settled or rescheduled stay until they reach the top.
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _flying: set[K] = field(default_factory=set)
    _pushed: int = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def size(self) -> TableSize:
        return indexed(size_of(self._pending), size_of(self._heap), size_of(self._flying))

    def failed(self, key: K, now: float) -> float:
        """Record a failure; returns the delay until the next attempt."""
        failures = self._pending.get(key, (0, None))[0] + 1
        delay: float = min(FIRST * 2.0 ** (failures - 1), LAST)
        self._pending[key] = (failures, now + delay)
        self._flying.discard(key)
        self._pushed += 1
        heapq.heappush(self._heap, (now + delay, self._pushed, key))
        if len(self._heap) > 2 * len(self._pending) + 64:
            self._compact()
        return delay

    def succeeded(self, key: K) -> None:
        self._pending.pop(key, None)
        self._flying.discard(key)

    def due(self, now: float) -> list[K]:
        """Keys to plan again now; they stay in flight until failed() or settled."""
        keys = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _order, key = heapq.heappop(heap)
            if self._scheduled(key, at):
                self._pending[key] = (self._pending[key][0], None)
                self._flying.add(key)
                keys.append(key)
        return keys

    def next_due(self) -> float | None:
        heap = self._heap
        while heap and not self._scheduled(heap[0][2], heap[0][0]):
            heapq.heappop(heap)  # settled or rescheduled since
        return heap[0][0] if heap else None

    def in_flight(self) -> list[K]:
        return list(self._flying)

    def forget(self, keys: list[K]) -> None:
        """In-flight keys that planned no write: nothing is left to retry."""
        for key in keys:
            self._pending.pop(key, None)
            self._flying.discard(key)

    def _scheduled(self, key: K, at: float) -> bool:
        pending = self._pending.get(key)
        return pending is not None and pending[1] == at

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._scheduled(e[2], e[0])]
        heapq.heapify(self._heap)
