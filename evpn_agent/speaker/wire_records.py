"""Decoded UPDATEs as compact records, from the launcher (in ExaBGP's process) to the core.

The launcher decodes the EVPN UPDATEs it takes off the wire (:mod:`wire_decode`, the same
decoder the core used) and hands the core their events as one line: ``wire-events PEER
UNIX-TIME PAYLOAD``. Decoding then runs on ExaBGP's process, beside the core, instead of in
it: a burst's UPDATEs waited ~0.4-0.8 s in the core's queue while ExaBGP idled.

The payload is ``marshal`` (C, no code run on load) of plain tuples, base64 without
newlines. Rebuilding the events costs the core ~2.9 us a route against ~8.7 us to decode
the UPDATE; JSON or pickle cost more to load (pickle 4.4 us). Route-target lists travel
once per line as their extended communities and are rebuilt by the decoder's own cache
(``wire_attributes.route_targets``): a route gets the very tuple the core's decoder would
have given it. The core checks every record's shape: a malformed line is one
``LineRejected``, as a malformed ``wire-update`` line is.

A line's run of announces comes back as one ``RoutesAnnounced`` (and a run of withdraws as
one ``RoutesWithdrawn``), in its place among the other events: at one route per UPDATE (a
1,000-VNI table) an event object and a dispatch per route were a fifth of the rebuild and
of the RIB's intake (``bench/bench_twins.py``: the core's CPU 1.59-1.64 s -> 1.42-1.49 s).
"""

from __future__ import annotations

import marshal
import sys
from base64 import b64decode, b64encode
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from evpn_agent.model import (
    BgpEvent,
    EndOfRib,
    ImetKey,
    ImetRoute,
    MacKey,
    MacRoute,
    Route,
    RouteAnnounced,
    RouteKey,
    RouteRejected,
    RoutesAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    build,
)
from evpn_agent.speaker.wire_attributes import route_targets
from evpn_agent.speaker.wire_encode import route_target_community
from evpn_agent.speaker.wire_format import shared_vni

VERSION = 1
# record kinds (the first field of each record)
MAC, IMET, MAC_GONE, IMET_GONE, REJECTED, END_OF_RIB = range(6)

Rts = tuple[RouteTarget, ...]


# RT tuple -> its extended communities, by identity: the decoder shares one tuple per RT
# set (wire_attributes.route_targets), and packing each again, per line, was 5% of the
# launcher's work on a 1,000-VNI table (one route per UPDATE). The tuple is kept beside
# its bytes, so its id is not reused while cached.
_communities_of: dict[int, tuple[Rts, bytes]] = {}
_COMMUNITIES_CACHED = 16384


def _rt_communities(rts: Rts) -> bytes:
    hit = _communities_of.get(id(rts))
    if hit is not None:
        return hit[1]
    if len(_communities_of) >= _COMMUNITIES_CACHED:
        _communities_of.clear()
    raw = b"".join(map(route_target_community, rts))
    _communities_of[id(rts)] = (rts, raw)
    return raw


class BadRecords(ValueError):
    """Not a payload of :func:`encode_events` (a ValueError: a malformed line)."""


def encode_events(events: Iterable[BgpEvent]) -> str:
    """The payload for ``events`` (those :func:`wire_decode.decode_update` yields)."""
    rts_at: dict[int, int] = {}  # id of an RT tuple -> its index (the decoder shares them)
    rts_list: list[bytes] = []
    rows: list[tuple[Any, ...]] = []
    for event in events:
        if type(event) is RouteAnnounced:
            routes: tuple[Route, ...] = (event.route,)
        elif type(event) is RoutesAnnounced:
            routes = event.routes
        else:
            rows.extend(_other_rows(event))
            continue
        for route in routes:
            at = rts_at.get(id(route.rts))
            if at is None:
                at = rts_at[id(route.rts)] = len(rts_list)
                rts_list.append(_rt_communities(route.rts))
            key = route.key
            if type(route) is MacRoute:
                assert type(key) is MacKey
                rows.append((MAC, key.rd, key.etag, key.mac, key.ip, route.vni, route.vtep,
                             at, route.seq, route.sticky))  # fmt: skip
            else:
                assert type(key) is ImetKey
                rows.append((IMET, key.rd, key.etag, key.origin, route.vni, route.vtep, at))
    return b64encode(marshal.dumps((VERSION, rts_list, rows))).decode("ascii")


def _other_rows(event: BgpEvent) -> list[tuple[Any, ...]]:
    """The records of an event that announces nothing."""
    if type(event) is RoutesWithdrawn:
        rows: list[tuple[Any, ...]] = []
        for key in event.keys:
            if type(key) is MacKey:
                rows.append((MAC_GONE, key.rd, key.etag, key.mac, key.ip))
            else:
                assert type(key) is ImetKey
                rows.append((IMET_GONE, key.rd, key.etag, key.origin))
        return rows
    if type(event) is RouteRejected:
        return [(REJECTED, event.reason, event.detail)]
    if type(event) is EndOfRib:
        return [(END_OF_RIB, event.refresh)]
    raise TypeError(f"no record for {event!r}")


def decode_events(payload: bytes, peer: str) -> list[BgpEvent]:
    """The events of a payload from :func:`encode_events`, as from ``peer``; raises
    :class:`BadRecords` for anything that is not such a payload."""
    try:
        version, rts_list, rows = marshal.loads(b64decode(payload, validate=True))
        if version != VERSION:
            raise BadRecords(f"records version {version!r}")
        rts = [
            route_targets(raw) if type(raw) is bytes and raw and not len(raw) % 8 else _bad(raw)
            for raw in rts_list
        ]
        events: list[BgpEvent] = []
        for run, group in groupby(rows, _run_of):  # a run of announces or withdraws: one event
            if run is RoutesAnnounced:
                events.append(RoutesAnnounced(peer, tuple([_route(row, rts) for row in group])))
            elif run is RoutesWithdrawn:
                events.append(RoutesWithdrawn(peer, tuple([_gone(row) for row in group])))
            else:
                events.extend(_event(row, peer) for row in group)
        return events
    except BadRecords:
        raise
    except (ValueError, TypeError, EOFError, IndexError) as exc:  # binascii.Error too
        raise BadRecords(f"{type(exc).__name__}: {exc}") from None


def _shared(value: object) -> str:
    # RDs and VTEP addresses recur in every route of a VNI or VTEP: one string each, as
    # the decoder's caches give, not one per line (~20 MiB at 272,000 paths)
    return sys.intern(_str(value))


def _vni(value: object) -> int:
    return shared_vni(_int(value))  # one object per VNI, as the decoder's


# record kind -> the event a run of such records makes
_RUNS: dict[int, type[RoutesAnnounced | RoutesWithdrawn]] = {
    MAC: RoutesAnnounced,
    IMET: RoutesAnnounced,
    MAC_GONE: RoutesWithdrawn,
    IMET_GONE: RoutesWithdrawn,
}


def _run_of(row: tuple[Any, ...]) -> type[RoutesAnnounced | RoutesWithdrawn] | None:
    return _RUNS.get(row[0])


def _gone(row: tuple[Any, ...]) -> RouteKey:
    if row[0] == MAC_GONE:
        _, rd, etag, mac, ip = row
        return build(MacKey, (_str(rd), _int(etag), _str(mac), _opt_str(ip)))
    _, rd, etag, origin = row
    return build(ImetKey, (_str(rd), _int(etag), _str(origin)))


def _route(row: tuple[Any, ...], rts: list[Rts]) -> MacRoute | ImetRoute:
    if row[0] == MAC:
        _, rd, etag, mac, ip, vni, vtep, at, seq, sticky = row
        key = build(MacKey, (_shared(rd), _int(etag), _str(mac), _opt_str(ip)))
        return build(MacRoute, (key, _vni(vni), _shared(vtep), rts[at], _int(seq), _bool(sticky)))
    _, rd, etag, origin, vni, vtep, at = row
    imet = build(ImetKey, (_shared(rd), _int(etag), _shared(origin)))
    return build(ImetRoute, (imet, _vni(vni), _shared(vtep), rts[at]))


def _event(row: tuple[Any, ...], peer: str) -> BgpEvent:
    kind = row[0]
    if kind == REJECTED:
        _, reason, detail = row
        return RouteRejected(peer, _str(reason), _str(detail))
    if kind == END_OF_RIB:
        _, refresh = row
        return EndOfRib(peer, _bool(refresh))
    raise BadRecords(f"record kind {kind!r}")


def _bad(raw: object) -> Rts:
    raise BadRecords(f"route targets {raw!r}")


def _str(value: object) -> str:
    if type(value) is not str:
        raise BadRecords(f"{value!r} is not text")
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _int(value: object) -> int:
    if type(value) is not int:
        raise BadRecords(f"{value!r} is not a number")
    return value


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise BadRecords(f"{value!r} is not true or false")
    return value
