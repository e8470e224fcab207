"""The path attributes of one BGP UPDATE that an EVPN VTEP uses, read straight off the wire.

Read once per UPDATE and shared by all its NLRIs. Only what the agent uses is decoded
(ORIGIN, LOCAL_PREF, ORIGINATOR_ID, CLUSTER_LIST, EXTENDED_COMMUNITIES, PMSI_TUNNEL and the
MP_REACH/MP_UNREACH values); every other attribute is stepped over by its length.

Errors, after RFC 7606:
- the attribute list cannot be framed (a length past its end), or an MP attribute is
  repeated or carries the wrong flags: :class:`Malformed`, the whole UPDATE is unusable;
- an attribute we read is malformed (bad length or value, wrong optional/transitive
  flags): ``malformed`` says which, and the UPDATE's announcements are treated as withdraws.
Repeats of other attributes are ignored after the first (RFC 7606 section 3 g).
"""

from __future__ import annotations

import functools
import ipaddress
import operator
from collections.abc import Callable
from typing import Any

from evpn_agent.model import RouteTarget
from evpn_agent.speaker.wire_format import (
    CATEGORY,
    CLUSTER_LIST,
    EXPECTED_CATEGORY,
    EXTENDED_COMMUNITIES,
    EXTENDED_LENGTH,
    LOCAL_PREF,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    ORIGIN,
    ORIGINATOR_ID,
    PMSI_HEADER_SIZE,
    PMSI_TUNNEL,
    STICKY,
    SUBTYPE_MAC_MOBILITY,
    SUBTYPE_ROUTE_TARGET,
    TYPE_EVPN,
    Remembered,
    address_text,
)


class Malformed(Exception):
    """An UPDATE that cannot be read at all; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PathAttributes:
    """What one UPDATE's attributes say, for all of its NLRIs."""

    __slots__ = (
        "malformed",
        "only_unreach",
        "originator",
        "pmsi",
        "reach",
        "rts",
        "seq",
        "sticky",
        "unreach",
    )

    def __init__(self) -> None:
        self.reach: bytes | None = None  # MP_REACH_NLRI value
        self.unreach: bytes | None = None  # MP_UNREACH_NLRI value
        self.only_unreach = True  # nothing but MP_UNREACH (what an End-of-RIB holds)
        self.malformed: str | None = None  # why the announcements are treated as withdraws
        self.originator: str | None = None
        self.rts: tuple[RouteTarget, ...] = ()
        self.seq = 0
        self.sticky = False
        self.pmsi: bytes | None = None  # PMSI tunnel value, at least its 5-byte header


def read_attributes(data: bytes, start: int, end: int) -> PathAttributes:
    """The attributes in ``data[start:end]``; raises :class:`Malformed`."""
    # Once per UPDATE, and a 1,000-VNI table comes as ~256,000 UPDATEs of one route each
    # (a restart's or a cold start's largest cost). A reflector gives same-shaped UPDATEs
    # the same attribute layout: the same headers at the same places. So the layout of the
    # last clean UPDATE of each size is kept, and a new UPDATE whose header bytes all match
    # it (compared in one C call) has its values read straight from their places. Anything
    # else, and any value that needs a closer look, takes the attribute-by-attribute path.
    layout = _layouts.get((start, end))
    if layout is None or layout.headers(data) != layout.expected:
        return _read_each(data, start, end)
    path = PathAttributes()
    path.only_unreach = layout.only_unreach
    for code, first, stop in layout.reads:
        if code == MP_REACH_NLRI:
            path.reach = data[first:stop]
        elif code == EXTENDED_COMMUNITIES:
            _communities(path, data[first:stop])
        elif code == ORIGINATOR_ID:
            path.originator = address_text(data[first:stop])
        elif code == ORIGIN:
            if data[first] > 2:
                return _read_each(data, start, end)
        elif code == MP_UNREACH_NLRI:
            path.unreach = data[first:stop]
        else:  # PMSI_TUNNEL
            path.pmsi = data[first:stop]
    return path


class _Layout:
    """Where a clean UPDATE's attributes were: every header byte's index and value, and
    the (code, start, stop) of each value read."""

    __slots__ = ("expected", "headers", "only_unreach", "reads")

    def __init__(
        self,
        headers: Callable[[Any], Any],
        expected: Any,
        reads: tuple[tuple[int, int, int], ...],
        only_unreach: bool,
    ) -> None:
        self.headers = headers
        self.expected = expected
        self.reads = reads
        self.only_unreach = only_unreach


# (start, end) -> the last clean layout of that size
_layouts: dict[tuple[int, int], _Layout] = {}
_LAYOUTS_KEPT = 256
# The attributes whose values the fast path reads (the others' checks are their lengths
# and flags alone, which the header bytes fix).
_VALUE_READ = frozenset(
    (MP_REACH_NLRI, MP_UNREACH_NLRI, EXTENDED_COMMUNITIES, ORIGINATOR_ID, ORIGIN, PMSI_TUNNEL)
)


def _remember(
    data: bytes,
    start: int,
    end: int,
    headers: list[int],
    reads: tuple[tuple[int, int, int], ...],
    only_unreach: bool,
) -> None:
    if len(headers) < 2:  # itemgetter of one index gives an int, not a tuple: not worth it
        return
    if len(_layouts) >= _LAYOUTS_KEPT:
        _layouts.clear()
    getter = operator.itemgetter(*headers)
    _layouts[(start, end)] = _Layout(getter, getter(data), reads, only_unreach)


def _read_each(data: bytes, start: int, end: int) -> PathAttributes:
    """Every attribute in turn, checked; the layout is remembered if nothing was amiss.
    Values are sliced only for the attributes read."""
    path = PathAttributes()
    seen: set[int] = set()
    only_unreach = True
    clean = True  # no repeat, no malformed attribute: the layout may be reused
    headers: list[int] = []
    reads: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        if pos + 3 > end:
            raise Malformed("malformed-update", f"attribute header cut at byte {pos - start}")
        header = pos
        flags = data[pos]
        code = data[pos + 1]
        if flags & EXTENDED_LENGTH:
            if pos + 4 > end:
                raise Malformed("malformed-update", f"attribute {code} header cut")
            length = data[pos + 2] << 8 | data[pos + 3]
            pos += 4
        else:
            length = data[pos + 2]
            pos += 3
        headers.extend(range(header, pos))
        stop = pos + length
        if stop > end:
            raise Malformed(
                "malformed-update",
                f"attribute {code} claims {length} bytes, {end - pos} left",
            )
        if code != MP_UNREACH_NLRI:
            only_unreach = False
        if code in seen:
            if code in _MP:
                raise Malformed("malformed-update", f"attribute {code} repeated")
            clean = False
            pos = stop
            continue
        seen.add(code)
        expected = EXPECTED_CATEGORY.get(code)
        if expected is None:  # not one we use: AS_PATH, NEXT_HOP, MED, communities...
            pos = stop
            continue
        if flags & CATEGORY != expected:
            if code in _MP:
                raise Malformed("malformed-update", f"attribute {code} with flags 0x{flags:02x}")
            _malformed(path, f"attribute {code} with flags 0x{flags:02x}")
            pos = stop
            continue
        if code in _VALUE_READ:
            reads.append((code, pos, stop))
        if code == MP_REACH_NLRI:
            path.reach = data[pos:stop]
        elif code == EXTENDED_COMMUNITIES:
            if length == 0 or length % 8:
                _malformed(path, f"extended communities of {length} bytes")
            else:
                _communities(path, data[pos:stop])
        elif code == ORIGIN:
            if length != 1 or data[pos] > 2:
                _malformed(path, f"ORIGIN {data[pos:stop].hex()}")
        elif code == LOCAL_PREF:
            if length != 4:
                _malformed(path, f"LOCAL_PREF of {length} bytes")
        elif code == ORIGINATOR_ID:
            if length != 4:
                _malformed(path, f"ORIGINATOR_ID of {length} bytes")
            else:
                path.originator = address_text(data[pos:stop])
        elif code == CLUSTER_LIST:
            if length == 0 or length % 4:
                _malformed(path, f"CLUSTER_LIST of {length} bytes")
        elif code == MP_UNREACH_NLRI:
            path.unreach = data[pos:stop]
        elif code == PMSI_TUNNEL:
            if length < PMSI_HEADER_SIZE:
                _malformed(path, f"PMSI tunnel of {length} bytes")
            else:
                path.pmsi = data[pos:stop]
        pos = stop
    path.only_unreach = only_unreach
    if clean and path.malformed is None:
        _remember(data, start, end, headers, tuple(reads), only_unreach)
    return path


_MP = (MP_REACH_NLRI, MP_UNREACH_NLRI)


def _malformed(path: PathAttributes, detail: str) -> None:
    if path.malformed is None:
        path.malformed = detail


def _communities(path: PathAttributes, value: bytes) -> None:
    rts = _rts_alone.get(value)
    if rts is None:
        rts, mobility = _read_communities(value)
        if mobility is not None:
            path.sticky, path.seq = mobility
        else:
            _rts_alone.keep(value, rts)
    if rts:
        path.rts = rts


# The sets without MAC mobility, read once: the same few (a VNI's RT and the
# encapsulation) arrive on every UPDATE of a table. A set with a mobility sequence is read
# each time: a churn sends each move's own, and an LRU of 4,096 that kept them missed 1 in
# 18 and grew the core by ~1 MiB during a soak.
_rts_alone: Remembered[bytes, tuple[RouteTarget, ...]] = Remembered(
    lambda value: _read_communities(value)[0], 4096
)


def _read_communities(value: bytes) -> tuple[tuple[RouteTarget, ...], tuple[bool, int] | None]:
    # What the agent got from ExaBGP's JSON, exactly: the type's high nibble (IANA
    # authority, transitivity) is not looked at; RTs come sorted by their bytes; of several
    # MAC mobility communities the greatest (sticky, then sequence) wins, and "sticky" is a
    # flags octet of exactly 1 (RFC 7432 defines that bit only).
    targets = []
    mobility: tuple[bool, int] | None = None
    for i in range(0, len(value), 8):
        community = value[i : i + 8]
        kind = community[0] & 0x0F
        subtype = community[1]
        if subtype == SUBTYPE_ROUTE_TARGET and kind <= 2:
            targets.append(community)
        elif kind == TYPE_EVPN and subtype == SUBTYPE_MAC_MOBILITY:
            found = (community[2] == STICKY, int.from_bytes(community[4:8]))
            if mobility is None or found > mobility:
                mobility = found
    if not targets:
        return (), mobility
    targets.sort()
    return route_targets(b"".join(targets)), mobility


# One tuple per set of RTs, shared by every route that carries it: a 1,000-VNI table is
# ~60,000 UPDATEs but ~1,000 RT sets, and the core sorts routes into VNIs by their tuple
# (re-importing every path when a VNI comes or goes asks once per tuple, not per path).
@functools.lru_cache(maxsize=16384)
def route_targets(sorted_targets: bytes) -> tuple[RouteTarget, ...]:
    return tuple(_route_target(sorted_targets[i : i + 8]) for i in range(0, len(sorted_targets), 8))


@functools.lru_cache(maxsize=4096)  # the same few RTs arrive on every UPDATE
def _route_target(community: bytes) -> RouteTarget:
    kind = community[0] & 0x0F
    if kind == 1:
        return RouteTarget(ipaddress.IPv4Address(community[2:6]), int.from_bytes(community[6:8]))
    if kind == 0:
        return RouteTarget(int.from_bytes(community[2:4]), int.from_bytes(community[4:8]))
    return RouteTarget(int.from_bytes(community[2:6]), int.from_bytes(community[6:8]))
