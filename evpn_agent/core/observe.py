"""Kernel observations into the state: devices and VNIs, local MACs and bindings, and our
own entries as the kernel holds them (the mirror). Changes mark keys dirty for planning."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from evpn_agent.core import plan
from evpn_agent.core.local import LocalMac, LocalVni, local_mac_of
from evpn_agent.core.mirror import Mirror
from evpn_agent.core.rib import Dirty
from evpn_agent.core.state import State
from evpn_agent.core.targets import Importer
from evpn_agent.model import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_FAILED,
    NUD_INCOMPLETE,
    ZERO_MAC,
    AdvertKey,
    BridgeDevice,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    KernelSnapshot,
    Link,
    LinkRemoved,
    LinkUpdated,
    MonitorOverflowed,
    NeighEntry,
    NeighRemoved,
    NeighUpdated,
    build,
    is_host_ip,
)
from evpn_agent.model.keys import BridgeMac, DeviceIp, DeviceMac, VniIp, VniMac, VniVtep
from evpn_agent.model.net import vni_ranges

log = logging.getLogger(__name__)


def load_snapshot(s: State, snap: KernelSnapshot) -> None:
    """Start state, or a resync after lost netlink events: rebuild from a full dump.

    An incomplete dump (changed while the kernel walked it) may lack entries that never
    changed: bindings we knew stay until a complete dump, or their removal event, says
    otherwise, and so do local MACs that no lookup answered for. Otherwise a burst makes
    them flap in BGP.
    """
    view = s.view
    settled = snap.complete and _settled(s)
    before = _belief(s) if settled else None
    kept_fdb: dict[BridgeMac, LocalMac] = {}
    if not snap.complete:
        # The local MACs the dump lacked were looked up one by one (kernel.fdb_probe): keep
        # only those that neither the dump nor a lookup answered for.
        answered = snap.fdb_gone | {
            BridgeMac(e.master, e.vlan, e.mac) for e in snap.fdb if e.master is not None
        }
        kept_fdb = {k: v for k, v in view.fdb.items() if k not in answered}
    kept_neigh = {} if snap.complete else dict(view.neigh)
    old_mirror, old_links = s.mirror, view.links
    # the previous objects where equal, as for the mirror's keys below
    view.links = {
        link.ifindex: old if (old := old_links.get(link.ifindex)) == link else link
        for link in snap.links
    }
    relink(s)
    # Every key is compared with the dump; the changes pending (planned or not) stay apart:
    # what they explain is no drift.
    pending, s.dirty = s.dirty, Dirty()
    s.dirty.vnis.update(view.vnis)  # every key is compared: none listed one by one
    s.mirror = Mirror.rebuilding(old_mirror)
    old_local = before.local_fdb if before is not None else dict(view.fdb)  # a copy
    view.fdb.clear()
    view.clear_neigh()
    for fdb in snap.fdb:
        _fdb_seen(s, fdb)
    for neigh in snap.neigh:
        _neigh_seen(s, neigh)
    for fdb_key, local in kept_fdb.items():
        view.fdb.setdefault(fdb_key, local)
    for neigh_key, mac in kept_neigh.items():
        if neigh_key not in view.neigh:
            view.set_neigh(neigh_key, mac)
    s.mirror.rebuilt()
    if before is not None and _belief(s) == before:
        # The kernel holds exactly what we believed, and nothing is pending: the last
        # full comparison's verdict (everything matched) still holds. Comparing every
        # key again is the periodic reconcile's whole cost when idle (~20 us an entry).
        # The tables go back to the objects they held, equal to the dump's: the dump's
        # copies are then all freed, and a check that changes nothing leaves nothing
        # behind (kept, they pinned Python's memory arenas: RSS grew a step per check).
        s.mirror, view.links = old_mirror, old_links
        view.fdb.clear()
        view.fdb.update(before.local_fdb)
        view.clear_neigh()
        for neigh_key, mac in before.local_neigh.items():
            view.set_neigh(neigh_key, mac)
        s.dirty = pending
        s.drift.still_matched(view.vnis, s.now)
        log.debug("the kernel holds what we believe: matched without comparing")
        return
    for fdb_key, local in old_local.items():  # the previous objects, as for the mirror
        if view.fdb.get(fdb_key) == local:
            del view.fdb[fdb_key]
            view.fdb[fdb_key] = local
    mark_everything(s)
    compare, s.dirty = s.dirty, pending
    s.drift.dump_loaded(compare, snap.complete)


def _settled(s: State) -> bool:
    """Nothing that the last full comparison did not see: it found every VNI matching,
    no write failed since, nothing is planned and not written, stale entries may go."""
    return (
        s.drift.all_matched
        and not s.dirty
        and not s.dirty_adverts
        and not s.retired
        and not s.retries
        and s.peers.sweep_ok
    )


class _Belief(NamedTuple):
    """What we believe the kernel holds: our entries, the devices, the local MACs and
    bindings (the parts of the state a dump rebuilds). The rebuild replaces the mirror and
    the links with new objects, so those are taken as they are; it empties the local
    tables in place, so those are copied."""

    fdb: dict[int, dict[DeviceMac, str]]  # per device (no empty ones)
    flood: dict[int, set[str]]
    neigh: dict[int, dict[DeviceIp, str]]  # per device (no empty ones)
    links: dict[int, Link]
    local_fdb: dict[BridgeMac, LocalMac]
    local_neigh: dict[DeviceIp, str]


def _belief(s: State) -> _Belief:
    m, v = s.mirror, s.view
    flood = {ifindex: vteps for ifindex, vteps in m.flood.items() if vteps}
    return _Belief(m.fdb_by_dev, flood, m.neigh_by_dev, v.links, dict(v.fdb), dict(v.neigh))


def on_kernel(s: State, events: Iterable[KernelEvent], now: float | None = None) -> bool:
    """Apply monitor events; False means events were lost and a dump is needed."""
    if now is not None:
        s.now = now
    relinked = False
    for ev in events:
        if isinstance(ev, FdbUpdated):
            _fdb_seen(s, ev.entry)
        elif isinstance(ev, FdbRemoved):
            _fdb_gone(s, ev.entry)
        elif isinstance(ev, NeighUpdated):
            _neigh_seen(s, ev.entry)
        elif isinstance(ev, NeighRemoved):
            _neigh_gone(s, ev.entry)
        elif isinstance(ev, LinkUpdated):
            old = s.view.links.get(ev.link.ifindex)
            if old == ev.link:
                continue  # nothing we read changed (counters, carrier of a port...)
            s.view.links[ev.link.ifindex] = ev.link
            if (
                isinstance(ev.link, BridgeDevice)
                and isinstance(old, BridgeDevice)
                and old.mac != ev.link.mac
            ):
                _svi_flushed(s, ev.link.ifindex)
            relinked = True
        elif isinstance(ev, LinkRemoved):
            s.view.links.pop(ev.ifindex, None)
            relinked = True
        elif isinstance(ev, MonitorOverflowed):
            s.counters["netlink-overflow"] += 1
            return False
    if relinked:
        relink(s)
    return True


def _fdb_seen(s: State, entry: FdbEntry) -> None:
    view = s.view
    lv = view.by_vxlan.get(entry.ifindex)
    if lv is not None:
        if entry.mac == ZERO_MAC:
            if entry.dst is not None:
                s.mirror.flood.setdefault(entry.ifindex, set()).add(entry.dst)
        elif entry.flags & NTF_EXT_LEARNED and entry.flags & NTF_SELF and entry.dst:
            ours = build(DeviceMac, (entry.ifindex, entry.mac, entry.vlan))
            if s.mirror.fdb_dst(ours) != entry.dst:
                s.mirror.set_fdb(ours, entry.dst)
                if lv.vni not in s.dirty.vnis:  # else planned with all the VNI's keys
                    s.dirty.fdb.add(build(VniMac, (lv.vni, entry.mac)))
        return
    found = local_mac_of(entry, view.vxlan_ports)
    if found is None:
        return
    key, local = found
    if view.fdb.get(key) == local:
        return
    view.fdb[key] = local
    vni = view.vni_of(key)
    if vni is not None:
        local_changed(s, build(VniMac, (vni, key.mac)), learned=True)


def _fdb_gone(s: State, entry: FdbEntry) -> None:
    view = s.view
    lv = view.by_vxlan.get(entry.ifindex)
    if lv is not None:
        # Our own removals left the mirror when acked: an entry still in it went unasked.
        if entry.mac == ZERO_MAC:
            if entry.dst is not None:
                flood = s.mirror.flood.get(entry.ifindex, set())
                vtep = VniVtep(lv.vni, entry.dst)
                if entry.dst in flood:
                    flood.discard(entry.dst)
                    s.drift.noticed.flood.add(vtep)
                s.dirty.flood.add(vtep)
        elif (
            entry.flags & NTF_SELF
            and s.mirror.pop_fdb(DeviceMac(entry.ifindex, entry.mac, entry.vlan)) is not None
        ):
            s.dirty.fdb.add(VniMac(lv.vni, entry.mac))
            s.drift.noticed.fdb.add(VniMac(lv.vni, entry.mac))
        return
    key = build(BridgeMac, (entry.master or 0, entry.vlan, entry.mac))
    local = view.fdb.get(key)
    if local is None or local.port != entry.ifindex:
        return
    del view.fdb[key]
    vni = view.vni_of(key)
    if vni is not None:
        local_changed(s, build(VniMac, (vni, entry.mac)), learned=False)


def _neigh_seen(s: State, entry: NeighEntry) -> None:
    vni = s.view.by_svi.get(entry.ifindex)
    if vni is None:
        return
    key = DeviceIp(entry.ifindex, entry.ip)
    if entry.flags & NTF_EXT_LEARNED:
        if entry.mac:
            s.mirror.set_neigh(key, entry.mac)
    elif not is_host_ip(entry.ip):
        return  # multicast and link-local entries are no host bindings
    elif entry.mac and not entry.state & (NUD_INCOMPLETE | NUD_FAILED):
        # A binding learned here (ARP/ND on the SVI). STALE still counts: the route
        # stays until the kernel really deletes the entry.
        old = s.view.neigh.get(key)
        if old != entry.mac:
            s.view.set_neigh(key, entry.mac)
            s.dirty_adverts.add(AdvertKey(vni, entry.mac, entry.ip))
            if old is not None:  # the IP moved to another MAC
                s.dirty_adverts.add(AdvertKey(vni, old, entry.ip))
    else:
        local_neigh_gone(s, vni, key)


def _neigh_gone(s: State, entry: NeighEntry) -> None:
    vni = s.view.by_svi.get(entry.ifindex)
    if vni is None:
        return
    key = DeviceIp(entry.ifindex, entry.ip)
    if s.mirror.pop_neigh(key):
        s.dirty.neigh.add(VniIp(vni, entry.ip))
        s.drift.noticed.neigh.add(VniIp(vni, entry.ip))
    local_neigh_gone(s, vni, key)


def _svi_flushed(s: State, bridge: int) -> None:
    """A bridge's MAC changed: the kernel flushed its neighbours, ours among them."""
    for lv in s.view.vnis.values():
        if lv.bridge_ifindex == bridge and lv.svi_ifindex is not None:
            for key in s.mirror.neigh_on(lv.svi_ifindex):
                s.mirror.pop_neigh(key)
                s.dirty.neigh.add(VniIp(lv.vni, key.ip))


def local_neigh_gone(s: State, vni: int, key: DeviceIp) -> None:
    mac = s.view.pop_neigh(key)
    if mac is not None:
        s.dirty_adverts.add(AdvertKey(vni, mac, key.ip))


def local_changed(s: State, key: VniMac, *, learned: bool) -> None:
    view = s.view
    vni, mac = key
    remote = s.rib.knows_mac(vni, mac)  # most local MACs have no remote route
    if learned and key not in view.seq:
        # RFC 7432 s15: a MAC learned while a remote route exists moves here with seq+1.
        best = s.rib.best_mac(vni, mac) if remote else None
        view.seq[key] = best.seq + 1 if best is not None else 0
        if best is not None:
            moved(s, key, "this VTEP")
    elif not learned:
        view.seq.pop(key, None)
    lv = view.vnis.get(vni)
    # Our remote entry for the MAC depends on it only if there is one, or a remote route
    # for it: a rack of new local MACs plans no kernel step (half of planning them).
    if (
        lv is None
        or remote
        or s.mirror.fdb_dst(build(DeviceMac, (lv.vxlan_ifindex, mac, lv.vlan))) is not None
    ):
        s.dirty.fdb.add(key)
    s.dirty_adverts.add(build(AdvertKey, (vni, mac, None)))
    if lv is not None and (ips := view.ips_of(lv, mac)):
        s.dirty_adverts.update(AdvertKey(vni, mac, ip) for ip in ips)


def moved(s: State, key: VniMac, where: str) -> None:
    s.counters["mac-moves"] += 1
    if s.dad.moved(key, s.now, where):
        s.counters["duplicate-macs"] += 1


LOG_EACH_VNI_UP_TO = 8  # more VNIs changed at once are logged as one summary line


def _log_change(vni: int, before: LocalVni | None, after: LocalVni | None) -> None:
    if after is None:
        log.info("VNI %d removed (was on %s)", vni, before.vxlan_name if before else "?")
    elif before is None or (before.vxlan_name, before.bridge_name) != (
        after.vxlan_name,
        after.bridge_name,
    ):
        state = "" if after.up else " (down)"
        log.info("VNI %d on %s in bridge %s%s", vni, after.vxlan_name, after.bridge_name, state)
    elif before.up != after.up:
        log.info("VNI %d: %s is %s", vni, after.vxlan_name, "up" if after.up else "down")
    else:  # an index, VLAN or address moved under the same names
        log.debug("VNI %d on %s changed: %s", vni, after.vxlan_name, after)


def _log_summary(
    old: Mapping[int, LocalVni], new: Mapping[int, LocalVni], changed: set[int]
) -> None:
    added = sorted(v for v in changed if v not in old)
    removed = sorted(v for v in changed if v not in new)
    if added:
        log.info("%d VNIs added: %s", len(added), vni_ranges(added))
    if removed:
        log.info("%d VNIs removed: %s", len(removed), vni_ranges(removed))
    if other := len(changed) - len(added) - len(removed):
        log.info("%d VNIs changed (devices up, down or renumbered)", other)
    for vni in sorted(changed):
        log.debug("VNI %d: %s", vni, new.get(vni, "removed"))


def relink(s: State) -> None:
    view = s.view
    old = view.relink()
    new = view.vnis
    changed = {v for v in old.keys() | new.keys() if old.get(v) != new.get(v)}
    if not changed:
        return
    # A start (or a new bridge of many VNIs) changes them all: one line, not 1,000.
    many = len(changed) > LOG_EACH_VNI_UP_TO
    if many:
        _log_summary(old, new, changed)
    for vni in changed:
        before, after = old.get(vni), new.get(vni)
        if before is not None and (after is None or after.vxlan_ifindex != before.vxlan_ifindex):
            _retire(s, before)
        elif before is not None and after is not None and before.up and not after.up:
            # A VXLAN device going down flushes its dynamic FDB entries (ours among
            # them, silently for us): forget them so they are rewritten when it is up.
            s.mirror.forget_fdb(after.vxlan_ifindex)
        if not many:
            _log_change(vni, before, after)
        s.dirty_adverts.add(AdvertKey(vni, "", None))
        s.dirty_adverts.update(s.adverts.keys_of_vni(vni))
        if after is not None:
            for key in view.fdb:
                if (key.bridge, key.vlan) == (after.bridge_ifindex, after.vlan):
                    local_changed(s, VniMac(vni, key.mac), learned=True)
    if old.keys() != new.keys() or any(
        (old[v].vxlan_ifindex != new[v].vxlan_ifindex) for v in old.keys() & new.keys()
    ):
        overrides = {v: t.import_rts for v, t in s.cfg.route_targets.items()}
        s.importer = Importer(new.keys(), overrides)
        s.rib.reimport(s.import_rts, s.dirty)
    for vni in changed & new.keys():
        s.dirty.update(s.rib.keys_of_vni(vni))


def keys_of_vni(s: State, vni: int) -> Dirty:
    """Every key of a local VNI: its routes' and the entries we hold on its devices."""
    keys = s.rib.keys_of_vni(vni)
    lv = s.view.vnis.get(vni)
    if lv is not None:
        keys.fdb.update(VniMac(vni, entry.mac) for entry in s.mirror.fdb_on(lv.vxlan_ifindex))
        keys.flood.update(VniVtep(vni, dst) for dst in s.mirror.flood.get(lv.vxlan_ifindex, ()))
        if lv.svi_ifindex is not None:
            keys.neigh.update(VniIp(vni, n.ip) for n in s.mirror.neigh_on(lv.svi_ifindex))
    return keys


def _retire(s: State, lv: LocalVni) -> None:
    s.retired.extend(plan.retire(lv, s.mirror, s.view.links.keys()))
    # The entries wanted earlier go with the mirror's: a device deleted with its VNI takes
    # them along, and no removal of ours would take them out of these sets (every VNI
    # deleted left its MACs there for the agent's life).
    s.touched_fdb.difference_update(s.mirror.fdb_on(lv.vxlan_ifindex))
    s.touched_flood.difference_update(
        (lv.vxlan_ifindex, vtep) for vtep in s.mirror.flood.get(lv.vxlan_ifindex, ())
    )
    if lv.svi_ifindex is not None:
        s.touched_neigh.difference_update(s.mirror.neigh_on(lv.svi_ifindex))
    s.mirror.forget(lv.vxlan_ifindex)
    if lv.svi_ifindex is not None:
        s.mirror.forget(lv.svi_ifindex)
    s.view.forget_vni(lv.vni)
    s.drift.forget_vni(lv.vni)


def mark_everything(s: State) -> None:
    view = s.view
    s.dirty.vnis.update(view.vnis)  # every key of each: see keys_of_vni
    for vni in view.vnis:
        s.dirty_adverts.add(AdvertKey(vni, "", None))
    for key in view.fdb:
        local_vni = view.vni_of(key)
        if local_vni is not None:
            local_changed(s, VniMac(local_vni, key.mac), learned=True)
    for (svi, ip), mac in view.neigh.items():
        neigh_vni = view.by_svi.get(svi)
        if neigh_vni is not None:
            s.dirty_adverts.add(AdvertKey(neigh_vni, mac, ip))
    s.dirty_adverts.update(s.adverts.sent)
