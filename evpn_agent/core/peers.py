"""The BGP sessions as the agent follows them: up or down, whether each peer's table is
complete and why, and so when stale kernel entries may be swept.

A peer's table is complete when its marker arrives (End-of-RIB after the session's initial
table, End-of-Route-Refresh after our route refresh) or, when no marker will come, after
``QUIET_PERIOD`` seconds without an update from it. Whether one comes depends on what the
peer negotiated, which its OPEN tells: GoBGP 3.10 sends End-of-RIB only with graceful
restart, and only enhanced route refresh (RFC 7313) brackets a refreshed table. A marker
that should come but does not is waited for at most ``MARKER_WAIT`` seconds without
updates, so no table waits for ever on a peer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Without a marker: this long without an update ends a table. A reflector sends its table
# in one go (FRR batches updates for ~50 ms, GoBGP at once), so seconds of silence mean the
# end; short enough that a sweep after a respawn takes seconds, not minutes.
QUIET_PERIOD = 3.0
# A marker that was promised (graceful restart, or a BoRR) but is late: give up on it.
MARKER_WAIT = 30.0
# No route changes at all for this long before the sweep starts.
SETTLE = 1.0

END_OF_RIB = "end-of-rib"
END_OF_REFRESH = "end-of-route-refresh"
QUIET = "quiet-period"

# Where a session's up time comes from.
SEEN_UP = "session"  # this process saw the session come up
REPORTED = "speaker"  # the speaker's account, asked for at start
FIRST_SEEN = "first-seen"  # the first message this process saw from it: up at least so long


@dataclass
class PeerState:
    up: bool = False
    since: float | None = None  # monotonic time it came up (or went down); see since_source
    since_source: str = ""
    last_error: str = ""
    downs: int = 0
    # What the peer's OPEN said; None: this process did not see it (respawned core).
    graceful_restart: bool | None = None
    enhanced_refresh: bool | None = None
    # The table we wait for started coming then (session up, or our route refresh); None:
    # none is coming (a session that predates us, before our refresh).
    table_since: float | None = None
    refreshed: bool = False  # that table answers our route refresh
    last_update: float = 0.0
    complete_by: str | None = None  # END_OF_RIB, END_OF_REFRESH or QUIET
    complete_at: float | None = None
    eor: bool = False  # a marker arrived in this session
    heard_any: bool = False  # an update or a marker arrived in this session

    @property
    def complete(self) -> bool:
        return self.complete_by is not None

    def expects_marker(self) -> bool:
        """Whether a marker will close the table we wait for (unknown counts as yes)."""
        if self.refreshed and self.enhanced_refresh:
            return True
        # GoBGP answers a refresh with End-of-RIB when graceful restart was negotiated.
        return self.graceful_restart is not False

    def complete_due(self) -> float | None:
        """When the table counts as complete without its marker, if it is awaited."""
        if not self.up or self.complete or self.table_since is None:
            return None
        quiet_from = max(self.table_since, self.last_update)
        return quiet_from + (MARKER_WAIT if self.expects_marker() else QUIET_PERIOD)

    def completion(self) -> str:
        """How the table became complete, or what it waits for: for people."""
        if self.complete_by is not None:
            return self.complete_by
        if not self.up:
            return "waiting: session down"
        if self.table_since is None:
            return "waiting: route refresh"
        if self.expects_marker():
            marker = END_OF_REFRESH if self.refreshed and self.enhanced_refresh else END_OF_RIB
            return f"waiting: {marker} (or {MARKER_WAIT:g}s without updates)"
        return f"waiting: {QUIET} ({QUIET_PERIOD:g}s without updates)"


@dataclass
class Peers:
    started: float
    sweep_delay: float
    sessions: dict[str, PeerState] = field(default_factory=dict)
    sweep_ok: bool = False  # the table was complete once: stale entries may go
    last_route_change: float = 0.0
    refresh_asked: float | None = None  # when this process asked for a route refresh
    # Sessions to reset (taken with the work), and the peers reset so since their last
    # session completed by its marker: one reset per incident, never a loop.
    resets: list[str] = field(default_factory=list)
    reset_spent: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.last_route_change = self.started

    def get(self, peer: str) -> PeerState | None:
        return self.sessions.get(peer)

    def seen(self, peer: str, now: float) -> PeerState:
        """A peer that sent something. One we never saw come up has a session that
        predates this process (ExaBGP respawned us), so it is up."""
        state = self.sessions.get(peer)
        if state is None:
            state = self.sessions[peer] = PeerState(
                up=True,
                since=now,
                since_source=FIRST_SEEN,
                table_since=self.refresh_asked,
                refreshed=self.refresh_asked is not None,
            )
        return state

    def saw_start(self, peer: str) -> bool:
        """This process saw the peer's current session start (so it gets its table)."""
        state = self.sessions.get(peer)
        return state is not None and state.since_source == SEEN_UP

    def opened(self, peer: str, graceful_restart: bool, enhanced_refresh: bool) -> None:
        """The OPEN of a session about to come up."""
        state = self.sessions.setdefault(peer, PeerState())
        state.graceful_restart = graceful_restart
        state.enhanced_refresh = enhanced_refresh

    def came_up(self, peer: str, now: float) -> None:
        old = self.sessions.get(peer, PeerState())
        log.info(
            "BGP session with %s is up (graceful restart %s)",
            peer,
            {True: "negotiated", False: "not negotiated", None: "unknown"}[old.graceful_restart],
        )
        self.sessions[peer] = PeerState(
            up=True,
            since=now,
            since_source=SEEN_UP,
            last_error=old.last_error,
            downs=old.downs,
            graceful_restart=old.graceful_restart,
            enhanced_refresh=old.enhanced_refresh,
            table_since=now,
            last_update=now,
        )
        self.last_route_change = now

    def went_down(self, peer: str, reason: str, now: float) -> bool:
        """False if it was down already (ExaBGP repeats "down" on every failed reconnect)."""
        old = self.sessions.get(peer, PeerState())
        if peer in self.sessions and not old.up:
            return False
        log.warning("BGP session with %s is down: %s", peer, reason or "no reason")
        self.sessions[peer] = PeerState(
            up=False, since=now, since_source=SEEN_UP, last_error=reason, downs=old.downs + 1
        )
        return True

    def reported(
        self, peer: str, up: bool, uptime: float, graceful_restart: bool | None, now: float
    ) -> None:
        """The speaker's account of a session this process may not have seen start."""
        state = self.sessions.get(peer)
        if state is not None and state.since_source == SEEN_UP:
            return  # we saw it ourselves, later than the speaker's report was made
        if not up:
            if state is None:
                self.sessions[peer] = PeerState(since=now - uptime, since_source=REPORTED)
            return
        if state is None:
            state = self.seen(peer, now)
        state.since, state.since_source = now - uptime, REPORTED
        if state.graceful_restart is None:
            state.graceful_restart = graceful_restart

    def refresh_sent(self, now: float) -> None:
        """We asked every peer for its table again: what is not complete waits for it."""
        self.refresh_asked = now
        for state in self.sessions.values():
            if state.up and not state.complete:
                state.table_since, state.refreshed = now, True

    def heard(self, peer: str, now: float) -> None:
        """An update from the peer: its table is still coming."""
        state = self.seen(peer, now)
        state.last_update, state.heard_any = now, True

    def refresh_begun(self, peer: str, now: float) -> None:
        """BoRR: the peer has enhanced route refresh; EoRR will close its table."""
        state = self.seen(peer, now)
        state.enhanced_refresh = True
        state.last_update, state.heard_any = now, True

    def marker(self, peer: str, refresh: bool, now: float) -> bool:
        """End-of-RIB or End-of-Route-Refresh; True if it completed the peer's table."""
        state = self.seen(peer, now)
        state.eor = state.heard_any = True
        if not refresh:
            self.reset_spent.discard(peer)  # a session that works: the next incident may reset
        if state.complete:
            return False
        state.complete_by = END_OF_REFRESH if refresh else END_OF_RIB
        state.complete_at = now
        log.info("routing table from %s complete (%s)", peer, state.complete_by)
        return True

    def tick(self, now: float) -> list[str]:
        """Peers whose table became complete by the quiet period just now."""
        done = []
        for peer, state in self.sessions.items():
            due = state.complete_due()
            if due is None or now < due:
                continue
            if self._silent(peer, state):
                # Seen with FRR 8.4 reflectors: a dynamic peer that reconnects while its
                # old session lingers is kept up and sent nothing (FRRouting/frr#20120);
                # a new session repairs it. Once: a reflector in its update-delay is
                # silent too, and must not be reset in a loop.
                log.warning(
                    "nothing from %s %gs after the session came up, though it promised an "
                    "End-of-RIB: resetting the session once (evpn-agent clear session)",
                    peer,
                    MARKER_WAIT,
                )
                self.resets.append(peer)
                self.reset_spent.add(peer)
            elif state.expects_marker():
                log.warning(
                    "no End-of-RIB from %s after %gs without updates: its table is taken "
                    "as complete. If it holds routes, it is not sending them: reset the "
                    "session (evpn-agent clear session %s)",
                    peer,
                    MARKER_WAIT,
                    peer,
                )
            else:
                log.info(
                    "routing table from %s complete (%gs without updates; it sends no "
                    "End-of-RIB without graceful restart)",
                    peer,
                    QUIET_PERIOD,
                )
            state.complete_by, state.complete_at = QUIET, now
            done.append(peer)
        return done

    def _silent(self, peer: str, state: PeerState) -> bool:
        """A session we saw start, with graceful restart (so an End-of-RIB is promised),
        that sent nothing at all: not one update, not the marker."""
        return (
            state.graceful_restart is True
            and state.since_source == SEEN_UP
            and not state.refreshed
            and not state.heard_any
            and peer not in self.reset_spent
        )

    def take_resets(self) -> list[str]:
        resets, self.resets = self.resets, []
        return resets

    def next_due(self) -> float | None:
        return min(
            (d for d in (s.complete_due() for s in self.sessions.values()) if d is not None),
            default=None,
        )

    def others_complete(self, peer: str) -> bool:
        """Another reflector speaks for the fabric only once its table is complete."""
        return any(p.up and p.complete for name, p in self.sessions.items() if name != peer)

    def sweep_due(self) -> float | None:
        """When the sweep may start, if every peer that is up has a complete table."""
        if self.sweep_ok:
            return None
        up = [p for p in self.sessions.values() if p.up]
        if not up or not all(p.complete for p in up):
            return None
        return max(self.started + self.sweep_delay, self.last_route_change + SETTLE)
