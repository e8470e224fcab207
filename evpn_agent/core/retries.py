"""Retry schedule for kernel writes the kernel refused.

A refused write (a device busy or briefly gone, a full neighbour table) is planned again
after a delay that doubles per failure, from ``FIRST`` up to ``LAST`` seconds, instead of
waiting for the periodic reconcile. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

FIRST = 1.0
LAST = 30.0


@dataclass(slots=True)
class Retries(Generic[K]):
    # key -> (failures so far, when to plan it again); None while a retry is in flight
    _pending: dict[K, tuple[int, float | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def failed(self, key: K, now: float) -> float:
        """Record a failure; returns the delay until the next attempt."""
        failures = self._pending.get(key, (0, None))[0] + 1
        delay: float = min(FIRST * 2.0 ** (failures - 1), LAST)
        self._pending[key] = (failures, now + delay)
        return delay

    def succeeded(self, key: K) -> None:
        self._pending.pop(key, None)

    def due(self, now: float) -> list[K]:
        """Keys to plan again now; they stay in flight until failed() or settled."""
        keys = [k for k, (_n, at) in self._pending.items() if at is not None and at <= now]
        for key in keys:
            self._pending[key] = (self._pending[key][0], None)
        return keys

    def next_due(self) -> float | None:
        return min((at for _n, at in self._pending.values() if at is not None), default=None)

    def in_flight(self) -> list[K]:
        return [k for k, (_n, at) in self._pending.items() if at is None]

    def forget(self, keys: list[K]) -> None:
        """In-flight keys that planned no write: nothing is left to retry."""
        for key in keys:
            self._pending.pop(key, None)
