"""BGP UPDATE wire constants shared by :mod:`wire_decode` and :mod:`wire_encode`, and the
text forms both sides must agree on. Standard library only: no ExaBGP here.

References: RFC 4271 (message and attribute framing), RFC 4760 (MP_REACH/MP_UNREACH),
RFC 4360 and 4364 (extended communities, route distinguishers), RFC 6514 section 5 (PMSI
tunnel), RFC 7432 (EVPN NLRI, MAC mobility), RFC 8365 (VXLAN: the label is the raw VNI),
RFC 8654 (extended messages).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable, Hashable
from typing import TypeVar

# The line the launcher hands the agent for an UPDATE ExaBGP did not decode (compat,
# exabgp/contract.md): "wire-update PEER-ADDRESS UNIX-TIME BODY-HEX".
WIRE_UPDATE = "wire-update"
# ... and for UPDATEs it decoded itself (wire_records): "wire-events PEER UNIX-TIME PAYLOAD".
WIRE_EVENTS = "wire-events"
HEADER_SIZE = 19  # marker (16), length (2), type (1)
MARKER = b"\xff" * 16
UPDATE = 2
MIN_MESSAGE_SIZE = 4096  # RFC 4271: every speaker takes at least this
MAX_MESSAGE_SIZE = 65535  # RFC 8654 extended messages

AFI_L2VPN = 25
SAFI_EVPN = 70
EVPN_FAMILY = b"\x00\x19\x46"  # AFI 25, SAFI 70 as they open MP_REACH and MP_UNREACH

# Path attribute type codes
ORIGIN = 1
AS_PATH = 2
LOCAL_PREF = 5
ORIGINATOR_ID = 9
CLUSTER_LIST = 10
MP_REACH_NLRI = 14
MP_UNREACH_NLRI = 15
EXTENDED_COMMUNITIES = 16
PMSI_TUNNEL = 22

# Attribute flags
OPTIONAL = 0x80
TRANSITIVE = 0x40
EXTENDED_LENGTH = 0x10
CATEGORY = OPTIONAL | TRANSITIVE  # the bits that must match an attribute's definition

# The category each attribute we read must carry (RFC 4271, 4456, 4760, 4360, 6514).
EXPECTED_CATEGORY = {
    ORIGIN: TRANSITIVE,
    LOCAL_PREF: TRANSITIVE,
    ORIGINATOR_ID: OPTIONAL,
    CLUSTER_LIST: OPTIONAL,
    MP_REACH_NLRI: OPTIONAL,
    MP_UNREACH_NLRI: OPTIONAL,
    EXTENDED_COMMUNITIES: OPTIONAL | TRANSITIVE,
    PMSI_TUNNEL: OPTIONAL | TRANSITIVE,
}

# EVPN route types (RFC 7432 section 7)
MAC_IP_ROUTE = 2
IMET_ROUTE = 3

# Extended communities (8 bytes: type, subtype, value)
SUBTYPE_ROUTE_TARGET = 0x02  # with types 0x00 (2-byte AS), 0x01 (IPv4), 0x02 (4-byte AS)
TYPE_EVPN = 0x06
SUBTYPE_MAC_MOBILITY = 0x00
TYPE_OPAQUE = 0x03
SUBTYPE_ENCAPSULATION = 0x0C
TUNNEL_VXLAN = 8  # RFC 8365 section 5.1.3
STICKY = 0x01  # MAC mobility flags

PMSI_INGRESS_REPLICATION = 6
PMSI_HEADER_SIZE = 5  # flags, tunnel type, label (3)

ESI_ZERO = bytes(10)
MAC_BITS = 48


def rd_text(rd: bytes) -> str:
    """A route distinguisher's text exactly as ExaBGP renders it (the route key's ``rd``):
    ``AS:N``, ``IPv4:N`` or, for an unknown type, ``0x`` and the eight bytes in hex."""
    kind = int.from_bytes(rd[:2])
    if kind == 0:
        return f"{int.from_bytes(rd[2:4])}:{int.from_bytes(rd[4:8])}"
    if kind == 1:
        return f"{socket.inet_ntop(socket.AF_INET, rd[2:6])}:{int.from_bytes(rd[6:8])}"
    if kind == 2:
        return f"{int.from_bytes(rd[2:6])}:{int.from_bytes(rd[6:8])}"
    return "0x" + rd.hex().upper()


def ipv4_text(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, packed)


_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")


class Remembered(dict[_K, _T]):
    """A function of a few bytes (or of a number) whose answers are kept, up to ``limit``
    of them (then it starts again): for values a fabric has few of and every UPDATE
    carries (RDs, router ids, next hops, VNIs). A hit is one dict lookup in C; only a miss
    runs ``make``."""

    __slots__ = ("_limit", "_make")

    def __init__(self, make: Callable[[_K], _T], limit: int) -> None:
        super().__init__()
        self._make = make
        self._limit = limit

    def __missing__(self, raw: _K) -> _T:
        value = self._make(raw)
        self.keep(raw, value)
        return value

    def keep(self, raw: _K, value: _T) -> None:
        """Keep an answer made elsewhere (a caller that keeps only some of them)."""
        if len(self) >= self._limit:
            self.clear()
        self[raw] = value


# The one int object every route of a VNI holds. An int above 256 is a new object each
# time one is made: 32 bytes a route, 2 MiB more after a churn had moved 64,000 MACs (a
# table that came as records shared them per line). A fabric has a few thousand VNIs;
# past 65,536 (hostile labels) it starts again.
shared_vni = Remembered[int, int](lambda vni: vni, 1 << 16).__getitem__


def _rd_block(_prefix: bytes) -> list[str | None]:
    return [None] * 256


class RdTexts(Remembered[bytes, list[str | None]]):
    """Route distinguishers' texts, interned and kept, in blocks of 256 RDs that share
    their first seven bytes: a fabric numbers its RDs densely per router id (FRR from 1 up,
    this agent by VNI), so 64,000 RDs fill ~300 blocks, 0.5 MiB. A dict keyed by each RD's
    bytes held 5.7 MiB for them, and filled during a churn what a table sent as records
    had left empty. Past ``limit`` blocks (sparse or hostile numbering) it starts again."""

    __slots__ = ()

    def __init__(self, limit: int) -> None:
        super().__init__(_rd_block, limit)

    def text(self, data: bytes, start: int) -> str:
        """The text of the RD at ``data[start : start + 8]``."""
        block = self[data[start : start + 7]]
        text = block[data[start + 7]]
        if text is None:
            text = block[data[start + 7]] = sys.intern(rd_text(data[start : start + 8]))
        return text


# Router ids and VTEP addresses recur in every UPDATE (originator, next hop): a fabric has
# few; a dict hit costs a fifth of the formatting. Interned: the core's paths share them.
address_text = Remembered[bytes, str](
    lambda packed: sys.intern(ipv4_text(packed)), 1 << 14
).__getitem__


def ipv6_text(packed: bytes) -> str:
    """Python's canonical IPv6 text (what ``str(ipaddress.ip_address(...))`` gives).

    inet_ntop is ten times faster and agrees except on the IPv4-mapped and -compatible
    forms, which it writes with a dotted quad: those go through ipaddress."""
    text = socket.inet_ntop(socket.AF_INET6, packed)
    if "." in text:
        return str(ipaddress.IPv6Address(packed))
    return text
