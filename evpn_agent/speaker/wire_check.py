"""The receive fast path's gate: may an UPDATE skip ExaBGP's decoder and reach the agent
as bytes?

Runs inside ExaBGP (the launcher's ``read_message`` patch, :mod:`compat`), once per UPDATE,
before anything is decoded. It answers True only for an UPDATE that ExaBGP 5.0.15 would
decode without a NOTIFICATION, without treat-as-withdraw and without discarding an
attribute: then the agent's own decoder (:mod:`wire_decode`) gives what ExaBGP's JSON would
have given, and skipping ExaBGP's decoder changes nothing but the time spent. Anything else
(a framing error, an attribute we do not expect or with odd flags or length, another
family, another EVPN route type, IPv4 routes in the body) answers False, and ExaBGP's own
path handles the message exactly as before: its NOTIFICATION, or its parsed JSON.

What passes is the shape an EVPN route reflector sends: no IPv4 withdrawn routes or NLRI,
each attribute at most once with its RFC flags (extended length allowed, partial not) and
one of the lengths ExaBGP accepts, an empty AS_PATH (iBGP), MP_REACH/MP_UNREACH for l2vpn
evpn only, with a 4- or 16-byte next hop and type 2 and 3 NLRIs whose lengths ExaBGP
accepts. Cheap: a walk over the attribute headers and NLRI headers, no objects; and an
UPDATE shaped like one that passed before is let through on one comparison (see
``_Shapes``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Protocol, overload

from evpn_agent.speaker.wire_format import (
    CLUSTER_LIST,
    EVPN_FAMILY,
    EXPECTED_CATEGORY,
    EXTENDED_COMMUNITIES,
    EXTENDED_LENGTH,
    IMET_ROUTE,
    LOCAL_PREF,
    MAC_BITS,
    MAC_IP_ROUTE,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    OPTIONAL,
    ORIGIN,
    ORIGINATOR_ID,
    PMSI_HEADER_SIZE,
    PMSI_INGRESS_REPLICATION,
    TRANSITIVE,
)

__all__ = ["wire_ok"]


class _Bytes(Protocol):
    """What the walk reads: a body, or a :class:`_Reading` of one."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, at: int) -> int: ...
    @overload
    def __getitem__(self, at: slice) -> bytes: ...


AS_PATH = 2
MED = 4
_CATEGORY = 0xE0  # optional, transitive, partial: extended length and the unused bits aside
# Attribute code -> its flags (optional, transitive, partial) as RFC 4271/4456/4760/4360/6514
# define them. Anything else is ExaBGP's to decode.
_FLAGS = {**EXPECTED_CATEGORY, AS_PATH: TRANSITIVE, MED: OPTIONAL}
# Type 2 value lengths by IP length in bits (one label, or two), as ExaBGP accepts them.
_MAC_ROUTE_SIZES = {0: (33, 36), 32: (37, 40), 128: (49, 52)}


def wire_ok(body: bytes) -> bool:
    """True if the UPDATE ``body`` (after the 19-byte header) may bypass ExaBGP's decoder."""
    shape = _shapes.get(len(body))
    if shape is not None and shape[0](body) == shape[1]:
        return True
    if not _walk(body):
        return False
    size = len(body)
    if size in _walked_once:
        _remember(body)
    else:
        if len(_walked_once) >= _WALKED_KEPT:
            _walked_once.clear()
        _walked_once.add(size)
    return True


# A reflector sends a table as UPDATEs of the same shape: a 1,000-VNI table is ~256,000
# UPDATEs of one route, and the walk cost ~3 us of ExaBGP's ~11 us each. The walk's answer
# depends on nothing but the body's length and the bytes it reads, and which bytes it
# reads depends only on the bytes read before them. So a body of the same length with the
# same values at every index the walk read for one that passed would walk the same way to
# the same answer: it passes on one itemgetter and one tuple comparison (~0.5 us).
_SHAPES_KEPT = 256
_shapes: dict[int, tuple[Callable[[bytes], tuple[int, ...]], tuple[int, ...]]] = {}
# A shape is kept on the second body of its length, not the first: noting what the walk
# read costs ~4 walks (1.5 ms for an UPDATE of 1,000 routes), and a burst's large UPDATEs
# (a reflector's batches of what trickled in, each batch's tail) are mostly of lengths
# seen once.
_WALKED_KEPT = 4096
_walked_once: set[int] = set()


class _Reading:
    """A body that notes the index of every byte the walk reads from it."""

    __slots__ = ("body", "read")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.read: set[int] = set()

    def __len__(self) -> int:
        return len(self.body)

    @overload
    def __getitem__(self, at: int) -> int: ...
    @overload
    def __getitem__(self, at: slice) -> bytes: ...
    def __getitem__(self, at: int | slice) -> int | bytes:
        if isinstance(at, slice):
            self.read.update(range(*at.indices(len(self.body))))
        else:
            self.read.add(at)
        return self.body[at]


def _remember(body: bytes) -> None:
    """Keep the shape of a body that passed: the indices its walk read, and their values."""
    reading = _Reading(body)
    if not _walk(reading) or len(reading.read) < 2:  # one index: itemgetter gives no tuple
        return
    if len(_shapes) >= _SHAPES_KEPT:
        _shapes.clear()
    getter = operator.itemgetter(*sorted(reading.read))
    _shapes[len(body)] = (getter, getter(body))


def _walk(body: _Bytes) -> bool:
    size = len(body)
    if size < 4 or body[0] or body[1]:  # no room, or IPv4 withdrawn routes
        return False
    if 4 + int.from_bytes(body[2:4]) != size:  # attributes overrun, or IPv4 NLRI follow
        return False
    seen: set[int] = set()
    pos = 4
    while pos < size:
        if pos + 3 > size:
            return False
        flags = body[pos]
        code = body[pos + 1]
        if flags & EXTENDED_LENGTH:
            if pos + 4 > size:
                return False
            length = int.from_bytes(body[pos + 2 : pos + 4])
            pos += 4
        else:
            length = body[pos + 2]
            pos += 3
        end = pos + length
        if end > size or code in seen or _FLAGS.get(code) != flags & _CATEGORY:
            return False
        seen.add(code)
        if not _value_ok(code, body, pos, end):
            return False
        pos = end
    return MP_REACH_NLRI in seen or MP_UNREACH_NLRI in seen


def _value_ok(code: int, data: _Bytes, start: int, end: int) -> bool:
    length = end - start
    if code == MP_REACH_NLRI:
        if length < 5 or data[start : start + 3] != EVPN_FAMILY:
            return False
        next_hop = data[start + 3]
        nlri = start + 5 + next_hop
        # at least one NLRI: ExaBGP refuses an empty MP_REACH
        return next_hop in (4, 16) and nlri < end and _nlris_ok(data, nlri, end)
    if code == MP_UNREACH_NLRI:  # with no NLRI: End-of-RIB
        family = data[start : start + 3]
        return length >= 3 and family == EVPN_FAMILY and _nlris_ok(data, start + 3, end)
    if code == ORIGIN:
        return length == 1 and data[start] <= 2
    if code == AS_PATH:
        return length == 0  # iBGP; a path needs the negotiated AS size: ExaBGP's
    if code in (MED, LOCAL_PREF, ORIGINATOR_ID):
        return length == 4
    if code == CLUSTER_LIST:
        return length > 0 and length % 4 == 0
    if code == EXTENDED_COMMUNITIES:
        return length > 0 and length % 8 == 0
    # PMSI_TUNNEL: ingress replication to an IPv4 or IPv6 VTEP
    return length - PMSI_HEADER_SIZE in (4, 16) and data[start + 1] == PMSI_INGRESS_REPLICATION


def _nlris_ok(data: _Bytes, pos: int, end: int) -> bool:
    """Every EVPN NLRI in ``data[pos:end]`` is a type 2 or 3 that ExaBGP decodes."""
    while pos < end:
        if pos + 2 > end:
            return False
        kind = data[pos]
        start = pos + 2
        pos = start + data[pos + 1]
        if pos > end:
            return False
        size = pos - start
        if kind == MAC_IP_ROUTE:
            if size < 30 or data[start + 22] != MAC_BITS:
                return False
            if size not in _MAC_ROUTE_SIZES.get(data[start + 29], ()):
                return False
        elif kind == IMET_ROUTE:
            if size not in (17, 29) or data[start + 12] != (size - 13) * 8:
                return False
        else:
            return False
    return True
