"""EVPN in BGP terms: route targets and distinguishers, received routes and their keys, what
happened on a session, and the routes this VTEP advertises.

Route keys follow RFC 7432: (RD, ethernet tag, MAC, IP) for type 2 and (RD, ethernet tag,
originating IP) for type 3. The label is not part of a key because withdraws carry label 0:
the VNI and VTEP of a withdrawn route are remembered from its announce.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Self

MAX_U16 = (1 << 16) - 1
MAX_U32 = (1 << 32) - 1
_DIGITS = re.compile(r"[0-9]+")

# -- identities ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AdminNumber:
    """``admin:number`` as route distinguishers and route targets use it (RFC 4360/4364).

    ``admin`` is an IPv4 address (type 1: 16-bit number) or an AS number: below 65536 it
    is type 0 (32-bit number), otherwise type 2 (4-byte AS, 16-bit number).
    """

    admin: ipaddress.IPv4Address | int
    number: int

    WHAT: ClassVar[str] = "admin:number"

    def __post_init__(self) -> None:
        what = self.WHAT
        if isinstance(self.admin, bool) or not isinstance(self.admin, ipaddress.IPv4Address | int):
            raise ValueError(f"{what} administrator must be an IPv4 address or an AS number")
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 0:
            raise ValueError(f"{what} number must be a non-negative int, got {self.number!r}")
        if isinstance(self.admin, int) and not 0 <= self.admin <= MAX_U32:
            raise ValueError(f"{what} AS number {self.admin} is out of range (0..{MAX_U32})")
        limit = MAX_U32 if self.type == 0 else MAX_U16
        if self.number > limit:
            raise ValueError(
                f"{what} {self}: the number must be 0..{limit} "
                f"when the administrator is {self._admin_kind()}"
            )

    def _admin_kind(self) -> str:
        if isinstance(self.admin, ipaddress.IPv4Address):
            return "an IPv4 address"
        return "a 2-byte AS number" if self.admin <= MAX_U16 else "a 4-byte AS number"

    @property
    def type(self) -> int:
        """RFC 4364 type: 0 (2-byte AS), 1 (IPv4), 2 (4-byte AS)."""
        if isinstance(self.admin, ipaddress.IPv4Address):
            return 1
        return 0 if self.admin <= MAX_U16 else 2

    def __str__(self) -> str:
        return f"{self.admin}:{self.number}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """``192.0.2.1:N`` or ``ASN:N``; raises ValueError naming what is wrong."""
        return _parse(cls, text)  # type: ignore[return-value,arg-type]


def parse_number(text: str, what: str, maximum: int) -> int:
    # int() alone accepts "+5", " 5", "1_000" and non-ASCII digits: be strict.
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{what} must be a decimal number, got {text!r}")
    value = int(text)
    if value > maximum:
        raise ValueError(f"{what} {value} is out of range (0..{maximum})")
    return value


@functools.lru_cache(maxsize=4096)  # the same few RTs and RDs arrive on every route
def _parse(cls: type[_AdminNumber], text: str) -> _AdminNumber:
    what = cls.WHAT
    admin_text, sep, number_text = text.rpartition(":")
    if not sep or not admin_text:
        raise ValueError(f"{what} must look like 192.0.2.1:N or ASN:N, got {text!r}")
    admin: ipaddress.IPv4Address | int
    if "." in admin_text:
        try:
            admin = ipaddress.IPv4Address(admin_text)
        except ValueError:
            raise ValueError(f"{what} {text!r}: {admin_text!r} is not an IPv4 address") from None
    else:
        admin = parse_number(admin_text, f"{what} AS number", MAX_U32)
    return cls(admin, parse_number(number_text, f"{what} number", MAX_U32))


@dataclass(frozen=True, slots=True)
class RouteTarget(_AdminNumber):
    WHAT: ClassVar[str] = "route target"


@dataclass(frozen=True, slots=True)
class RouteDistinguisher(_AdminNumber):
    WHAT: ClassVar[str] = "route distinguisher"


# -- received routes -----------------------------------------------------------------------


# Route keys and routes are NamedTuples, not frozen dataclasses: every received route
# builds both, and the RIB hashes and compares keys, which a tuple does in C (a tenth of a
# bulk receive's time went to the generated __init__, __hash__ and __eq__). Lengths differ
# between the two kinds, so a MacKey never equals an ImetKey, nor a MacRoute an ImetRoute.
class MacKey(NamedTuple):
    rd: str
    etag: int
    mac: str
    ip: str | None


class ImetKey(NamedTuple):
    rd: str
    etag: int
    origin: str


RouteKey = MacKey | ImetKey


class MacRoute(NamedTuple):
    """Type 2; ``vtep`` is the MP_REACH next hop, ``vni`` the raw label."""

    key: MacKey
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]
    seq: int = 0
    sticky: bool = False


class ImetRoute(NamedTuple):
    """Type 3; ``vtep`` is the PMSI tunnel endpoint, ``vni`` the PMSI label."""

    key: ImetKey
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]


Route = MacRoute | ImetRoute


class PathId(NamedTuple):
    """One peer's copy of a route: each reflector's copy is its own path."""

    peer: str
    key: RouteKey


def describe_key(key: RouteKey) -> str:
    if isinstance(key, MacKey):
        ip = f" ip {key.ip}" if key.ip else ""
        return f"type-2 rd {key.rd} mac {key.mac}{ip}"
    return f"type-3 rd {key.rd} origin {key.origin}"


# -- what the speaker reports --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteAnnounced:
    peer: str
    route: Route


@dataclass(frozen=True, slots=True)
class RoutesAnnounced:
    """A run of announcements from one peer, in order (an UPDATE's, a records line's): one
    event and one dispatch for the run, not one each."""

    peer: str
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RoutesWithdrawn:
    """The withdraws of one UPDATE (or of a line's run of them) from one peer, in order:
    one event for a reflector's ~1,700, not an event, a dispatch and a RIB call each."""

    peer: str
    keys: tuple[RouteKey, ...]


@dataclass(frozen=True, slots=True)
class RouteRejected:
    """A route we will not use; ``reason`` is a short counter name."""

    peer: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class SessionUp:
    peer: str


@dataclass(frozen=True, slots=True)
class SessionDown:
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """The peer's table is complete: End-of-RIB (RFC 4724), or with ``refresh`` the
    End-of-Route-Refresh that closes the answer to our route refresh (RFC 7313)."""

    peer: str
    refresh: bool = False


@dataclass(frozen=True, slots=True)
class PeerOpened:
    """The capabilities in a peer's OPEN: they tell which table markers it will send.

    ``graceful_restart`` (RFC 4724): we advertise it too, so it is negotiated, and
    End-of-RIB follows the initial table (GoBGP sends it to no one else).
    ``enhanced_refresh`` (RFC 7313): a route refresh is answered between BoRR and EoRR.
    """

    peer: str
    graceful_restart: bool
    enhanced_refresh: bool


@dataclass(frozen=True, slots=True)
class RefreshBegun:
    """Beginning-of-Route-Refresh: an End-of-Route-Refresh will close the table."""

    peer: str


@dataclass(frozen=True, slots=True)
class SessionReported:
    """The speaker's own account of a session, asked for when this process starts (a
    respawned core saw neither the OPEN nor the session come up).

    ``uptime``: seconds up (or down); ``graceful_restart``: the peer advertised it,
    None when the speaker does not say.
    """

    peer: str
    up: bool
    uptime: float
    graceful_restart: bool | None


@dataclass(frozen=True, slots=True)
class LineRejected:
    """Input from the speaker that could not be read at all."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class AdvertRefused:
    """The speaker refused to send one of our changes: plan it again after a backoff."""

    change: AdvertChange


BgpEvent = (
    RouteAnnounced
    | RoutesAnnounced
    | RoutesWithdrawn
    | RouteRejected
    | SessionUp
    | SessionDown
    | EndOfRib
    | PeerOpened
    | RefreshBegun
    | SessionReported
    | LineRejected
    | AdvertRefused
)


def one_per_route(events: Iterable[BgpEvent]) -> list[BgpEvent]:
    """``events`` with each run of announces as a RouteAnnounced per route: what the
    decoders give, told in one form (ExaBGP's JSON comes a route at a time, the wire
    decoders' in runs)."""
    out: list[BgpEvent] = []
    for ev in events:
        if type(ev) is RoutesAnnounced:
            out.extend(RouteAnnounced(ev.peer, route) for route in ev.routes)
        else:
            out.append(ev)
    return out


def route_count(events: Sequence[BgpEvent]) -> int:
    """How many routes ``events`` carry: each event one, a run of withdraws or announces
    its keys or routes."""
    count = len(events)
    for ev in events:
        if type(ev) is RoutesWithdrawn:
            count += len(ev.keys) - 1
        elif type(ev) is RoutesAnnounced:
            count += len(ev.routes) - 1
    return count


# -- our own routes ------------------------------------------------------------------------


class AdvertKey(NamedTuple):
    """One route of ours: a MAC (and IP) in a VNI, or the VNI's type 3 (mac "")."""

    vni: int
    mac: str
    ip: str | None


# Our routes are NamedTuples for the reason the received ones are: a burst of local MACs
# builds one per MAC in the core, and again in the launcher from the batch line.
class MacAdvert(NamedTuple):
    rd: RouteDistinguisher
    vni: int
    mac: str
    ip: str | None
    vtep: str
    rts: tuple[RouteTarget, ...]
    seq: int = 0
    sticky: bool = False


class ImetAdvert(NamedTuple):
    rd: RouteDistinguisher
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]


Advert = MacAdvert | ImetAdvert


class AdvertChange(NamedTuple):
    """Tell the speaker to announce ``advert``, or to withdraw it (``withdraw``).

    A NamedTuple, not a frozen dataclass: one is built per advert on both sides of the
    pipe (the core plans it, the launcher parses it). Its first field is an advert, so it
    equals no other pair of the model."""

    advert: Advert
    withdraw: bool = False
