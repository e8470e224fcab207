"""Duplicate address detection: a MAC that moves too often is claimed twice.

As FRR's ``dup-addr-detection``: ``max_moves`` moves within ``window`` seconds mark the
MAC duplicate (logged, counted, shown). With ``freeze`` the MAC is frozen: we stop
advertising it and keep the last FDB entry, for ``freeze`` seconds (or until cleared when
``freeze`` is infinite).

Counted as zebra counts them: per MAC, when its window began (its first move since) and
the moves since; a move after the window starts a new one. Two numbers a MAC, dropped once
its window is over, so the table holds the MACs that moved in the last window. (A time
stamp per move, in a deque per MAC ever moved, held 53 MiB for 64,000 MACs moved three
times, and never let go; this holds 7.4 MiB.)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from evpn_agent.model import DadSettings
from evpn_agent.model.keys import VniMac as Key

log = logging.getLogger(__name__)


@dataclass
class Duplicate:
    since: float
    frozen_until: float | None


@dataclass
class DuplicateDetector:
    settings: DadSettings = field(default_factory=DadSettings)
    # key -> (when its window began, moves since)
    moves: dict[Key, tuple[float, int]] = field(default_factory=dict)
    duplicates: dict[Key, Duplicate] = field(default_factory=dict)
    detected: int = 0
    _prune_at: float = -math.inf

    def moved(self, key: Key, now: float, where: str) -> bool:
        """Record a move of ``key``; True if this move made it a duplicate."""
        window = self.settings.window
        if now >= self._prune_at:
            self.prune(now)
        elif not self.moves:
            self._prune_at = now + window  # the first record: pruned a window from now
        began, count = self.moves.get(key, (now, 0))
        if now - began > window:
            began, count = now, 0
        count += 1
        self.moves[key] = (began, count)
        if key in self.duplicates or count < self.settings.max_moves:
            return False
        freeze = self.settings.freeze
        self.duplicates[key] = Duplicate(now, None if freeze is None else now + freeze)
        self.detected += 1
        action = "frozen" if freeze is not None else "still followed"
        log.warning(
            "duplicate MAC %s in VNI %d: %d moves in %gs (last to %s); %s",
            key[1], key[0], count, window, where, action,
        )  # fmt: skip
        return True

    def prune(self, now: float) -> None:
        """Forget the MACs whose window is over (at most once a window, on a move or on
        the timer: when moves stop, the table must not keep the last ones for good)."""
        window = self.settings.window
        self.moves = {k: v for k, v in self.moves.items() if now - v[0] <= window}
        self._prune_at = now + window

    def next_prune(self) -> float | None:
        """When :meth:`prune` is due, while any MAC is recorded."""
        return self._prune_at if self.moves else None

    def frozen(self, key: Key, now: float) -> bool:
        if not self.duplicates:
            return False  # the usual case, asked once per planned MAC
        dup = self.duplicates.get(key)
        return dup is not None and dup.frozen_until is not None and now < dup.frozen_until

    def count(self, key: Key) -> int:
        """Moves in the MAC's current window (its last one, if that ended meanwhile)."""
        return self.moves.get(key, (0.0, 0))[1]

    def expire(self, now: float) -> list[Key]:
        """Keys whose freeze ran out (they are no longer duplicate)."""
        done = [
            k
            for k, d in self.duplicates.items()
            if d.frozen_until is not None
            and not math.isinf(d.frozen_until)
            and now >= d.frozen_until
        ]
        for key in done:
            self.clear(key)
        return done

    def next_deadline(self) -> float | None:
        """When the next finite freeze runs out."""
        ends = [
            d.frozen_until
            for d in self.duplicates.values()
            if d.frozen_until is not None and not math.isinf(d.frozen_until)
        ]
        return min(ends, default=None)

    def clear(self, key: Key) -> bool:
        self.moves.pop(key, None)
        return self.duplicates.pop(key, None) is not None
