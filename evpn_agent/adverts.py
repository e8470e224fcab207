"""Our own advertisements: the routes this VTEP wants announced, and what was sent.

Declarative, like MetalLB's speaker: the agent states the desired route per key; this table
diffs it against what ExaBGP was told and yields only the changed commands.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from evpn_agent.speaker import grammar
from evpn_agent.targets import RouteTarget


@dataclass(frozen=True, slots=True)
class MacAdvert:
    rd: str
    vni: int
    mac: str
    ip: str | None
    vtep: str
    rts: tuple[RouteTarget, ...]
    seq: int = 0
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class ImetAdvert:
    rd: str
    vni: int
    vtep: str
    rts: tuple[RouteTarget, ...]


Advert = MacAdvert | ImetAdvert
AdvertKey = tuple[int, str, str | None]  # (vni, mac, ip); mac "" for the VNI's type 3


def to_command(advert: Advert, action: grammar.Action) -> grammar.Command:
    rd = grammar.RouteDistinguisher.parse(advert.rd)
    rts = tuple(grammar.RouteTarget.parse(str(rt)) for rt in advert.rts)
    vtep = ipaddress.ip_address(advert.vtep)
    if isinstance(advert, ImetAdvert):
        return grammar.MulticastRoute(action, rd, vtep, advert.vni, vtep, rts)
    mobility = None
    if advert.seq or advert.sticky:
        mobility = grammar.MacMobility(advert.seq, advert.sticky)
    ip = ipaddress.ip_address(advert.ip) if advert.ip else None
    return grammar.MacRoute(action, rd, advert.mac, advert.vni, vtep, ip, rts, mobility)


def render(advert: Advert, *, withdraw: bool = False) -> str:
    if withdraw:
        # A withdraw repeats the announce's RD, label and next hop (ExaBGP's index), no RTs.
        return grammar.render(to_command(advert, grammar.Action.ANNOUNCE).withdrawal())
    return grammar.render(to_command(advert, grammar.Action.ANNOUNCE))


class AdvertTable:
    def __init__(self) -> None:
        self.sent: dict[AdvertKey, Advert] = {}
        self.announced = 0
        self.withdrawn = 0

    def set(self, key: AdvertKey, advert: Advert | None) -> list[str]:
        """Commands that move ExaBGP from what it was told to ``advert`` (None: withdraw)."""
        old = self.sent.get(key)
        if old == advert:
            return []
        lines = []
        if old is not None and (
            advert is None or (old.rd, old.vni, old.vtep) != (advert.rd, advert.vni, advert.vtep)
        ):
            # Same NLRI and label: the new announce replaces the old one in place.
            lines.append(render(old, withdraw=True))
            self.withdrawn += 1
        if advert is None:
            del self.sent[key]
        else:
            self.sent[key] = advert
            lines.append(render(advert))
            self.announced += 1
        return lines

    def keys_of_vni(self, vni: int) -> list[AdvertKey]:
        return [k for k in self.sent if k[0] == vni]
