"""The BGP sessions as the agent follows them: up or down, whether each peer's table is
complete, and so when stale kernel entries may be swept."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

QUIET_PERIOD = 1.0  # no route changes for this long before a sweep, after a route refresh


@dataclass
class PeerState:
    up: bool = False
    eor: bool = False
    since: float | None = None  # monotonic time of the last state change seen
    last_error: str = ""
    downs: int = 0


@dataclass
class Peers:
    started: float
    sweep_delay: float
    sessions: dict[str, PeerState] = field(default_factory=dict)
    sweep_ok: bool = False  # the table was complete once: stale entries may go
    last_route_change: float = 0.0

    def __post_init__(self) -> None:
        self.last_route_change = self.started

    def get(self, peer: str) -> PeerState | None:
        return self.sessions.get(peer)

    def seen(self, peer: str) -> PeerState:
        """A peer that sent something. One we never saw come up has a session that
        predates this process (ExaBGP respawned us), so it is up."""
        state = self.sessions.get(peer)
        if state is None:
            state = self.sessions[peer] = PeerState(up=True)
        return state

    def came_up(self, peer: str, now: float) -> None:
        log.info("BGP session with %s is up", peer)
        old = self.sessions.get(peer, PeerState())
        self.sessions[peer] = PeerState(
            up=True, since=now, last_error=old.last_error, downs=old.downs
        )
        self.last_route_change = now

    def went_down(self, peer: str, reason: str, now: float) -> bool:
        """False if it was down already (ExaBGP repeats "down" on every failed reconnect)."""
        old = self.sessions.get(peer, PeerState())
        if peer in self.sessions and not old.up:
            return False
        log.warning("BGP session with %s is down: %s", peer, reason or "no reason")
        self.sessions[peer] = PeerState(up=False, since=now, last_error=reason, downs=old.downs + 1)
        return True

    def others_complete(self, peer: str) -> bool:
        """Another reflector speaks for the fabric only once its table is complete."""
        return any(p.up and p.eor for name, p in self.sessions.items() if name != peer)

    def sweep_due(self) -> float | None:
        """When the sweep may start, if every peer that is up has a complete table."""
        if self.sweep_ok:
            return None
        up = [p for p in self.sessions.values() if p.up]
        if not up or not all(p.eor for p in up):
            return None
        return max(self.started + self.sweep_delay, self.last_route_change + QUIET_PERIOD)
