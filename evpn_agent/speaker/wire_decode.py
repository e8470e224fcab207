"""Decode a BGP UPDATE's EVPN routes from its bytes into the agent's events, in one pass.

The input is an UPDATE as it came off the wire: :func:`decode_update` takes the body (the
bytes after the 19-byte header: what ExaBGP's ``receive { packets; }`` JSON carries as
``body``, hex-encoded), :func:`decode_message` a whole message, header included.

What comes out is what :mod:`decode` makes of ExaBGP's JSON for the same UPDATE: the same
events, the same route keys and values, the same rejection reasons, in the same order
(withdraws first). Only l2vpn evpn (AFI 25, SAFI 70) in MP_REACH_NLRI / MP_UNREACH_NLRI is
read; IPv4 routes in the body and other families are ignored. Route types 2 and 3 are
decoded, other types refused (``unsupported-route-type``). No ADD-PATH (never negotiated).

Untrusted input: nothing raises. Per route, a bad field is a ``RouteRejected`` for that
route only (``malformed-nlri``, ``bad-mac``, ``zero-mac``, ``multicast-mac``, ``bad-ip``,
``bad-label``, ``martian-nexthop``, ``no-route-target``, ``no-pmsi``, ``unsupported-pmsi``).
An UPDATE whose framing is broken yields one ``RouteRejected`` (``malformed-update``, or
``malformed-nlri`` when an NLRI's length runs past its attribute) and no route at all:
nothing in it can be trusted. A malformed attribute the routes depend on
(``malformed-attribute``, counted once) turns the UPDATE's announcements into withdraws
(RFC 7606 treat-as-withdraw), as ExaBGP does today.

Where it knowingly differs from today's path (ExaBGP 5.0.15, its JSON, :mod:`decode`):
a 32-byte IPv6 next hop (global and link-local) is read, ExaBGP resets the session; a
PMSI ingress replication tunnel whose identifier is not 4 or 16 bytes is
``unsupported-pmsi``, ExaBGP's JSON loses its VNI (``bad-label``); a malformed
ORIGINATOR_ID, CLUSTER_LIST, PMSI or ORIGIN value is treat-as-withdraw (RFC 7606), ExaBGP
resets the session or keeps the route. A framing error ends the session in ExaBGP; here
it is one rejection, so whatever feeds this decoder must keep ExaBGP's session-level
checks (NOTIFICATION) for such messages.
"""

from __future__ import annotations

import functools
import ipaddress

from evpn_agent.model import (
    BadValue,
    BgpEvent,
    EndOfRib,
    ImetKey,
    ImetRoute,
    MacKey,
    MacRoute,
    Route,
    RouteKey,
    RouteRejected,
    RoutesAnnounced,
    RoutesWithdrawn,
    build,
    check_vni,
    describe_key,
    vtep_address,
)
from evpn_agent.speaker.wire_attributes import Malformed, PathAttributes, read_attributes
from evpn_agent.speaker.wire_format import (
    EVPN_FAMILY,
    HEADER_SIZE,
    IMET_ROUTE,
    MAC_BITS,
    MAC_IP_ROUTE,
    MARKER,
    PMSI_HEADER_SIZE,
    PMSI_INGRESS_REPLICATION,
    UPDATE,
    RdTexts,
    Remembered,
    ipv4_text,
    ipv6_text,
    shared_vni,
)

__all__ = ["decode_message", "decode_update"]

_ZERO_MAC = bytes(6)
# One string per RD, kept: a fabric has one RD per VTEP and VNI (64,000 at 64 VTEPs x
# 1,000 VNIs), a table or a churn cycles through all of them, and an LRU of 4,096 missed
# every time (1.5 us a route). Interned: the core's paths share them too. 4,096 blocks of
# 256: at most 8 MiB, whatever the numbering.
_rd_text = RdTexts(1 << 12).text


# Type 2 value lengths by IP length in bits: one label, or two (the second an L3 VNI).
_MAC_ROUTE_SIZES = {0: (33, 36), 32: (37, 40), 128: (49, 52)}


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_message(message: bytes, peer: str, router_id: str | None = None) -> list[BgpEvent]:
    """Events in one whole BGP message (header included); other message types give none."""
    data = bytes(message)
    if len(data) < HEADER_SIZE or data[:16] != MARKER:
        return [RouteRejected(peer, "malformed-update", "not a BGP message header")]
    length = int.from_bytes(data[16:18])
    if length != len(data):
        detail = f"header says {length} bytes, message has {len(data)}"
        return [RouteRejected(peer, "malformed-update", detail)]
    if data[18] != UPDATE:
        return []
    return decode_update(data[HEADER_SIZE:], peer, router_id)


def decode_update(body: bytes, peer: str, router_id: str | None = None) -> list[BgpEvent]:
    """Events in one UPDATE body. Routes originated by ``router_id`` (our own, reflected
    back) are dropped, as :func:`decode.parse_line` drops them."""
    data = bytes(body)
    try:
        path = _frame(data)
        return _events(path, peer, router_id)
    except Malformed as exc:
        return [RouteRejected(peer, exc.reason, exc.detail)]
    except (IndexError, ValueError) as exc:  # a bug of ours; the tests look for this reason
        return [RouteRejected(peer, "undecodable-update", f"{type(exc).__name__}: {exc}")]


def _frame(data: bytes) -> PathAttributes:
    size = len(data)
    if size < 4:
        raise Malformed("malformed-update", f"UPDATE body of {size} bytes")
    withdrawn = int.from_bytes(data[:2])
    start = 2 + withdrawn + 2
    if start > size:
        raise Malformed("malformed-update", f"withdrawn routes length {withdrawn} too long")
    end = start + int.from_bytes(data[start - 2 : start])
    if end > size:
        raise Malformed("malformed-update", f"path attributes length {end - start} too long")
    path = read_attributes(data, start, end)
    if withdrawn or end < size:  # IPv4 unicast routes: not ours, but not an End-of-RIB
        path.only_unreach = False
    return path


def _events(path: PathAttributes, peer: str, router_id: str | None) -> list[BgpEvent]:
    events: list[BgpEvent] = []
    gone: list[RouteKey] = []  # the UPDATE's withdraws, one event after its refusals
    own_rd = _own_rd(router_id) if router_id else None
    unreach = path.unreach
    if unreach is not None:
        if len(unreach) < 3:
            raise Malformed("malformed-update", f"MP_UNREACH_NLRI of {len(unreach)} bytes")
        if unreach[:3] == EVPN_FAMILY:
            if len(unreach) == 3 and path.reach is None and path.only_unreach:
                return [EndOfRib(peer)]
            _withdrawn(unreach, 3, peer, own_rd, events, gone)
    reach = path.reach
    if reach is None:
        if path.malformed is not None:
            events.append(RouteRejected(peer, "malformed-attribute", path.malformed))
        return _with_withdrawn(events, peer, gone)
    if len(reach) < 5 or reach[3] + 5 > len(reach):
        raise Malformed("malformed-update", f"MP_REACH_NLRI of {len(reach)} bytes")
    if reach[:3] != EVPN_FAMILY:
        return _with_withdrawn(events, peer, gone)
    start = 5 + reach[3]
    if path.malformed is not None:
        # RFC 7606 treat-as-withdraw: the routes are gone, whatever else they say
        events.append(RouteRejected(peer, "malformed-attribute", path.malformed))
        _withdrawn(reach, start, peer, own_rd, events, gone)
        return _with_withdrawn(events, peer, gone)
    _with_withdrawn(events, peer, gone)  # before the announces
    if router_id is None or path.originator != router_id:
        # else: the reflector sends every client its own routes back
        _announced(reach, start, peer, path, events)
    return events


def _with_withdrawn(events: list[BgpEvent], peer: str, gone: list[RouteKey]) -> list[BgpEvent]:
    """``events`` and then the withdraws ``gone`` as one event (as ExaBGP's JSON, parsed,
    gives them: an UPDATE's refused routes, then its withdraws)."""
    if gone:
        events.append(RoutesWithdrawn(peer, tuple(gone)))
    return events


def _next_nlri(data: bytes, pos: int) -> tuple[int, int, int]:
    """(route type, value start, value end) of the NLRI at ``pos``."""
    if pos + 2 > len(data):
        raise Malformed("malformed-nlri", "EVPN NLRI cut in its header")
    start = pos + 2
    end = start + data[pos + 1]
    if end > len(data):
        raise Malformed(
            "malformed-nlri", f"EVPN NLRI claims {data[pos + 1]} bytes, {len(data) - start} left"
        )
    return data[pos], start, end


@functools.lru_cache(maxsize=64)
def _own_rd(router_id: str) -> bytes | None:
    """How our RDs start: type 1 (RFC 7432 section 7.9), our router id. A router id is
    an IPv4 address (the configuration and ExaBGP check it); None for anything else."""
    try:
        return b"\x00\x01" + ipaddress.IPv4Address(router_id).packed
    except ValueError:
        return None


def _withdrawn(
    data: bytes,
    pos: int,
    peer: str,
    own_rd: bytes | None,
    events: list[BgpEvent],
    keys: list[RouteKey],
) -> None:
    """The withdrawn routes' keys into ``keys``; refusals into ``events``."""
    size = len(data)
    while pos < size:
        kind, start, pos = _next_nlri(data, pos)
        # Reflected withdraws of our own routes carry no originator-id: our RD tells,
        # before anything else is read (the reflector sends back every route we withdraw;
        # ExaBGP's JSON shows an RD for types 1 to 5 only).
        own = own_rd is not None and 1 <= kind <= 5 and pos - start >= 8
        if own and data[start : start + 6] == own_rd:
            continue
        try:
            if kind == MAC_IP_ROUTE:
                key: MacKey | ImetKey = _mac_key(data, start, pos)[0]
            elif kind == IMET_ROUTE:
                key = _imet_key(data, start, pos)
            else:
                raise _unsupported(kind)
        except _Refused as exc:
            events.append(RouteRejected(peer, exc.reason, exc.detail))
            continue
        keys.append(key)


def _announced(
    data: bytes, pos: int, peer: str, path: PathAttributes, events: list[BgpEvent]
) -> None:
    next_hop, vtep = _next_hop(data[4 : pos - 1])
    rts = path.rts
    size = len(data)
    pmsi: tuple[int, str] | None = None
    # One event for the UPDATE's run of routes (a reflector packs ~1,000), not one each:
    # the core dispatches an event at a time. A refused route ends a run, keeping order.
    run: list[Route] = []
    while pos < size:
        kind, start, pos = _next_nlri(data, pos)
        try:
            if kind == MAC_IP_ROUTE:
                key, label = _mac_key(data, start, pos)
                if not rts:
                    raise _no_route_target(key)
                vni = shared_vni(int.from_bytes(data[label : label + 3]))
                if vni == 0:
                    raise _Refused("bad-label", f"{describe_key(key)}: VNI 0 in the label")
                if vtep is None:
                    raise _martian(key, next_hop)
                run.append(build(MacRoute, (key, vni, vtep, rts, path.seq, path.sticky)))
            elif kind == IMET_ROUTE:
                imet = _imet_key(data, start, pos)
                if not rts:
                    raise _no_route_target(imet)
                if pmsi is None:
                    pmsi = _pmsi(path.pmsi, imet)
                vni, tunnel = pmsi
                flood = vtep_address(tunnel)
                if flood is None:
                    raise _martian(imet, tunnel)
                run.append(build(ImetRoute, (imet, vni, flood, rts)))
            else:
                raise _unsupported(kind)
        except _Refused as exc:
            if run:
                events.append(RoutesAnnounced(peer, tuple(run)))
                run = []
            events.append(RouteRejected(peer, exc.reason, exc.detail))
    if run:
        events.append(RoutesAnnounced(peer, tuple(run)))


def _mac_key(data: bytes, start: int, end: int) -> tuple[MacKey, int]:
    """Type 2 key, and where its (first) label starts."""
    size = end - start
    if size < 30:
        raise _Refused("malformed-nlri", f"type-2 NLRI of {size} bytes")
    if data[start + 22] != MAC_BITS:
        raise _Refused("bad-mac", f"MAC length {data[start + 22]} bits, not 48")
    ip_bits = data[start + 29]
    sizes = _MAC_ROUTE_SIZES.get(ip_bits)
    if sizes is None:
        raise _Refused("bad-ip", f"IP length {ip_bits} bits in a type-2 NLRI")
    if size not in sizes:
        raise _Refused("malformed-nlri", f"type-2 NLRI of {size} bytes with a {ip_bits}-bit IP")
    mac = data[start + 23 : start + 29]
    if mac == _ZERO_MAC:
        raise _Refused("zero-mac", "MAC 00:00:00:00:00:00 is not a host address")
    if mac[0] & 1:
        raise _Refused("multicast-mac", f"MAC {mac.hex(':')} is a multicast or broadcast address")
    label = start + 30
    ip = None
    if ip_bits == 32:
        ip = ipv4_text(data[label : label + 4])
        label += 4
    elif ip_bits:
        ip = ipv6_text(data[label : label + 16])
        label += 16
    rd = _rd_text(data, start)
    etag = int.from_bytes(data[start + 18 : start + 22])
    return build(MacKey, (rd, etag, mac.hex(":"), ip)), label


def _imet_key(data: bytes, start: int, end: int) -> ImetKey:
    size = end - start
    if size < 13:
        raise _Refused("malformed-nlri", f"type-3 NLRI of {size} bytes")
    ip_bits = data[start + 12]
    if ip_bits not in (32, 128):
        raise _Refused("bad-ip", f"IP length {ip_bits} bits in a type-3 NLRI")
    if size != 13 + ip_bits // 8:
        raise _Refused("malformed-nlri", f"type-3 NLRI of {size} bytes with a {ip_bits}-bit IP")
    ip = data[start + 13 : end]
    origin = ipv4_text(ip) if ip_bits == 32 else ipv6_text(ip)
    rd = _rd_text(data, start)
    return build(ImetKey, (rd, int.from_bytes(data[start + 8 : start + 12]), origin))


def _read_next_hop(value: bytes) -> tuple[str, str | None]:
    """The MP_REACH next hop as text, and as the VTEP a type 2 points at (RFC 8365 section
    5.1.3) if it can be one; of a global and a link-local IPv6 address, the global one."""
    if len(value) == 4:
        text = ipv4_text(value)
    elif len(value) in (16, 32):
        text = ipv6_text(value[:16])
    else:
        return "0x" + value.hex(), None
    return text, vtep_address(text)


# Every UPDATE has a next hop, and a fabric has few VTEPs.
_next_hop = Remembered(_read_next_hop, 1 << 14).__getitem__


def _pmsi(value: bytes | None, key: ImetKey) -> tuple[int, str]:
    """(VNI, tunnel endpoint) of an ingress replication PMSI tunnel (RFC 6514 section 5:
    the endpoint is an IPv4 or IPv6 address); the same for every type 3 of the UPDATE."""
    if value is None:
        raise _Refused("no-pmsi", f"{describe_key(key)} has no PMSI tunnel attribute")
    tunnel = value[PMSI_HEADER_SIZE:]
    if value[1] != PMSI_INGRESS_REPLICATION or len(tunnel) not in (4, 16):
        detail = f"PMSI tunnel type {value[1]} with a {len(tunnel)}-byte identifier"
        raise _Refused("unsupported-pmsi", f"{describe_key(key)}: {detail}")
    try:
        vni = shared_vni(check_vni(int.from_bytes(value[2:5])))
    except BadValue as exc:
        raise _Refused(exc.reason, str(exc)) from None
    return vni, ipv4_text(tunnel) if len(tunnel) == 4 else ipv6_text(tunnel)


def _unsupported(kind: int) -> _Refused:
    return _Refused("unsupported-route-type", f"EVPN route type {kind} is not handled")


def _no_route_target(key: MacKey | ImetKey) -> _Refused:
    return _Refused("no-route-target", f"{describe_key(key)} carries no route target")


def _martian(key: MacKey | ImetKey, value: str) -> _Refused:
    return _Refused("martian-nexthop", f"{describe_key(key)}: next hop {value!r} cannot be a VTEP")
