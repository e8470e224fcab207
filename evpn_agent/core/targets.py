"""Route targets and route distinguishers: how VNIs map to BGP identities.

RTs follow FRR's auto derivation so mixed fabrics import each other's routes: export
``(AS & 0xFFFF):VNI``; import any RT whose local part is the VNI (FRR's ``*:VNI``).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from evpn_agent.model import RouteDistinguisher, RouteTarget


def default_export_rt(local_as: int, vni: int) -> RouteTarget:
    return RouteTarget(local_as & 0xFFFF, vni)


@functools.lru_cache(maxsize=4096)
def default_export_rts(local_as: int, vni: int) -> tuple[RouteTarget, ...]:
    """The export RTs of a VNI without configured ones; cached (one per advert planned),
    and the same tuple each time lets a batch line spell it once."""
    return (default_export_rt(local_as, vni),)


class Importer:
    """Decides which local VNI a received route belongs to, from its RTs alone."""

    def __init__(self, local_vnis: Iterable[int], overrides: Mapping[int, Iterable[RouteTarget]]):
        self._auto: set[int] = set()
        self._exact: dict[RouteTarget, int] = {}
        for vni in local_vnis:
            explicit = tuple(overrides.get(vni, ()))
            if explicit:
                for rt in explicit:
                    self._exact[rt] = vni
            else:
                self._auto.add(vni)

    def vni_for(self, rts: Iterable[RouteTarget]) -> int | None:
        # Asked once per RT set: the RIB keeps the answer with the set's paths.
        for rt in rts:
            vni = self._exact.get(rt)
            if vni is not None:
                return vni
            if rt.number in self._auto:
                return rt.number
        return None


@functools.lru_cache(maxsize=4096)
def route_distinguisher(router_id: str, index: int) -> RouteDistinguisher:
    """Our RD for a VNI: ``router-id:index`` (type 1), the index from assign_rd_indexes.

    Cached: asked for every advert planned, and parsing the router-id is not cheap."""
    return RouteDistinguisher(ipaddress.IPv4Address(router_id), index)


def assign_rd_indexes(vnis: Iterable[int], previous: Mapping[int, int]) -> dict[int, int]:
    """A type-1 RD number per VNI, stable across restarts.

    The number is the VNI itself where it fits the 16 bits a type-1 RD allows, so the RD
    reads naturally. Larger VNIs get an index that no small VNI uses, kept from
    ``previous`` (persisted by the caller) so it survives restarts.
    """
    wanted = sorted(set(vnis))
    small = {v for v in wanted if v <= 0xFFFF}
    out = {v: v for v in small}
    taken = set(small)
    large = [v for v in wanted if v > 0xFFFF]
    for vni in large:
        index = previous.get(vni)
        if index is not None and index not in taken and 0 < index <= 0xFFFF:
            out[vni] = index
            taken.add(index)
    candidate = 0xFFFF
    for vni in large:
        if vni in out:
            continue
        # Count down from the top: small VNIs cluster at the bottom of the range.
        while candidate in taken or candidate in previous.values():
            candidate -= 1
        if candidate <= 0:
            raise ValueError("no free route-distinguisher index left for large VNIs")
        out[vni] = candidate
        taken.add(candidate)
    return out
