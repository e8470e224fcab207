"""Received EVPN routes, per peer, and the best path per MAC, IP and VNI.

All received routes are kept, imported into a local VNI or not, so a VNI created later
imports what the reflectors already sent without a route refresh. Each change returns the
keys whose best answer may have changed ("dirty"), so the planner only revisits those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from sys import getsizeof
from types import MappingProxyType
from typing import TypeVar

from evpn_agent.core.sizes import TableSize, indexed, size_of, total
from evpn_agent.model import (
    ImetRoute,
    MacKey,
    MacRoute,
    PathId,
    Route,
    RouteKey,
    RouteTarget,
    build,
    ip_order,
)
from evpn_agent.model.keys import VniIp, VniMac, VniVtep


@dataclass
class Dirty:
    """Keys of desired kernel state that a RIB change may have altered."""

    fdb: set[VniMac] = field(default_factory=set)
    neigh: set[VniIp] = field(default_factory=set)
    flood: set[VniVtep] = field(default_factory=set)
    # VNIs whose every key is dirty, listed when planned, a VNI at a time. A dump marks
    # every key of every VNI: ~130,000 new key objects at 1,000 VNIs, alive until planned.
    # Routes decoded meanwhile landed among them and kept Python's arenas from being freed
    # after: the first reconcile during MAC churn left the core 13 MiB larger for good.
    vnis: set[int] = field(default_factory=set)

    def update(self, other: Dirty) -> None:
        self.fdb |= other.fdb
        self.neigh |= other.neigh
        self.flood |= other.flood
        self.vnis |= other.vnis

    def __bool__(self) -> bool:
        return bool(self.fdb or self.neigh or self.flood or self.vnis)

    def size(self) -> TableSize:
        return total(*(size_of(keys) for keys in (self.fdb, self.neigh, self.flood, self.vnis)))


def better(a: MacRoute, b: MacRoute) -> bool:
    """RFC 7432 s15: sticky beats non-sticky, then higher sequence, then lower VTEP IP;
    then a fixed order of the rest, so that the choice never follows arrival order."""
    if a.sticky != b.sticky:
        return a.sticky
    if a.seq != b.seq:
        return a.seq > b.seq
    if a.vtep != b.vtep:
        return ip_order(a.vtep) < ip_order(b.vtep)
    # one VTEP's route through two reflectors: alike, but a route can differ in its RD,
    # label or RTs (two reflectors with other policies), and each gives another entry
    return a != b and _tie(a) < _tie(b)


def _tie(route: MacRoute) -> tuple[str, int, str, int, str]:
    key = route.key
    return key.rd, key.etag, key.ip or "", route.vni, repr(route.rts)


def best_of(paths: Iterable[MacRoute]) -> MacRoute | None:
    best: MacRoute | None = None
    for path in paths:
        if best is None or better(path, best):
            best = path
    return best


Paths = dict[PathId, MacRoute]
# What a lookup of a VNI without routes reads (asked per route: no new dict each time).
_NO_PATHS: Mapping[str, Paths] = MappingProxyType({})


RouteTargets = tuple[RouteTarget, ...]
# Fewer new paths than this never make compacting the path table worth a copy.
COMPACT_MIN = 16_384
# The size of a MAC's (or IP's) paths while they fit CPython's smallest table (up to 5).
# A move adds the new VTEP's paths before the old ones leave; once deleted slots fill
# that table CPython moves it to one of twice the size that never shrinks back: after 5
# minutes of moves every MAC held one, and the core ended 16 MiB larger (2 MiB with this).
# A table left that large by a removal is built anew (one small copy, on withdraws only).
_SMALL_PATHS = getsizeof(dict.fromkeys(range(5)))
_NO_PATHS_LEFT: Mapping[PathId, MacRoute] = MappingProxyType({})
_V = TypeVar("_V")


class _RtSet:
    """The paths carrying one RT set: where they are imported, and how many there are."""

    __slots__ = ("count", "vni")

    def __init__(self, vni: int | None) -> None:
        self.vni = vni
        self.count = 0


class Rib:
    """The paths, and where each is imported.

    Import is a function of a route's RTs alone (``import_rts``), so it is kept once per
    RT set, not per path: a VNI added or removed imports each RT set again and moves only
    the paths of the sets whose VNI changed (found through that VNI's own indexes), not
    all 100,000, and no table keyed by path holds the answer."""

    def __init__(self, import_rts: Callable[[RouteTargets], int | None]) -> None:
        self._import_rts = import_rts
        self.paths: dict[PathId, Route] = {}
        self._rt_sets: dict[RouteTargets, _RtSet] = {}
        # The RT set met last (a reflector's UPDATE carries many routes of one VNI, and the
        # wire decoder shares one tuple per RT set): found by identity, without hashing.
        self._last_rts: RouteTargets | None = None
        self._last_set: _RtSet | None = None
        self._unimported: dict[RouteTargets, set[PathId]] = {}
        # Nested per VNI so per-VNI counts and VNI removal never scan the whole table.
        self._by_mac: dict[int, dict[str, Paths]] = {}
        self._by_ip: dict[int, dict[str, Paths]] = {}
        # vni -> VTEP -> its type 3 paths: a tuple, not a set (mostly one a reflector:
        # 56 bytes against a set's 216, at 64,000 VTEP-VNIs 3.4 MiB against 13)
        self._flood: dict[int, dict[str, tuple[PathId, ...]]] = {}
        self.mac_total = 0  # remote (vni, mac) keys over all VNIs, for the MAC limit
        self.inserted = 0  # paths added since the path table was last built (see compact)
        # Paths per peer: `show peers` is polled, and counting 272,000 paths took the
        # engine's loop ~50 ms a time.
        self.per_peer: dict[str, int] = {}
        self._peer_names: dict[str, str] = {}  # see held_peer

    # -- changes -----------------------------------------------------------------------

    def announce(self, peer: str, route: Route, dirty: Dirty) -> bool:
        """Store a path; True if it was imported into a local VNI."""
        return self.announce_into(peer, route, self.import_of(route.rts), dirty)

    def held_peer(self, peer: str) -> str:
        """The one string the RIB keeps for ``peer``'s name. Each line from the speaker
        brings its own, and every path kept from a line kept that line's: after a soak of
        MAC moves (a line or two per UPDATE) ~73,000 copies of two names, 4 MiB at 64,000
        MACs, and more or less from run to run as lines happened to be batched."""
        return self._peer_names.setdefault(peer, peer)

    def import_of(self, rts: RouteTargets) -> int | None:
        """The local VNI routes with these RTs are imported into: the RT set's, once paths
        carry it (the one cache of the answer), else asked of the importer."""
        rt_set = self._find(rts)
        return rt_set.vni if rt_set is not None else self._import_rts(rts)

    def announce_into(self, peer: str, route: Route, vni: int | None, dirty: Dirty) -> bool:
        """:meth:`announce` with the route's import (``vni``) already known."""
        pid = build(PathId, (peer, route.key))
        old = self.paths.get(pid)
        if old is not None:
            if old == route:  # the same route again (a refresh, a table resent): no change
                rt_set = self._find(route.rts)
                assert rt_set is not None  # counted when the path was indexed
                return rt_set.vni is not None
            self._unindex(pid, old, dirty)
        else:
            self.inserted += 1
            self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        twin = None
        if vni is not None:
            kept, twin = self._with_held_objects(vni, route)
            if kept is not route:
                route = kept
                pid = build(PathId, (peer, kept.key))
        self.paths[pid] = route
        return self._index(pid, route, vni, dirty, twin=twin)

    def knows_mac(self, vni: int, mac: str) -> bool:
        return mac in self._by_mac.get(vni, _NO_PATHS)

    def count_macs(self, vni: int) -> int:
        return len(self._by_mac.get(vni, _NO_PATHS))

    def peer_paths(self, peer: str) -> list[PathId]:
        return [pid for pid in self.paths if pid.peer == peer]

    def withdraw(self, peer: str, key: RouteKey, dirty: Dirty) -> bool:
        return self.withdraw_many(peer, (key,), dirty) > 0

    def withdraw_many(self, peer: str, keys: Iterable[RouteKey], dirty: Dirty) -> int:
        """Drop ``peer``'s paths for ``keys``; returns how many it held."""
        paths, unindex = self.paths, self._unindex
        gone = 0
        for key in keys:
            pid = build(PathId, (peer, key))
            route = paths.pop(pid, None)  # one lookup: a table's withdraws miss the cache
            if route is not None:
                unindex(pid, route, dirty)
                gone += 1
        if gone:
            self.per_peer[peer] -= gone
        return gone

    def drop_peer(self, peer: str, dirty: Dirty) -> int:
        gone = self.peer_paths(peer)
        for pid in gone:
            self._unindex(pid, self.paths.pop(pid), dirty)
        self.per_peer.pop(peer, None)
        return len(gone)

    def reimport(self, import_rts: Callable[[RouteTargets], int | None], dirty: Dirty) -> None:
        """The local VNIs or their import RTs changed: import each RT set again and move
        the paths of those whose VNI changed."""
        self._import_rts = import_rts
        moved = [
            (rts, rt_set, vni)
            for rts, rt_set in self._rt_sets.items()
            if (vni := import_rts(rts)) != rt_set.vni
        ]
        for rts, rt_set, vni in moved:
            if rt_set.vni is None:
                pids = list(self._unimported.get(rts, ()))
            else:
                pids = self._imported_with(rt_set.vni, rts)
            # every path of the set leaves (the set goes with the last), then joins anew
            for pid in pids:
                self._unindex(pid, self.paths[pid], dirty)
            for pid in pids:
                self._index(pid, self.paths[pid], vni, dirty)

    def compaction_due(self) -> bool:
        """Whether churn may have doubled the path table since it was built.

        A dict whose keys come and go (a MAC move is a new path, its old one withdrawn
        later) fills with deleted slots; CPython then resizes it to three times the live
        entries, twice the table it needed before. It never shrinks back by itself: after
        a soak of MAC moves the table of 260,000 paths held 20 MiB instead of 10."""
        return self.inserted >= max(len(self.paths) // 4, COMPACT_MIN)

    def compact(self) -> None:
        """Build the path table anew, sized for what it holds (a copy, not an edit in
        place: the old table is freed whole, and a freed large block goes back to the
        system)."""
        self.paths = dict(self.paths)
        self.inserted = 0

    def sizes(self) -> dict[str, TableSize]:
        """The path table and its indexes (``show memory``)."""
        return {
            "paths": indexed(size_of(self.paths), size_of(self._rt_sets), size_of(self.per_peer)),
            "paths-by-mac": size_of(self._by_mac, 2),
            "paths-by-ip": size_of(self._by_ip, 2),
            "paths-by-vtep": size_of(self._flood, 2),
            "paths-not-imported": size_of(self._unimported, 1),
        }

    def vni_of(self, pid: PathId) -> int | None:
        """The local VNI the path is imported into (None: none, or no such path)."""
        route = self.paths.get(pid)
        rt_set = self._rt_sets.get(route.rts) if route is not None else None
        return rt_set.vni if rt_set is not None else None

    # -- answers -----------------------------------------------------------------------

    def best_mac(self, vni: int, mac: str) -> MacRoute | None:
        paths = self._by_mac.get(vni, _NO_PATHS).get(mac)
        return best_of(paths.values()) if paths else None

    def best_ip(self, vni: int, ip: str) -> MacRoute | None:
        paths = self._by_ip.get(vni, _NO_PATHS).get(ip)
        return best_of(paths.values()) if paths else None

    def has_flood(self, vni: int, vtep: str) -> bool:
        return vtep in self._flood.get(vni, {})

    def keys_of_vni(self, vni: int) -> Dirty:
        return Dirty(
            fdb={VniMac(vni, m) for m in self._by_mac.get(vni, {})},
            neigh={VniIp(vni, i) for i in self._by_ip.get(vni, {})},
            flood={VniVtep(vni, v) for v in self._flood.get(vni, {})},
        )

    def flood_vteps(self, vni: int) -> list[str]:
        return sorted(self._flood.get(vni, {}), key=ip_order)

    def remote_macs(self, vni: int) -> dict[str, Paths]:
        return self._by_mac.get(vni, {})

    def remote_ips(self, vni: int) -> dict[str, Paths]:
        return self._by_ip.get(vni, {})

    # -- indexes -----------------------------------------------------------------------

    def _find(self, rts: RouteTargets) -> _RtSet | None:
        if rts is self._last_rts:
            return self._last_set
        rt_set = self._rt_sets.get(rts)
        if rt_set is not None:
            self._last_rts, self._last_set = rts, rt_set
        return rt_set

    def _with_held_objects(self, vni: int, route: Route) -> tuple[Route, bool]:
        """``route`` as the RIB keeps it in ``vni``, and whether an equal path is held.

        The other reflector's copy of a route held already: that route, one set of objects
        for both paths (the decoder gives each copy its own; a 1,000-VNI table took 30 MiB
        less). A MAC held already on another route (a move: a new RD, VTEP or sequence):
        the route, rebuilt around the MAC's (and IP's) string held, which the indexes and
        the kernel mirror are keyed by. Else the new path kept the decoder's string and
        the indexes the first route's: after a soak of moves, two strings a MAC (5 MiB
        more at 64,000 MACs)."""
        if isinstance(route, MacRoute):
            key = route.key
            paths = self._by_mac.get(vni, _NO_PATHS).get(key.mac)
            if not paths:
                return route, False
            for held in paths.values():
                if held == route:
                    return held, True
            mac, ip = held.key.mac, key.ip
            if ip is not None:
                ip_paths = self._by_ip.get(vni, _NO_PATHS).get(ip)
                if ip_paths:
                    ip = next(iter(ip_paths.values())).key.ip
            if mac is key.mac and ip is key.ip:
                return route, False
            key = build(MacKey, (key.rd, key.etag, mac, ip))
            return build(MacRoute, (key, *route[1:])), False
        flood = self._flood.get(vni)
        pids = flood.get(route.vtep) if flood is not None else None
        if pids:
            for pid in pids:
                held_route = self.paths[pid]
                if held_route == route:
                    return held_route, True
        return route, False

    def _index(
        self, pid: PathId, route: Route, vni: int | None, dirty: Dirty, twin: bool | None = None
    ) -> bool:
        """Count the path in its RT set and put it in its VNI's indexes (or with the
        unimported ones); True if imported. ``twin``: whether an equal path is held
        already, when the caller looked (None: look here)."""
        rts = route.rts
        rt_set = self._find(rts)
        if rt_set is None:
            self._rt_sets[rts] = rt_set = _RtSet(vni)
            self._last_rts, self._last_set = rts, rt_set
        rt_set.count += 1
        vni = rt_set.vni  # the same: both are this importer's answer for these RTs
        if vni is None:
            unimported = self._unimported.get(rts)
            if unimported is None:
                self._unimported[rts] = unimported = set()
            unimported.add(pid)
            return False
        # A key is dirty only if its answer (best path, flood list) may change: the second
        # reflector's copy of a route held already changes none, and planning every key
        # of a table twice over (once per reflector) was a tenth of a restart's work.
        if isinstance(route, MacRoute):
            mac = route.key.mac
            per_vni = self._by_mac.setdefault(vni, {})
            paths = per_vni.get(mac)
            if paths is None:
                self.mac_total += 1
                per_vni[mac] = paths = {}
                twin = False
            elif twin is None:
                twin = route in paths.values()
            paths[pid] = route
            ip = route.key.ip
            if ip is not None:
                self._by_ip.setdefault(vni, {}).setdefault(ip, {})[pid] = route
            if not twin:
                dirty.fdb.add(build(VniMac, (vni, mac)))
                if ip is not None:
                    dirty.neigh.add(build(VniIp, (vni, ip)))
        else:
            vteps = self._flood.setdefault(vni, {})
            pids = vteps.get(route.vtep)
            if pids:  # the VTEP is in the flood list already
                if pid not in pids:
                    vteps[route.vtep] = (*pids, pid)
            else:
                vteps[route.vtep] = (pid,)
                dirty.flood.add(build(VniVtep, (vni, route.vtep)))
        return True

    def _unindex(self, pid: PathId, route: Route, dirty: Dirty) -> None:
        """Undo :meth:`_index` (the RT set goes with its last path)."""
        rts = route.rts
        rt_set = self._find(rts)
        assert rt_set is not None  # counted when the path was indexed
        rt_set.count -= 1
        if not rt_set.count:
            del self._rt_sets[rts]
            if rt_set is self._last_set:
                self._last_rts = self._last_set = None
        vni = rt_set.vni
        if vni is None:
            unimported = self._unimported.get(rts)
            if unimported is not None:
                unimported.discard(pid)
                if not unimported:
                    del self._unimported[rts]
            return
        if isinstance(route, MacRoute):
            key = route.key
            mac, ip = key.mac, key.ip
            left = _drop_path(self._by_mac, vni, mac, pid)
            if ip is not None:
                _drop_path(self._by_ip, vni, ip, pid)
            if left is None:
                self.mac_total -= 1
            elif route in left.values():
                return  # an equal copy stays: no answer changes
            dirty.fdb.add(build(VniMac, (vni, mac)))
            if ip is not None:
                dirty.neigh.add(build(VniIp, (vni, ip)))
        elif isinstance(route, ImetRoute) and _drop_vtep_path(self._flood, vni, route.vtep, pid):
            dirty.flood.add(build(VniVtep, (vni, route.vtep)))  # the VTEP left the flood list

    def _imported_with(self, vni: int, rts: RouteTargets) -> list[PathId]:
        """The paths imported into ``vni`` that carry ``rts``: a scan of that VNI's paths
        alone (a MAC+IP path is in the MAC index too)."""
        found = [
            pid
            for paths in self._by_mac.get(vni, {}).values()
            for pid, route in paths.items()
            if route.rts == rts
        ]
        for pids in self._flood.get(vni, {}).values():
            found.extend(pid for pid in pids if self.paths[pid].rts == rts)
        return found


def _drop_path(
    index: dict[int, dict[str, Paths]], vni: int, key: str, pid: PathId
) -> Mapping[PathId, MacRoute] | None:
    """Drop ``pid`` from ``key``'s paths; the paths left (None: ``key`` has none now)."""
    per_vni = index.get(vni)
    paths = per_vni.get(key) if per_vni is not None else None
    if per_vni is None or paths is None:
        return _NO_PATHS_LEFT  # not held (nothing was indexed under it): none went
    paths.pop(pid, None)
    if not paths:
        _forget(index, per_vni, vni, key)
        return None
    if getsizeof(paths) > _SMALL_PATHS:
        per_vni[key] = paths = dict(paths.items())  # see _SMALL_PATHS
    return paths


def _drop_vtep_path(
    index: dict[int, dict[str, tuple[PathId, ...]]], vni: int, vtep: str, pid: PathId
) -> bool:
    """Drop ``pid`` from ``vtep``'s type 3 paths; True when that left ``vtep`` with none."""
    per_vni = index.get(vni)
    pids = per_vni.get(vtep) if per_vni is not None else None
    if per_vni is None or pids is None:
        return False
    left = tuple(p for p in pids if p != pid)
    if left:
        per_vni[vtep] = left
        return False
    _forget(index, per_vni, vni, vtep)
    return True


def _forget(index: dict[int, dict[str, _V]], per_vni: dict[str, _V], vni: int, key: str) -> None:
    del per_vni[key]
    if not per_vni:
        del index[vni]
