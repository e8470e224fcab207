"""When a reflector's table is complete, and so when stale entries go: by its marker, by a
quiet period when it negotiated none, by a bounded wait when a promised marker is late.
The engine as pure logic, time passed in."""

from __future__ import annotations

from test_state import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_REACHABLE,
    REMOTE_MAC,
    RR,
    RR2,
    VX,
    AgentState,
    flush,
    imet,
    links,
    mac_route,
    make,
)

from evpn_agent.control import views
from evpn_agent.core.peers import MARKER_WAIT, QUIET_PERIOD
from evpn_agent.model import (
    DelFdb,
    DelFlood,
    EndOfRib,
    FdbEntry,
    KernelSnapshot,
    PeerOpened,
    RefreshBegun,
    RouteAnnounced,
    SessionDown,
    SessionReported,
    SessionUp,
)

STALE_MAC = "02:00:5e:00:00:99"
STALE = FdbEntry(VX, STALE_MAC, None, "192.0.2.99", None, NTF_SELF | NTF_EXT_LEARNED,
                 NUD_REACHABLE)  # fmt: skip
STALE_FLOOD = FdbEntry(VX, "00:00:00:00:00:00", None, "192.0.2.99", None, NTF_SELF,
                       NUD_NOARP | NUD_PERMANENT)  # fmt: skip
SWEPT = {DelFdb(VX, STALE_MAC, None), DelFlood(VX, "192.0.2.99")}
NO_GR = PeerOpened(RR, graceful_restart=False, enhanced_refresh=False)  # GoBGP's default
FRR = PeerOpened(RR, graceful_restart=True, enhanced_refresh=True)


def stale_state(**kwargs: object) -> AgentState:
    return make(fdb=(STALE, STALE_FLOOD), **kwargs)  # type: ignore[arg-type]


def row(state: AgentState, now: float, peer: str = RR) -> dict[str, object]:
    return next(r for r in views.peers(state, state.cfg, now) if r["peer"] == peer)


def run_until(state: AgentState, until: float) -> list[object]:
    """Tick at every deadline up to ``until``, as the daemon does; the ops planned."""
    ops: list[object] = []
    while (due := state.next_deadline()) is not None and due <= until:
        state.tick(due)
        ops += flush(state)
    state.tick(until)
    return ops + flush(state)


def test_without_graceful_restart_a_quiet_period_completes_the_table() -> None:
    state = stale_state()
    state.on_bgp([NO_GR, SessionUp(RR), RouteAnnounced(RR, mac_route())], 1)
    flush(state)
    assert (
        row(state, 1)["completeBy"] == f"waiting: quiet-period ({QUIET_PERIOD:g}s without updates)"
    )
    # every update starts the quiet period again
    last = 1 + QUIET_PERIOD - 0.5
    state.on_bgp([RouteAnnounced(RR, imet())], last)
    flush(state)
    assert run_until(state, last + QUIET_PERIOD - 0.1) == [] and not state.peers.sweep_ok
    assert set(run_until(state, last + QUIET_PERIOD + 0.1)) == SWEPT
    shown = row(state, 10)
    assert shown["tableComplete"] is True and shown["completeBy"] == "quiet-period"
    assert shown["endOfRib"] is False and shown["gracefulRestart"] is False


def test_with_graceful_restart_the_table_waits_for_end_of_rib() -> None:
    state = stale_state()
    state.on_bgp([FRR, SessionUp(RR), RouteAnnounced(RR, mac_route())], 1)
    assert not set(run_until(state, 1 + QUIET_PERIOD * 3)) & SWEPT
    assert (
        row(state, 10)["completeBy"] == f"waiting: end-of-rib (or {MARKER_WAIT:g}s without updates)"
    )
    state.on_bgp([EndOfRib(RR)], 11)
    assert set(run_until(state, 13)) == SWEPT
    assert row(state, 13)["completeBy"] == "end-of-rib"


def test_a_promised_end_of_rib_that_never_comes_is_waited_for_a_bounded_time() -> None:
    state = stale_state()
    # no OPEN seen (caps unknown): a marker is expected, as with graceful restart
    state.on_bgp([SessionUp(RR), RouteAnnounced(RR, mac_route())], 1)
    assert not set(run_until(state, 1 + MARKER_WAIT - 0.1)) & SWEPT
    assert set(run_until(state, 1 + MARKER_WAIT + 2)) == SWEPT
    assert row(state, 40)["completeBy"] == "quiet-period"


def test_respawned_core_learns_the_sessions_from_the_speaker_and_refreshes() -> None:
    """A respawned core: the sessions predate it; GoBGP without graceful restart answers
    the route refresh without markers: a withdraw missed while no core ran is settled."""
    state = stale_state()
    state.on_bgp([SessionReported(RR, up=True, uptime=600, graceful_restart=False)], 0.1)
    shown = row(state, 0.1)
    assert shown["state"] == "Established" and shown["uptimeSeconds"] == 600
    assert shown["uptimeSource"] == "speaker"
    assert shown["completeBy"] == "waiting: route refresh"
    assert run_until(state, 0.9) == []  # no table is coming before we ask
    state.refresh_asked(1)
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1.2)
    flush(state)
    assert set(run_until(state, 1.2 + QUIET_PERIOD + 2)) == SWEPT
    assert row(state, 8)["completeBy"] == "quiet-period"


def test_enhanced_route_refresh_waits_for_its_end_marker() -> None:
    state = stale_state()
    state.on_bgp([SessionReported(RR, up=True, uptime=5, graceful_restart=None)], 0.1)
    state.refresh_asked(1)
    state.on_bgp([RefreshBegun(RR), RouteAnnounced(RR, mac_route())], 1.1)
    assert not set(run_until(state, 1.1 + QUIET_PERIOD * 3)) & SWEPT  # EoRR was promised
    assert row(state, 11)["enhancedRefresh"] is True
    state.on_bgp([EndOfRib(RR, refresh=True)], 12)
    assert set(run_until(state, 14)) == SWEPT
    assert row(state, 14)["completeBy"] == "end-of-route-refresh"


def test_a_peer_first_heard_from_shows_its_uptime_as_a_lower_bound() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, imet())], 2)  # no state line, no report (yet)
    shown = row(state, 7)
    assert shown["state"] == "Established"
    assert (shown["uptimeSeconds"], shown["uptimeSource"]) == (5, "first-seen")
    # the speaker's report, when it comes, says how long it really is up
    state.on_bgp([SessionReported(RR, up=True, uptime=100, graceful_restart=True)], 8)
    assert (row(state, 8)["uptimeSeconds"], row(state, 8)["uptimeSource"]) == (100, "speaker")
    assert row(state, 8)["gracefulRestart"] is True


def test_routes_held_without_reflectors_are_settled_by_the_quiet_period() -> None:
    state = make(extra="route-hold-time: 120\n")
    other = mac_route(mac="02:00:5e:00:00:33")
    state.on_bgp([NO_GR, SessionUp(RR), *(RouteAnnounced(RR, r) for r in (mac_route(), other))], 1)
    flush(state)
    run_until(state, 10)
    state.on_bgp([SessionDown(RR, "peer reset")], 11)
    assert flush(state) == []  # held: no reflector left
    state.on_bgp([NO_GR, SessionUp(RR), RouteAnnounced(RR, mac_route())], 12)
    assert flush(state) == []
    # no End-of-RIB will come: the quiet period settles what the reflector did not repeat
    assert run_until(state, 12 + QUIET_PERIOD - 0.1) == []
    assert run_until(state, 12 + QUIET_PERIOD + 0.1) == [DelFdb(VX, "02:00:5e:00:00:33", None)]


def test_drift_repair_never_waits_for_end_of_rib_again() -> None:
    """Once the table was complete, an entry no route backs goes at the next reconcile,
    even while a new session's table is still coming (End-of-RIB promised, not there)."""
    state = make()
    state.on_bgp([FRR, SessionUp(RR), RouteAnnounced(RR, mac_route()), EndOfRib(RR)], 1)
    run_until(state, 10)
    assert state.peers.sweep_ok
    state.on_bgp([SessionDown(RR, "hold timer expired")], 11)
    state.on_bgp([FRR, SessionUp(RR), RouteAnnounced(RR, mac_route())], 12)
    flush(state)
    ours = FdbEntry(VX, REMOTE_MAC, None, "192.0.2.22", None, NTF_SELF | NTF_EXT_LEARNED,
                    NUD_REACHABLE)  # fmt: skip
    state.load_snapshot(KernelSnapshot(links(), (ours, STALE, STALE_FLOOD), ()))  # type: ignore[arg-type]
    assert not row(state, 13)["tableComplete"]
    assert set(flush(state)) == SWEPT


def test_a_second_reflector_is_needed_complete_before_the_first_one_is_forgotten() -> None:
    state = make(extra="route-hold-time: 120\n")
    opened = [PeerOpened(rr, graceful_restart=False, enhanced_refresh=False) for rr in (RR, RR2)]
    state.on_bgp([*opened, SessionUp(RR), SessionUp(RR2), RouteAnnounced(RR, mac_route())], 1)
    flush(state)
    # RR2 is up but its table is not complete yet: losing RR holds its routes
    state.on_bgp([SessionDown(RR, "stopped")], 2)
    assert flush(state) == [] and state.held
    # RR2's quiet period ends: it speaks for the fabric, RR's held routes go
    assert run_until(state, 1 + QUIET_PERIOD + 0.1) == [DelFdb(VX, REMOTE_MAC, None)]
    assert not state.held


def test_a_report_that_comes_after_the_refresh_still_starts_the_wait_for_the_table() -> None:
    state = stale_state()
    state.refresh_asked(1)  # the speaker's account of the sessions is late
    state.on_bgp([SessionReported(RR, up=True, uptime=60, graceful_restart=False)], 1.5)
    assert row(state, 1.5)["completeBy"].startswith("waiting: quiet-period")  # type: ignore[union-attr]
    assert set(run_until(state, 1.5 + QUIET_PERIOD + 2)) == SWEPT


def _resets(state: AgentState, now: float) -> list[str]:
    state.tick(now)
    return state.take_work().resets


def test_a_reflector_that_sends_nothing_is_reset_once_per_incident() -> None:
    """FRR 8.4 can keep a reconnected dynamic peer up and send it nothing (frr#20120)."""
    state = stale_state()
    state.on_bgp([FRR, SessionUp(RR)], 1)
    assert _resets(state, 1 + MARKER_WAIT - 0.1) == []
    assert _resets(state, 1 + MARKER_WAIT + 0.1) == [RR]
    assert state.counters["sessions-reset"] == 1
    assert row(state, 40)["completeBy"] == "quiet-period"  # taken as complete all the same
    # The next session is silent too (say, a reflector in its update-delay): no loop.
    state.on_bgp([SessionDown(RR, "reset"), FRR, SessionUp(RR)], 40)
    assert _resets(state, 40 + MARKER_WAIT + 1) == []
    # A session that completes by its End-of-RIB: the next incident may reset again.
    state.on_bgp([SessionDown(RR, "reset"), FRR, SessionUp(RR), EndOfRib(RR)], 80)
    state.on_bgp([SessionDown(RR, "reset"), FRR, SessionUp(RR)], 90)
    assert _resets(state, 90 + MARKER_WAIT + 1) == [RR]
    assert state.counters["sessions-reset"] == 2


def test_a_reflector_that_sent_something_or_promised_nothing_is_not_reset() -> None:
    state = stale_state()
    state.on_bgp([FRR, SessionUp(RR), RouteAnnounced(RR, mac_route())], 1)  # no End-of-RIB
    assert _resets(state, 1 + MARKER_WAIT * 3) == []
    state = stale_state()
    state.on_bgp([NO_GR, SessionUp(RR)], 1)  # no marker promised: a quiet table is empty
    assert _resets(state, 1 + MARKER_WAIT * 3) == []
    state = stale_state()
    state.on_bgp([SessionUp(RR)], 1)  # its OPEN not seen (a respawned core): not sure
    assert _resets(state, 1 + MARKER_WAIT * 3) == []
