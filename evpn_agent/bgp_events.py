"""What ExaBGP tells the agent, as typed past-tense facts.

The route key follows RFC 7432: (RD, ethernet tag, MAC, IP) for type 2 and (RD, ethernet
tag, originating IP) for type 3. The label is not part of the key, because withdraws carry
label 0: the VNI and VTEP of a withdrawn route are remembered from its announce.
"""

from __future__ import annotations

from dataclasses import dataclass

from evpn_agent.targets import RouteTarget


@dataclass(frozen=True, slots=True)
class MacKey:
    rd: str
    etag: int
    mac: str
    ip: str | None


@dataclass(frozen=True, slots=True)
class ImetKey:
    rd: str
    etag: int
    origin: str


RouteKey = MacKey | ImetKey


@dataclass(frozen=True, slots=True)
class MacRoute:
    """Type 2; ``vtep`` is the MP_REACH next hop, ``vni`` the raw label."""

    key: MacKey
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]
    seq: int = 0
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class ImetRoute:
    """Type 3; ``vtep`` is the PMSI tunnel endpoint, ``vni`` the PMSI label."""

    key: ImetKey
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]


Route = MacRoute | ImetRoute


@dataclass(frozen=True, slots=True)
class RouteAnnounced:
    peer: str
    route: Route


@dataclass(frozen=True, slots=True)
class RouteWithdrawn:
    peer: str
    key: RouteKey


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
    peer: str


@dataclass(frozen=True, slots=True)
class CommandAnswered:
    ok: bool


@dataclass(frozen=True, slots=True)
class LineRejected:
    reason: str
    detail: str


BgpEvent = (
    RouteAnnounced
    | RouteWithdrawn
    | RouteRejected
    | SessionUp
    | SessionDown
    | EndOfRib
    | CommandAnswered
    | LineRejected
)
