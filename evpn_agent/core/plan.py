"""Plan = want - have: for one dirty key, what the kernel should hold (from the routes and
the local view), against what it holds (the mirror). Queries only: nothing here changes
state; the engine applies what a step reports.

A stale entry (held but no longer wanted) is removed only if the sweep is enabled (the
table was complete once) or the entry was wanted earlier in this run: entries from before a
restart wait until the reflectors' tables are complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass
from typing import NamedTuple

from evpn_agent.core.local import LocalMac, LocalView, LocalVni
from evpn_agent.core.mirror import Mirror
from evpn_agent.core.rib import Rib, better
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    Advert,
    AdvertKey,
    DelFdb,
    DelFlood,
    DelNeigh,
    ImetAdvert,
    MacAdvert,
    MacRoute,
    Op,
    RouteDistinguisher,
    RouteTarget,
    build,
)
from evpn_agent.model.keys import BridgeMac, DeviceIp, DeviceMac, VniIp, VniMac, VniVtep


@dataclass(frozen=True, slots=True)
class Sweep:
    """What may be removed: everything stale (``enabled``), or only what this run wanted."""

    enabled: bool
    fdb: Set[DeviceMac]
    flood: Set[tuple[int, str]]
    neigh: Set[DeviceIp]


class FdbStep(NamedTuple):
    # NamedTuples, not frozen dataclasses: one is built per planned key, and a frozen
    # dataclass's __init__ cost a tenth of the planning time of a 100,000-route burst.
    op: Op | None
    entry: DeviceMac  # the entry planned
    wanted: bool  # the entry is wanted (the engine remembers it)
    lost_to: MacRoute | None  # a local MAC the remote route wins against
    local: bool  # the MAC is local here (its own route depends on this step)
    kept: bool = False  # a stale entry stays: the sweep is not enabled yet


class Step(NamedTuple):
    op: Op | None
    wanted: bool
    kept: bool = False  # a stale entry stays: the sweep is not enabled yet


def local_wins(
    view: LocalView, vtep_ip: str, key: VniMac, local: LocalMac, remote: MacRoute
) -> bool:
    """RFC 7432 s15, our claim against the best remote one."""
    seq = view.seq.get(key, 0)
    ours = MacRoute(remote.key, key.vni, vtep_ip, (), seq, local.static)
    return better(ours, remote)


def fdb(
    view: LocalView, rib: Rib, mirror: Mirror, vtep_ip: str, key: VniMac, sweep: Sweep
) -> FdbStep | None:
    """None when the VNI is not here (nothing to plan)."""
    lv = view.vnis.get(key.vni)
    if lv is None:
        return None
    want: str | None = None
    lost_to = None
    best = rib.best_mac(key.vni, key.mac)
    local = view.mac(lv, key.mac) if view.fdb else None
    if best is not None and (local is None or not local_wins(view, vtep_ip, key, local, best)):
        want = best.vtep
        lost_to = best if local is not None else None
    entry = build(DeviceMac, (lv.vxlan_ifindex, key.mac, lv.vlan))
    have = mirror.fdb_dst(entry)
    op: Op | None = None
    kept = False
    if want is not None:
        if want != have:
            # A remote MAC changing VTEP is not a move here: as FRR and RFC 7432 s15.1,
            # only moves seen through local learning count for duplicates.
            op = build(AddFdb, (lv.vxlan_ifindex, key.mac, want, lv.vlan))
    elif have is not None:
        if sweep.enabled or entry in sweep.fdb:
            op = build(DelFdb, (lv.vxlan_ifindex, key.mac, lv.vlan))
        else:
            kept = True
    return build(FdbStep, (op, entry, want is not None, lost_to, local is not None, kept))


def flood(view: LocalView, rib: Rib, mirror: Mirror, key: VniVtep, sweep: Sweep) -> Step | None:
    lv = view.vnis.get(key.vni)
    if lv is None:
        return None
    want = rib.has_flood(key.vni, key.vtep)
    have = key.vtep in mirror.flood.get(lv.vxlan_ifindex, ())
    if want:
        return Step(None if have else AddFlood(lv.vxlan_ifindex, key.vtep), True)
    if have and (sweep.enabled or (lv.vxlan_ifindex, key.vtep) in sweep.flood):
        return Step(DelFlood(lv.vxlan_ifindex, key.vtep), False)
    return Step(None, False, kept=have)


def neigh(view: LocalView, rib: Rib, mirror: Mirror, key: VniIp, sweep: Sweep) -> Step | None:
    lv = view.vnis.get(key.vni)
    if lv is None or lv.svi_ifindex is None:
        return None
    best = rib.best_ip(key.vni, key.ip)
    want = best.key.mac if best is not None else None
    entry = build(DeviceIp, (lv.svi_ifindex, key.ip))
    have = mirror.neigh_mac(entry)
    if want is not None:
        return Step(AddNeigh(lv.svi_ifindex, key.ip, want) if want != have else None, True)
    if have is not None and (sweep.enabled or entry in sweep.neigh):
        return Step(DelNeigh(lv.svi_ifindex, key.ip), False)
    return Step(None, False, kept=have is not None)


def retire(lv: LocalVni, mirror: Mirror, links: Set[int]) -> list[Op]:
    """A VNI left (or moved device): remove our entries from its devices if they still exist."""
    ops: list[Op] = []
    if lv.vxlan_ifindex in links:
        ops += [DelFdb(k.ifindex, k.mac, k.vlan) for k in mirror.fdb_on(lv.vxlan_ifindex)]
        ops += [DelFlood(lv.vxlan_ifindex, d) for d in mirror.flood.get(lv.vxlan_ifindex, ())]
    if lv.svi_ifindex is not None and lv.svi_ifindex in links:
        ops += [DelNeigh(k.ifindex, k.ip) for k in mirror.neigh_on(lv.svi_ifindex)]
    return ops


def adverts(
    view: LocalView,
    rib: Rib,
    keys: Iterable[AdvertKey],
    *,
    vtep_ip: str,
    rd_of: Callable[[int], RouteDistinguisher],
    rts_of: Callable[[int], tuple[RouteTarget, ...]],
    frozen: Callable[[VniMac], bool] | None = None,
) -> Iterator[tuple[AdvertKey, Advert | None]]:
    """Each of ``keys`` with our route for it as it should be announced now (None: not at
    all). A burst of local MACs plans 100,000 keys: the names are looked up once, a VNI's
    RD and route targets once per call. ``frozen``: whether a duplicate MAC is held back
    (None: no MAC is)."""
    vnis, fdb, seqs, neigh = view.vnis, view.fdb, view.seq, view.neigh
    best_mac = rib.best_mac
    per_vni: dict[int, tuple[LocalVni, RouteDistinguisher, tuple[RouteTarget, ...]] | None] = {}
    for key in keys:
        vni, mac, ip = key
        if vni in per_vni:
            found = per_vni[vni]
        else:
            lv = vnis.get(vni)
            found = per_vni[vni] = None if lv is None else (lv, rd_of(vni), rts_of(vni))
        if found is None:
            yield key, None
            continue
        lv, rd, rts = found
        if not mac:
            yield key, ImetAdvert(rd, vni, vtep_ip, rts)
            continue
        local = fdb.get(build(BridgeMac, (lv.bridge_ifindex, lv.vlan, mac)))
        mac_key = build(VniMac, (vni, mac))
        if (
            local is None
            or (frozen is not None and frozen(mac_key))
            or (ip is not None and neigh.get(DeviceIp(lv.svi_ifindex or -1, ip)) != mac)
        ):
            yield key, None
            continue
        best = best_mac(vni, mac)
        if best is not None and not local_wins(view, vtep_ip, mac_key, local, best):
            yield key, None
            continue
        seq = seqs.get(mac_key, 0)
        yield key, build(MacAdvert, (rd, vni, mac, ip, vtep_ip, rts, seq, local.static))
