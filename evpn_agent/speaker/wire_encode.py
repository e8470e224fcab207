"""Build BGP UPDATE messages for our adverts: many NLRIs per UPDATE, grouped by attributes.

:func:`encode_changes` turns a batch of :class:`AdvertChange` into whole BGP messages
(header included, ready for the session):

- the last change for a route wins (a route is its NLRI without the label: RD, ethernet
  tag, MAC, IP or originating IP), so an announce then a withdraw in one batch sends the
  withdraw only;
- withdraws go first, packed into MP_UNREACH_NLRI-only UPDATEs (RFC 4760 section 4); a
  type 2 withdraw repeats its announce's label, as ExaBGP sends it today: FRR keys the
  route on RD, MAC and IP and ignores the label of a withdraw, and an ExaBGP receiver
  with an adj-rib-in indexes routes with their label;
- announces are grouped by path attributes and next hop: type 2 by route targets, MAC
  mobility and VTEP, type 3 by route targets and PMSI tunnel, so per VNI and VTEP;
- every message stays within ``max_size``: 4096 bytes, or up to 65535 once RFC 8654
  extended messages are negotiated.

Attributes are exactly those the agent sends through ExaBGP today: ORIGIN IGP, an empty
AS_PATH and LOCAL_PREF 100 (iBGP with the route reflectors), the extended communities
(route targets, encapsulation VXLAN, MAC mobility when the sequence is above 0 or the MAC
is sticky) in ExaBGP's order (sorted by their bytes), PMSI ingress replication for type 3
(the VNI as its raw label, RFC 8365) and MP_REACH_NLRI with our VTEP as the 4- or 16-byte
next hop. A single route's UPDATE is byte for byte the one ExaBGP builds.

A change that cannot be encoded (not a host MAC, an address that cannot be a VTEP, a VNI
out of range, an announce without route target, attributes too large for one message) is
returned in ``refused`` with the reason, never raised.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from evpn_agent.model import (
    MAX_VNI,
    Advert,
    AdvertChange,
    ImetAdvert,
    MacAdvert,
    RouteDistinguisher,
    RouteTarget,
    build,
)
from evpn_agent.speaker.wire_format import (
    AS_PATH,
    ESI_ZERO,
    EVPN_FAMILY,
    EXTENDED_COMMUNITIES,
    EXTENDED_LENGTH,
    HEADER_SIZE,
    IMET_ROUTE,
    LOCAL_PREF,
    MAC_BITS,
    MAC_IP_ROUTE,
    MARKER,
    MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    OPTIONAL,
    ORIGIN,
    PMSI_INGRESS_REPLICATION,
    PMSI_TUNNEL,
    STICKY,
    SUBTYPE_ENCAPSULATION,
    SUBTYPE_MAC_MOBILITY,
    SUBTYPE_ROUTE_TARGET,
    TRANSITIVE,
    TUNNEL_VXLAN,
    TYPE_EVPN,
    TYPE_OPAQUE,
    UPDATE,
)

__all__ = [
    "Encoded",
    "Prepared",
    "Unencodable",
    "encode_changes",
    "encode_prepared",
    "end_of_rib",
    "prepare",
    "prepare_many",
    "route_of",
    "withdrawal",
]

_MAX_U32 = (1 << 32) - 1
_ETAG_ZERO = bytes(4)
_BROADCAST = b"\xff\xff\xff\xff"
_MP_HEADER = 4  # flags, code, 2-byte length: what an MP attribute costs beyond its value


@dataclass(frozen=True, slots=True)
class Encoded:
    """The messages for a batch of changes, and the changes that could not be encoded."""

    messages: list[bytes]
    refused: list[tuple[AdvertChange, str]]


class _Unencodable(ValueError):
    pass


Unencodable = _Unencodable  # what route_of raises; the message says why


class Prepared(NamedTuple):
    """A change with the bytes it is sent as, computed once: a table of routes keeps these
    and packs them later without encoding each route again."""

    nlri: bytes
    group: tuple[bytes, bytes] | None  # (next hop, path attributes); None: a withdraw
    change: AdvertChange


def prepare(change: AdvertChange) -> tuple[bytes, Prepared]:
    """(the route ``change`` is about, the change prepared): Unencodable if it cannot be
    encoded. The route is the NLRI without its label, the identity of last-change-wins."""
    nlri, route = _nlri(change.advert)
    group = None if change.withdraw else _group(change.advert)
    return route, Prepared(nlri, group, change)


def prepare_many(
    changes: Iterable[AdvertChange],
) -> tuple[list[tuple[bytes, Prepared]], list[tuple[AdvertChange, str]]]:
    """:func:`prepare` for each of ``changes``, and those that cannot be with why (its
    ValueError or TypeError). The changes of a batch line share few RDs and attribute sets
    (one per VNI): each is encoded once per call, not per change."""
    out: list[tuple[bytes, Prepared]] = []
    refused: list[tuple[AdvertChange, str]] = []
    # Keyed by identity (hashing an RD or RTs costs more than packing them); ``changes``
    # keeps every key's object alive for the whole call.
    rds: dict[int, bytes] = {}
    # a type 2's RD to MAC, packed, and its label, per RD and VNI
    macs: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    groups: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
    for change in changes:
        advert = change.advert
        try:
            if type(advert) is MacAdvert and type(advert.vni) is int:
                found = macs.get((id(advert.rd), advert.vni))
                if found is None:
                    prefix = _rd(advert.rd) + _MAC_ROUTE_MIDDLE
                    found = macs[id(advert.rd), advert.vni] = (prefix, _label(advert.vni))
                nlri, route = _mac_nlri(found[0], found[1], advert)
            else:
                rd = rds.get(id(advert.rd))
                if rd is None:
                    rd = rds[id(advert.rd)] = _rd(advert.rd)
                nlri, route = _nlri(advert, rd)
            if change.withdraw:
                out.append((route, build(Prepared, (nlri, None, change))))
                continue
            # what _group reads; only ints as numbers, so that True does not pass for 1
            key: tuple[object, ...] | None = None
            if isinstance(advert, MacAdvert):
                if type(advert.seq) is int:
                    key = (id(advert.rts), advert.vtep, advert.seq, bool(advert.sticky))
            elif type(advert.vni) is int:
                key = (id(advert.rts), advert.vtep, advert.vni)
            group = None if key is None else groups.get(key)
            if group is None:
                group = _group(advert)
                if key is not None:
                    groups[key] = group
        except (ValueError, TypeError) as exc:
            refused.append((change, str(exc)))
            continue
        out.append((route, build(Prepared, (nlri, group, change))))
    return out, refused


def withdrawal(item: Prepared) -> Prepared:
    """The withdraw of the announce ``item`` (the same NLRI, label included)."""
    return build(Prepared, (item.nlri, None, build(AdvertChange, (item.change.advert, True))))


def route_of(change: AdvertChange) -> bytes:
    """The route ``change`` is about (its NLRI without the label), checking that
    :func:`encode_changes` will encode it: Unencodable otherwise. Callers that keep a table
    of routes key it with this, the identity the encoder's last-change-wins uses."""
    return prepare(change)[0]


def encode_changes(changes: Iterable[AdvertChange], max_size: int = MIN_MESSAGE_SIZE) -> Encoded:
    """The UPDATE messages that announce and withdraw ``changes``, in as few as fit."""
    _check_size(max_size)
    refused: list[tuple[AdvertChange, str]] = []
    last: dict[bytes, Prepared] = {}  # route -> the last change for it
    for change in changes:
        try:
            route, item = prepare(change)
        except _Unencodable as exc:
            refused.append((change, str(exc)))
            continue
        last.pop(route, None)  # a later change moves the route to the end
        last[route] = item
    return _encode(last.values(), max_size, refused)


def encode_prepared(items: Iterable[Prepared], max_size: int = MIN_MESSAGE_SIZE) -> Encoded:
    """:func:`encode_changes` for changes already prepared, one per route."""
    _check_size(max_size)
    return _encode(items, max_size, [])


def _check_size(max_size: int) -> None:
    if not MIN_MESSAGE_SIZE <= max_size <= MAX_MESSAGE_SIZE:
        raise ValueError(f"max_size must be {MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}")


def _encode(
    items: Iterable[Prepared], max_size: int, refused: list[tuple[AdvertChange, str]]
) -> Encoded:
    withdrawn: list[tuple[bytes, AdvertChange]] = []
    groups: dict[tuple[bytes, bytes], list[tuple[bytes, AdvertChange]]] = {}
    for nlri, group, change in items:
        if group is None:
            withdrawn.append((nlri, change))
        else:
            groups.setdefault(group, []).append((nlri, change))

    messages = list(_unreach_messages(withdrawn, max_size))
    for (next_hop, attributes), routes in groups.items():
        messages.extend(_reach_messages(next_hop, attributes, routes, max_size, refused))
    return Encoded(messages, refused)


def end_of_rib() -> bytes:
    """End-of-RIB for l2vpn evpn (RFC 4724): an UPDATE with an empty MP_UNREACH_NLRI."""
    return _message(_attribute(OPTIONAL, MP_UNREACH_NLRI, EVPN_FAMILY))


# ---------------------------------------------------------------- messages


def _message(attributes: bytes) -> bytes:
    body = b"\x00\x00" + len(attributes).to_bytes(2) + attributes
    return MARKER + (HEADER_SIZE + len(body)).to_bytes(2) + bytes([UPDATE]) + body


def _attribute(flags: int, code: int, value: bytes) -> bytes:
    # the extended length only when needed, as ExaBGP and FRR do
    if len(value) > 255:
        return struct.pack("!BBH", flags | EXTENDED_LENGTH, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def _chunks(
    routes: list[tuple[bytes, AdvertChange]], room: int
) -> Iterator[list[tuple[bytes, AdvertChange]]]:
    chunk: list[tuple[bytes, AdvertChange]] = []
    used = 0
    for route in routes:
        size = len(route[0])
        if used + size > room and chunk:
            yield chunk
            chunk, used = [], 0
        chunk.append(route)
        used += size
    if chunk:
        yield chunk


def _unreach_messages(routes: list[tuple[bytes, AdvertChange]], max_size: int) -> Iterator[bytes]:
    room = max_size - HEADER_SIZE - 4 - _MP_HEADER - len(EVPN_FAMILY)
    for chunk in _chunks(routes, room):
        value = EVPN_FAMILY + b"".join(nlri for nlri, _ in chunk)
        yield _message(_attribute(OPTIONAL, MP_UNREACH_NLRI, value))


def _reach_messages(
    next_hop: bytes,
    attributes: bytes,
    routes: list[tuple[bytes, AdvertChange]],
    max_size: int,
    refused: list[tuple[AdvertChange, str]],
) -> Iterator[bytes]:
    header = EVPN_FAMILY + bytes([len(next_hop)]) + next_hop + b"\x00"
    room = max_size - HEADER_SIZE - 4 - len(attributes) - _MP_HEADER - len(header)
    if room < max(len(nlri) for nlri, _ in routes):
        reason = f"path attributes of {len(attributes)} bytes leave no room in {max_size}"
        refused.extend((change, reason) for _, change in routes)
        return
    for chunk in _chunks(routes, room):
        value = header + b"".join(nlri for nlri, _ in chunk)
        yield _message(attributes + _attribute(OPTIONAL, MP_REACH_NLRI, value))


# ---------------------------------------------------------------- NLRI


def _nlri(advert: Advert, rd: bytes | None = None) -> tuple[bytes, bytes]:
    """(NLRI, route): the route is the NLRI without its label, the route's identity.
    ``rd``: the advert's RD packed, if the caller has it."""
    if rd is None:
        rd = _rd(advert.rd)
    if isinstance(advert, MacAdvert):
        return _mac_nlri(rd + _MAC_ROUTE_MIDDLE, _label(advert.vni), advert)
    origin = _unicast(advert.vtep)
    value = rd + _ETAG_ZERO + bytes([len(origin) * 8]) + origin
    nlri = bytes([IMET_ROUTE, len(value)]) + value
    return nlri, nlri


_MAC_ROUTE_MIDDLE = ESI_ZERO + _ETAG_ZERO + bytes([MAC_BITS])  # between the RD and the MAC
_MAC_ROUTE_HEADS = [bytes([MAC_IP_ROUTE, n]) for n in range(256)]


def _mac_nlri(prefix: bytes, label: bytes, advert: MacAdvert) -> tuple[bytes, bytes]:
    """A type 2's (NLRI, route) from its RD and what follows it up to the MAC, packed
    (``prefix``), and its label: a batch packs those once per VNI."""
    route = _mac_route(prefix, len(label), advert.mac, advert.ip)
    return route + label, route


def _mac_route(prefix: bytes, label_size: int, mac: str, ip: str | None) -> bytes:
    """A type 2's route: its NLRI without the label (whose size the NLRI's length counts)."""
    key = prefix + _mac(mac) + (b"\x00" if ip is None else _ip_field(ip))
    return _MAC_ROUTE_HEADS[len(key) + label_size] + key


def mac_routes(
    rd: RouteDistinguisher, vni: object, macs: Sequence[object]
) -> tuple[list[bytes], list[tuple[int, str]]]:
    """The routes of type 2s that share RD and VNI, for ``macs`` = MAC, IP, MAC, IP...:
    what :func:`route_of` gives for each one's change, without the change. What a
    withdraw needs (its route; the NLRI it is sent with is its announce's). Refused: the
    index of the pair in ``macs`` and why, as :func:`route_of` would have refused it."""
    try:
        prefix = _rd(rd) + _MAC_ROUTE_MIDDLE
        label = _label(vni)  # type: ignore[arg-type]  # checked there, as for an advert
    except (ValueError, TypeError) as exc:
        return [], [(n, str(exc)) for n in range(len(macs) // 2)]
    routes: list[bytes] = []
    refused: list[tuple[int, str]] = []
    for n in range(len(macs) // 2):
        try:
            routes.append(_mac_route(prefix, len(label), macs[2 * n], macs[2 * n + 1]))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            refused.append((n, str(exc)))
    return routes, refused


def _group(advert: Advert) -> tuple[bytes, bytes]:
    """(next hop, path attributes) of an announce."""
    if not advert.rts:
        raise _Unencodable("an announce needs at least one route target")
    next_hop = _unicast(advert.vtep)
    if isinstance(advert, ImetAdvert):
        return next_hop, _imet_attributes(advert.rts, _label(advert.vni), next_hop)
    seq = advert.seq
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= _MAX_U32:
        raise _Unencodable(f"mobility sequence {seq!r} is outside 0..{_MAX_U32}")
    return next_hop, _mac_attributes(advert.rts, seq, bool(advert.sticky))


def _mac(text: str) -> bytes:
    if not isinstance(text, str) or len(text) != 17 or text[2::3] != ":::::":
        raise _Unencodable(f"MAC {text!r} is not six hex octets")
    try:
        mac = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise _Unencodable(f"MAC {text!r} is not six hex octets") from None
    if len(mac) != 6 or mac == bytes(6) or mac[0] & 1:
        raise _Unencodable(f"MAC {text} is not a host address")
    return mac


def _label(vni: int) -> bytes:
    if isinstance(vni, bool) or not isinstance(vni, int) or not 0 < vni <= MAX_VNI:
        raise _Unencodable(f"VNI {vni!r} is outside 1..{MAX_VNI}")
    return vni.to_bytes(3)  # raw: VXLAN's label is the VNI itself (RFC 8365 section 5.1.3)


def _ip_field(text: str) -> bytes:
    """The IP length (bits) and address of a type 2's host IP."""
    packed = _pack_unicast(text)
    return bytes([len(packed) * 8]) + packed


def _pack_unicast(text: str) -> bytes:
    """The address packed, if it is a unicast address (as the ExaBGP grammar checks)."""
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except (OSError, TypeError):
        raise _Unencodable(f"{text!r} is not an IP address") from None
    if packed == bytes(len(packed)) or packed == _BROADCAST or _multicast(packed):
        raise _Unencodable(f"{text} is not a unicast address")
    return packed


_unicast = functools.lru_cache(maxsize=4096)(_pack_unicast)  # VTEPs: few, on every route


def _multicast(packed: bytes) -> bool:
    return packed[0] == 0xFF if len(packed) == 16 else 224 <= packed[0] <= 239


@functools.lru_cache(maxsize=4096)
def _rd(rd: RouteDistinguisher) -> bytes:
    return rd.type.to_bytes(2) + _admin_number(rd)


def _admin_number(value: RouteDistinguisher | RouteTarget) -> bytes:
    """Six bytes: the administrator then the assigned number (RFC 4360, 4364)."""
    if isinstance(value.admin, ipaddress.IPv4Address):
        return value.admin.packed + value.number.to_bytes(2)
    if value.type == 0:
        return value.admin.to_bytes(2) + value.number.to_bytes(4)
    return value.admin.to_bytes(4) + value.number.to_bytes(2)


# ---------------------------------------------------------------- path attributes

_ORIGIN_IGP = _attribute(TRANSITIVE, ORIGIN, b"\x00")
_AS_PATH_EMPTY = _attribute(TRANSITIVE, AS_PATH, b"")
_LOCAL_PREF_100 = _attribute(TRANSITIVE, LOCAL_PREF, (100).to_bytes(4))
_COMMON = _ORIGIN_IGP + _AS_PATH_EMPTY + _LOCAL_PREF_100
_VXLAN = bytes([TYPE_OPAQUE, SUBTYPE_ENCAPSULATION, 0, 0, 0, 0, 0, TUNNEL_VXLAN])


def route_target_community(rt: RouteTarget) -> bytes:
    """The 8-byte extended community of a route target, as on the wire."""
    return bytes([rt.type, SUBTYPE_ROUTE_TARGET]) + _admin_number(rt)


def _communities(rts: tuple[RouteTarget, ...], *more: bytes) -> bytes:
    try:
        targets = [route_target_community(rt) for rt in rts]
    except (AttributeError, OverflowError, TypeError):
        raise _Unencodable(f"route targets {rts!r} cannot be encoded") from None
    values = sorted([*targets, _VXLAN, *more])
    return _attribute(OPTIONAL | TRANSITIVE, EXTENDED_COMMUNITIES, b"".join(values))


@functools.lru_cache(maxsize=4096)
def _mac_attributes(rts: tuple[RouteTarget, ...], seq: int, sticky: bool) -> bytes:
    if seq or sticky:
        flags = STICKY if sticky else 0
        mobility = bytes([TYPE_EVPN, SUBTYPE_MAC_MOBILITY, flags, 0]) + seq.to_bytes(4)
        return _COMMON + _communities(rts, mobility)
    return _COMMON + _communities(rts)


@functools.lru_cache(maxsize=4096)
def _imet_attributes(rts: tuple[RouteTarget, ...], label: bytes, tunnel: bytes) -> bytes:
    pmsi = bytes([0, PMSI_INGRESS_REPLICATION]) + label + tunnel
    return _COMMON + _communities(rts) + _attribute(OPTIONAL | TRANSITIVE, PMSI_TUNNEL, pmsi)
