"""Time in the state: the next deadline, and what is due at it."""

from __future__ import annotations

import logging

from evpn_agent.core import observe, receive
from evpn_agent.core.state import State
from evpn_agent.model import (
    AdvertKey,
)
from evpn_agent.model.keys import VniIp, VniMac, VniVtep

log = logging.getLogger(__name__)

# Route changes must have stopped this long before the path table is built anew: a copy
# during churn would be outgrown again at once.
COMPACT_QUIET = 5.0


def next_deadline(s: State) -> float | None:
    """When ``tick`` has something to do, if nothing else happens before."""
    times = [
        s.retries.next_due(),
        s.dad.next_deadline(),
        s.dad.next_prune(),
        s.peers.sweep_due(),
        s.peers.next_due(),
        None if s.held_since is None else s.held_since + s.cfg.route_hold_time,
        _compact_at(s),
    ]
    return min((t for t in times if t is not None), default=None)


def _compact_at(s: State) -> float | None:
    return s.peers.last_route_change + COMPACT_QUIET if s.rib.compaction_due() else None


def tick(s: State, now: float) -> bool:
    """Retry refused writes, end freezes, expire held routes, enable the sweep, compact
    the path table after churn; True if that freed a large table."""
    s.now = now
    for retry in s.retries.due(now):
        s.counters["kernel-retries" if retry.kind != "advert" else "bgp-retries"] += 1
        key = retry.key
        if isinstance(key, AdvertKey):
            s.dirty_adverts.add(key)
        elif retry.kind == "fdb":
            s.dirty.fdb.add(VniMac(*key))
        elif retry.kind == "flood":
            s.dirty.flood.add(VniVtep(*key))
        else:
            s.dirty.neigh.add(VniIp(*key))
    prune_at = s.dad.next_prune()
    if prune_at is not None and now >= prune_at:
        s.dad.prune(now)
    for key in s.dad.expire(now):
        log.info("MAC %s in VNI %d: freeze over, followed again", key.mac, key.vni)
        s.dirty.fdb.add(key)
        s.dirty_adverts.add(AdvertKey(key.vni, key.mac, None))
    if s.held_since is not None and now - s.held_since >= s.cfg.route_hold_time:
        receive.drop_held(s, f"no route reflector for {s.cfg.route_hold_time:g}s")
    for peer in s.peers.tick(now):
        receive.table_complete(s, peer)
    due = s.peers.sweep_due()
    if due is not None and now >= due:
        log.info("routing table complete: removing stale kernel entries")
        s.peers.sweep_ok = True
        observe.mark_everything(s)
    compact_at = _compact_at(s)
    if compact_at is not None and now >= compact_at:
        s.rib.compact()
        s.counters["path-table-compactions"] += 1
        return True
    return False
