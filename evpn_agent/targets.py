"""Route targets and route distinguishers: how VNIs map to BGP identities.

RTs follow FRR's auto derivation so mixed fabrics import each other's routes: export
``(AS & 0xFFFF):VNI``; import any RT whose local part is the VNI (FRR's ``*:VNI``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class RouteTarget:
    """An extended-community RT ``admin:value``; admin is an ASN or an IPv4 address."""

    admin: str
    value: int

    def __str__(self) -> str:
        return f"{self.admin}:{self.value}"


def parse_route_target(text: str) -> RouteTarget:
    admin, sep, value = text.strip().rpartition(":")
    if not sep or not admin or not value.isdigit():
        raise ValueError(f"route target {text!r} is not ASN:N or IPv4:N")
    number = int(value)
    if admin.isdigit():
        asn = int(admin)
        if asn > 0xFFFFFFFF:
            raise ValueError(f"route target {text!r}: AS {asn} does not fit 32 bits")
        limit = 0xFFFFFFFF if asn <= 0xFFFF else 0xFFFF
    else:
        try:
            ipaddress.IPv4Address(admin)
        except ValueError:
            raise ValueError(f"route target {text!r} is not ASN:N or IPv4:N") from None
        limit = 0xFFFF
    if number > limit:
        raise ValueError(f"route target {text!r}: local part {number} is larger than {limit}")
    return RouteTarget(admin, number)


def default_export_rt(local_as: int, vni: int) -> RouteTarget:
    return RouteTarget(str(local_as & 0xFFFF), vni)


def parse_rt_strings(strings: Iterable[str]) -> tuple[RouteTarget, ...]:
    """RTs from ExaBGP's ``target:65000:100`` community strings; other communities skipped."""
    out = []
    for s in strings:
        if s.startswith("target:"):
            try:
                out.append(parse_route_target(s[7:]))
            except ValueError:
                continue
    return tuple(out)


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
        for rt in rts:
            vni = self._exact.get(rt)
            if vni is not None:
                return vni
            if rt.value in self._auto:
                return rt.value
        return None


def route_distinguisher(router_id: str, index: int) -> str:
    return f"{router_id}:{index}"


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
