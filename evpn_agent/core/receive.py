"""Speaker events into the state: routes into the RIB (within limits, our own refused),
sessions and what they negotiated, table markers, routes held while no reflector is up,
refused announces."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from evpn_agent.core.state import RetryKey, State, advert_key
from evpn_agent.model import (
    AdvertRefused,
    BgpEvent,
    EndOfRib,
    LineRejected,
    MacRoute,
    PathId,
    PeerOpened,
    RefreshBegun,
    Route,
    RouteAnnounced,
    RouteRejected,
    RoutesAnnounced,
    RoutesWithdrawn,
    SessionDown,
    SessionReported,
    SessionUp,
)

log = logging.getLogger(__name__)


def on_bgp(s: State, events: Iterable[BgpEvent], now: float) -> None:
    s.now = now
    peers = s.peers
    heard = None  # the peer last noted as heard from: once per peer and batch, not per route
    withdrawn = 0
    for ev in events:
        if type(ev) is RoutesAnnounced or type(ev) is RouteAnnounced:
            if ev.peer != heard:
                peers.heard(ev.peer, now)
                heard = ev.peer
            routes = ev.routes if isinstance(ev, RoutesAnnounced) else (ev.route,)
            _announced(s, ev.peer, routes, now)
            continue
        if type(ev) is RoutesWithdrawn:
            if ev.peer != heard:
                peers.heard(ev.peer, now)
                heard = ev.peer
            if s.rib.withdraw_many(ev.peer, ev.keys, s.dirty):
                peers.last_route_change = now
            withdrawn += len(ev.keys)
            continue
        heard = None  # a session event may start the peer's state anew
        if isinstance(ev, RouteRejected):
            peers.heard(ev.peer, now)
            reject(s, ev.reason, ev.detail)
        elif isinstance(ev, LineRejected):
            reject(s, ev.reason, ev.detail)
        elif isinstance(ev, AdvertRefused):
            _refused(s, ev)
        elif isinstance(ev, SessionUp):
            peers.came_up(ev.peer, now)
        elif isinstance(ev, SessionDown):
            if peers.went_down(ev.peer, ev.reason, now):
                _peer_lost(s, ev.peer, now)
        elif isinstance(ev, EndOfRib):
            if peers.marker(ev.peer, ev.refresh, now):
                table_complete(s, ev.peer)
        elif isinstance(ev, PeerOpened):
            peers.opened(ev.peer, ev.graceful_restart, ev.enhanced_refresh)
        elif isinstance(ev, RefreshBegun):
            peers.refresh_begun(ev.peer, now)
        elif isinstance(ev, SessionReported):
            peers.reported(ev.peer, ev.up, ev.uptime, ev.graceful_restart, now)
    if withdrawn:
        s.counters["routes-withdrawn"] += withdrawn


def table_complete(s: State, peer: str) -> None:
    """A peer's table is complete (its marker, or the quiet period after it)."""
    if s.held:
        # A reflector's table is complete again: what it did not repeat of the routes
        # we held is gone.
        state = s.peers.get(peer)
        drop_held(s, f"table from {peer} complete ({state.completion() if state else '?'})")


def _refused(s: State, ev: AdvertRefused) -> None:
    # Loud once, then counted: a broken speaker must not look healthy, nor flood the log.
    level = logging.WARNING if not s.counters["bgp-refused"] else logging.DEBUG
    s.counters["bgp-refused"] += 1
    key = advert_key(ev.change.advert)
    if ev.change.withdraw:
        log.log(level, "the speaker refused to withdraw %s (see its log)", key)
        return  # the next announce of the key, or the sync after a respawn, settles it
    if s.adverts.forget(key, ev.change.advert):
        delay = s.retries.failed(RetryKey("advert", key), s.now)
        log.log(level, "the speaker refused to announce %s (see its log): again in %gs",
                key, delay)  # fmt: skip


def _peer_lost(s: State, peer: str, now: float) -> None:
    paths = s.rib.peer_paths(peer)
    if s.peers.others_complete(peer) or not s.cfg.route_hold_time or not paths:
        dropped = s.rib.drop_peer(peer, s.dirty)
        if dropped:
            log.info("dropped %d routes learned from %s", dropped, peer)
        return
    # No complete reflector left: keep forwarding on what we know for a while, as
    # graceful restart would; the routes go at the hold time or when a table returns.
    s.held.update(paths)
    s.held_since = s.held_since or now
    log.warning(
        "no route reflector left: keeping %d routes for %gs",
        len(paths),
        s.cfg.route_hold_time,
    )


def drop_held(s: State, why: str) -> None:
    gone = 0
    for pid in s.held:
        gone += s.rib.withdraw(pid.peer, pid.key, s.dirty)
    s.held.clear()
    s.held_since = None
    if gone:
        log.info("removed %d held routes (%s)", gone, why)


def _announced(s: State, peer: str, routes: tuple[Route, ...], now: float) -> None:
    """Routes into the RIB, in order: a run of them at once (an UPDATE's or a records
    line's; the lookups once, the counters once: a reflector packs ~1,000 routes of a VNI
    in an UPDATE, a cold start's table is ~256,000 routes in runs of ~200)."""
    rib, dirty, held, own = s.rib, s.dirty, s.held, s.vtep_ip
    peer = rib.held_peer(peer)
    import_of, announce_into = rib.import_of, rib.announce_into
    received = not_local = 0
    # The run adds at most a MAC a route: a VNI with room for the whole run needs no check
    # a route (they were a tenth of the RIB's time in a burst).
    roomy: set[int | None] = set()  # such VNIs of this run
    for route in routes:
        if route.vtep == own:
            reject(s, "own-vtep", f"route {route.key} names our own VTEP {route.vtep}")
            continue
        vni = import_of(route.rts)
        if type(route) is MacRoute and vni not in roomy:
            if _room_for(s, vni, len(routes)):
                roomy.add(vni)
            elif not _within_limits(s, route, vni):
                continue
        received += 1
        if held:
            held.discard(PathId(peer, route.key))  # repeated: no longer stale
        if not announce_into(peer, route, vni, dirty):
            not_local += 1
    if received:
        s.counters["routes-received"] += received
        s.peers.last_route_change = now
    if not_local:
        s.counters["rejected:vni-not-local"] += not_local


def _room_for(s: State, vni: int | None, macs: int) -> bool:
    """Whether ``macs`` new MACs in ``vni`` (None: imported nowhere) stay within the MAC
    limits, of the VNI and in all."""
    return vni is None or (
        s.rib.count_macs(vni) + macs <= s.cfg.mac_limit_per_vni
        and s.rib.mac_total + macs <= s.cfg.mac_limit
    )


def _within_limits(s: State, route: MacRoute, vni: int | None) -> bool:
    if vni is None or s.rib.knows_mac(vni, route.key.mac) or _room_for(s, vni, 1):
        return True  # not imported, a MAC we already hold (no new entry), or room for it
    if s.rib.count_macs(vni) >= s.cfg.mac_limit_per_vni:
        limit = f"VNI {vni} holds {s.cfg.mac_limit_per_vni} remote MACs (mac-limit-per-vni)"
    else:
        limit = f"{s.cfg.mac_limit} remote MACs in all (mac-limit)"
    if s.counters["rejected:mac-limit"] == 0 or log.isEnabledFor(logging.DEBUG):
        log.warning("refusing new MAC %s: %s", route.key.mac, limit)
    s.counters["rejected:mac-limit"] += 1
    return False


def reject(s: State, reason: str, detail: str) -> None:
    s.counters[f"rejected:{reason}"] += 1
    # Debug only: a hostile peer must not be able to flood the log.
    log.debug("ignored (%s): %s", reason, detail)
