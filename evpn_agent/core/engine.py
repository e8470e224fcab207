"""The engine: the one owner of the agent's state. Inputs in (kernel observations, speaker
events, the time), work out (kernel ops and advert changes), and its next deadline.

No I/O happens here. Work is incremental: every change marks keys dirty, and only dirty keys
are planned, so one route costs the same whether the table holds ten routes or a hundred
thousand. ``take_work`` hands out both kinds of work at once, so callers need not know in
which order to ask for them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from evpn_agent.core import plan
from evpn_agent.core.adverts import AdvertTable
from evpn_agent.core.dad import DuplicateDetector
from evpn_agent.core.local import LocalView, LocalVni, local_mac_of
from evpn_agent.core.mirror import Mirror
from evpn_agent.core.peers import Peers
from evpn_agent.core.retries import Retries
from evpn_agent.core.rib import Dirty, Rib
from evpn_agent.core.targets import Importer, default_export_rt, route_distinguisher
from evpn_agent.model import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_FAILED,
    NUD_INCOMPLETE,
    ZERO_MAC,
    AddFdb,
    AddFlood,
    AddNeigh,
    Advert,
    AdvertChange,
    AdvertKey,
    AdvertRefused,
    BgpEvent,
    BridgeDevice,
    Config,
    DelFdb,
    DelFlood,
    EndOfRib,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    ImetAdvert,
    KernelEvent,
    KernelSnapshot,
    LineRejected,
    LinkRemoved,
    LinkUpdated,
    MacRoute,
    Managed,
    MonitorOverflowed,
    NeighEntry,
    NeighRemoved,
    NeighUpdated,
    Op,
    PathId,
    Route,
    RouteAnnounced,
    RouteDistinguisher,
    RouteRejected,
    RouteTarget,
    RouteWithdrawn,
    SessionDown,
    SessionUp,
    is_host_ip,
)
from evpn_agent.model.keys import BridgeMac, DeviceIp, DeviceMac, VniIp, VniMac, VniVtep

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryKey:
    """A refused write or announce, by the dirty key that plans it again."""

    kind: str  # "fdb", "flood", "neigh" or "advert"
    key: VniMac | VniVtep | VniIp | AdvertKey


@dataclass
class Work:
    ops: list[Op] = field(default_factory=list)
    changes: list[AdvertChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.ops or self.changes)


class Engine:
    def __init__(self, cfg: Config, *, router_id: str, vtep_ip: str, now: float) -> None:
        self.cfg = cfg
        self.router_id = router_id
        self.vtep_ip = vtep_ip
        self.rd_index: dict[int, int] = {}  # persisted by the caller (large VNIs)
        self.view = LocalView(cfg.vnis)
        self.importer = Importer((), {})
        self.rib = Rib(self._import)
        self.mirror = Mirror()
        self.adverts = AdvertTable()
        self.peers = Peers(started=now, sweep_delay=cfg.sweep_delay)
        self.dad = DuplicateDetector(cfg.duplicate_detection)
        self.counters: Counter[str] = Counter()
        self._now = now
        self._held: set[PathId] = set()  # paths kept while no route reflector is up
        self._held_since: float | None = None
        self._dirty = Dirty()
        self._dirty_adverts: set[AdvertKey] = set()
        self._ops: list[Op] = []  # removals of a retired VNI, planned when it left
        # entries wanted at some point in this run: stale ones may go before the sweep
        self._touched_fdb: set[DeviceMac] = set()
        self._touched_flood: set[tuple[int, str]] = set()
        self._touched_neigh: set[DeviceIp] = set()
        self._retries: Retries[RetryKey] = Retries()

    # -- identity ------------------------------------------------------------------------

    @property
    def vnis(self) -> dict[int, LocalVni]:
        return self.view.vnis

    def rd(self, vni: int) -> RouteDistinguisher:
        return route_distinguisher(self.router_id, self.rd_index.get(vni, vni & 0xFFFF))

    def export_rts(self, vni: int) -> tuple[RouteTarget, ...]:
        override = self.cfg.route_targets.get(vni)
        if override is not None and override.export_rts:
            return override.export_rts
        return (default_export_rt(self.cfg.local_as, vni),)

    def managed(self) -> Managed:
        """Where our entries live: the kernel edge drops the echoes of our writes there."""
        return self.view.managed()

    # -- inputs: kernel ------------------------------------------------------------------

    def load_snapshot(self, snap: KernelSnapshot) -> None:
        """Start state, or a resync after lost netlink events: rebuild from a full dump.

        An incomplete dump (changed while the kernel walked it) may lack entries that never
        changed: local MACs and bindings we knew stay until a complete dump, or their
        removal event, says otherwise. Otherwise a burst makes them flap in BGP.
        """
        view = self.view
        kept_fdb = {} if snap.complete else dict(view.fdb)
        kept_neigh = {} if snap.complete else dict(view.neigh)
        view.links = {link.ifindex: link for link in snap.links}
        self._relink()
        self.mirror = Mirror()
        view.fdb.clear()
        view.neigh.clear()
        for fdb in snap.fdb:
            self._fdb_seen(fdb)
        for neigh in snap.neigh:
            self._neigh_seen(neigh)
        for fdb_key, local in kept_fdb.items():
            view.fdb.setdefault(fdb_key, local)
        for neigh_key, mac in kept_neigh.items():
            view.neigh.setdefault(neigh_key, mac)
        self._mark_everything()

    def on_kernel(self, events: Iterable[KernelEvent], now: float | None = None) -> bool:
        """Apply monitor events; False means events were lost and a dump is needed."""
        if now is not None:
            self._now = now
        relink = False
        for ev in events:
            if isinstance(ev, FdbUpdated):
                self._fdb_seen(ev.entry)
            elif isinstance(ev, FdbRemoved):
                self._fdb_gone(ev.entry)
            elif isinstance(ev, NeighUpdated):
                self._neigh_seen(ev.entry)
            elif isinstance(ev, NeighRemoved):
                self._neigh_gone(ev.entry)
            elif isinstance(ev, LinkUpdated):
                old = self.view.links.get(ev.link.ifindex)
                self.view.links[ev.link.ifindex] = ev.link
                if (
                    isinstance(ev.link, BridgeDevice)
                    and isinstance(old, BridgeDevice)
                    and old.mac != ev.link.mac
                ):
                    self._svi_flushed(ev.link.ifindex)
                relink = True
            elif isinstance(ev, LinkRemoved):
                self.view.links.pop(ev.ifindex, None)
                relink = True
            elif isinstance(ev, MonitorOverflowed):
                self.counters["netlink-overflow"] += 1
                return False
        if relink:
            self._relink()
        return True

    def _fdb_seen(self, entry: FdbEntry) -> None:
        view = self.view
        lv = view.by_vxlan.get(entry.ifindex)
        if lv is not None:
            if entry.mac == ZERO_MAC:
                if entry.dst is not None:
                    self.mirror.flood.setdefault(entry.ifindex, set()).add(entry.dst)
            elif entry.flags & NTF_EXT_LEARNED and entry.flags & NTF_SELF and entry.dst:
                ours = DeviceMac(entry.ifindex, entry.mac, entry.vlan)
                if self.mirror.fdb.get(ours) != entry.dst:
                    self.mirror.fdb[ours] = entry.dst
                    self._dirty.fdb.add(VniMac(lv.vni, entry.mac))
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
            self._local_changed(VniMac(vni, key.mac), learned=True)

    def _fdb_gone(self, entry: FdbEntry) -> None:
        view = self.view
        lv = view.by_vxlan.get(entry.ifindex)
        if lv is not None:
            if entry.mac == ZERO_MAC:
                if entry.dst is not None:
                    self.mirror.flood.get(entry.ifindex, set()).discard(entry.dst)
                    self._dirty.flood.add(VniVtep(lv.vni, entry.dst))
            elif (
                entry.flags & NTF_SELF
                and self.mirror.fdb.pop(DeviceMac(entry.ifindex, entry.mac, entry.vlan), None)
                is not None
            ):
                self._dirty.fdb.add(VniMac(lv.vni, entry.mac))
            return
        key = BridgeMac(entry.master or 0, entry.vlan, entry.mac)
        local = view.fdb.get(key)
        if local is None or local.port != entry.ifindex:
            return
        del view.fdb[key]
        vni = view.vni_of(key)
        if vni is not None:
            self._local_changed(VniMac(vni, entry.mac), learned=False)

    def _neigh_seen(self, entry: NeighEntry) -> None:
        vni = self.view.by_svi.get(entry.ifindex)
        if vni is None:
            return
        key = DeviceIp(entry.ifindex, entry.ip)
        if entry.flags & NTF_EXT_LEARNED:
            if entry.mac:
                self.mirror.neigh[key] = entry.mac
        elif not is_host_ip(entry.ip):
            return  # multicast and link-local entries are no host bindings
        elif entry.mac and not entry.state & (NUD_INCOMPLETE | NUD_FAILED):
            # A binding learned here (ARP/ND on the SVI). STALE still counts: the route
            # stays until the kernel really deletes the entry.
            old = self.view.neigh.get(key)
            if old != entry.mac:
                self.view.neigh[key] = entry.mac
                self._dirty_adverts.add(AdvertKey(vni, entry.mac, entry.ip))
                if old is not None:  # the IP moved to another MAC
                    self._dirty_adverts.add(AdvertKey(vni, old, entry.ip))
        else:
            self._local_neigh_gone(vni, key)

    def _neigh_gone(self, entry: NeighEntry) -> None:
        vni = self.view.by_svi.get(entry.ifindex)
        if vni is None:
            return
        key = DeviceIp(entry.ifindex, entry.ip)
        if self.mirror.neigh.pop(key, ""):
            self._dirty.neigh.add(VniIp(vni, entry.ip))
        self._local_neigh_gone(vni, key)

    def _svi_flushed(self, bridge: int) -> None:
        """A bridge's MAC changed: the kernel flushed its neighbours, ours among them."""
        for lv in self.view.vnis.values():
            if lv.bridge_ifindex == bridge and lv.svi_ifindex is not None:
                for key in self.mirror.neigh_on(lv.svi_ifindex):
                    del self.mirror.neigh[key]
                    self._dirty.neigh.add(VniIp(lv.vni, key.ip))

    def _local_neigh_gone(self, vni: int, key: DeviceIp) -> None:
        mac = self.view.neigh.pop(key, None)
        if mac is not None:
            self._dirty_adverts.add(AdvertKey(vni, mac, key.ip))

    def _local_changed(self, key: VniMac, *, learned: bool) -> None:
        view = self.view
        if learned and key not in view.seq:
            # RFC 7432 s15: a MAC learned while a remote route exists moves here with seq+1.
            best = self.rib.best_mac(key.vni, key.mac)
            view.seq[key] = best.seq + 1 if best is not None else 0
            if best is not None:
                self._moved(key, "this VTEP")
        elif not learned:
            view.seq.pop(key, None)
        self._dirty.fdb.add(key)
        self._dirty_adverts.add(AdvertKey(key.vni, key.mac, None))
        lv = view.vnis.get(key.vni)
        if lv is not None:
            self._dirty_adverts.update(
                AdvertKey(key.vni, key.mac, ip) for ip in view.ips_of(lv, key.mac)
            )

    def _moved(self, key: VniMac, where: str) -> None:
        self.counters["mac-moves"] += 1
        if self.dad.moved(key, self._now, where):
            self.counters["duplicate-macs"] += 1

    # -- VNIs ----------------------------------------------------------------------------

    def _relink(self) -> None:
        view = self.view
        old = view.relink()
        new = view.vnis
        changed = {v for v in old.keys() | new.keys() if old.get(v) != new.get(v)}
        if not changed:
            return
        for vni in changed:
            before, after = old.get(vni), new.get(vni)
            if before is not None and (
                after is None or after.vxlan_ifindex != before.vxlan_ifindex
            ):
                self._retire(before)
            elif before is not None and after is not None and before.up and not after.up:
                # A VXLAN device going down flushes its dynamic FDB entries (ours among
                # them, silently for us): forget them so they are rewritten when it is up.
                self.mirror.forget_fdb(after.vxlan_ifindex)
            if after is None:
                log.info("VNI %d removed (was on %s)", vni, before.vxlan_name if before else "?")
            else:
                log.info("VNI %d on %s in bridge %s", vni, after.vxlan_name, after.bridge_name)
            self._dirty_adverts.add(AdvertKey(vni, "", None))
            self._dirty_adverts.update(self.adverts.keys_of_vni(vni))
            if after is not None:
                for key in view.fdb:
                    if (key.bridge, key.vlan) == (after.bridge_ifindex, after.vlan):
                        self._local_changed(VniMac(vni, key.mac), learned=True)
        if old.keys() != new.keys() or any(
            (old[v].vxlan_ifindex != new[v].vxlan_ifindex) for v in old.keys() & new.keys()
        ):
            overrides = {v: t.import_rts for v, t in self.cfg.route_targets.items()}
            self.importer = Importer(new.keys(), overrides)
            self.rib.reimport(self._import, self._dirty)
        for vni in changed & new.keys():
            self._dirty.update(self.rib.keys_of_vni(vni))

    def _retire(self, lv: LocalVni) -> None:
        self._ops.extend(plan.retire(lv, self.mirror, self.view.links.keys()))
        self.mirror.forget(lv.vxlan_ifindex)
        if lv.svi_ifindex is not None:
            self.mirror.forget(lv.svi_ifindex)
        self.view.forget_vni(lv.vni)

    def _import(self, route: Route) -> int | None:
        return self.importer.vni_for(route.rts)

    # -- inputs: BGP ---------------------------------------------------------------------

    def on_bgp(self, events: Iterable[BgpEvent], now: float) -> None:
        self._now = now
        peers = self.peers
        for ev in events:
            if isinstance(ev, RouteAnnounced):
                self._announced(ev.peer, ev.route, now)
            elif isinstance(ev, RouteWithdrawn):
                peers.seen(ev.peer)
                if self.rib.withdraw(ev.peer, ev.key, self._dirty):
                    peers.last_route_change = now
                self.counters["routes-withdrawn"] += 1
            elif isinstance(ev, RouteRejected | LineRejected):
                self._reject(ev.reason, ev.detail)
            elif isinstance(ev, AdvertRefused):
                self._refused(ev)
            elif isinstance(ev, SessionUp):
                peers.came_up(ev.peer, now)
            elif isinstance(ev, SessionDown):
                if peers.went_down(ev.peer, ev.reason, now):
                    self._peer_lost(ev.peer, now)
            elif isinstance(ev, EndOfRib):
                peers.seen(ev.peer).eor = True
                if self._held:
                    # A reflector's table is complete again: what it did not repeat of
                    # the routes we held is gone.
                    self._drop_held(f"End-of-RIB from {ev.peer}")

    def _refused(self, ev: AdvertRefused) -> None:
        # Loud once, then counted: a broken speaker must not look healthy, nor flood the log.
        level = logging.WARNING if not self.counters["bgp-refused"] else logging.DEBUG
        self.counters["bgp-refused"] += 1
        key = advert_key(ev.change.advert)
        if ev.change.withdraw:
            log.log(level, "the speaker refused to withdraw %s (see its log)", key)
            return  # the next announce of the key, or the sync after a respawn, settles it
        if self.adverts.forget(key, ev.change.advert):
            delay = self._retries.failed(RetryKey("advert", key), self._now)
            log.log(level, "the speaker refused to announce %s (see its log): again in %gs",
                    key, delay)  # fmt: skip

    def _peer_lost(self, peer: str, now: float) -> None:
        paths = self.rib.peer_paths(peer)
        if self.peers.others_complete(peer) or not self.cfg.route_hold_time or not paths:
            dropped = self.rib.drop_peer(peer, self._dirty)
            if dropped:
                log.info("dropped %d routes learned from %s", dropped, peer)
            return
        # No complete reflector left: keep forwarding on what we know for a while, as
        # graceful restart would; the routes go at the hold time or when a table returns.
        self._held.update(paths)
        self._held_since = self._held_since or now
        log.warning(
            "no route reflector left: keeping %d routes for %gs",
            len(paths),
            self.cfg.route_hold_time,
        )

    def _drop_held(self, why: str) -> None:
        gone = 0
        for pid in self._held:
            gone += self.rib.withdraw(pid.peer, pid.key, self._dirty)
        self._held.clear()
        self._held_since = None
        if gone:
            log.info("removed %d held routes (%s)", gone, why)

    def _announced(self, peer: str, route: Route, now: float) -> None:
        if route.vtep == self.vtep_ip:
            self._reject("own-vtep", f"route {route.key} names our own VTEP {route.vtep}")
            return
        if isinstance(route, MacRoute) and not self._within_limits(route):
            return
        self.peers.seen(peer)  # an update proves the session is up
        self.counters["routes-received"] += 1
        if self._held:
            self._held.discard(PathId(peer, route.key))  # repeated: no longer stale
        if not self.rib.announce(peer, route, self._dirty):
            self.counters["rejected:vni-not-local"] += 1
        self.peers.last_route_change = now

    def _within_limits(self, route: MacRoute) -> bool:
        vni = self.importer.vni_for(route.rts)
        if vni is None or self.rib.knows_mac(vni, route.key.mac):
            return True  # not imported, or a MAC we already hold: no new entry
        if self.rib.count_macs(vni) >= self.cfg.mac_limit_per_vni:
            limit = f"VNI {vni} holds {self.cfg.mac_limit_per_vni} remote MACs (mac-limit-per-vni)"
        elif self.rib.mac_total >= self.cfg.mac_limit:
            limit = f"{self.cfg.mac_limit} remote MACs in all (mac-limit)"
        else:
            return True
        if self.counters["rejected:mac-limit"] == 0 or log.isEnabledFor(logging.DEBUG):
            log.warning("refusing new MAC %s: %s", route.key.mac, limit)
        self.counters["rejected:mac-limit"] += 1
        return False

    def _reject(self, reason: str, detail: str) -> None:
        self.counters[f"rejected:{reason}"] += 1
        # Debug only: a hostile peer must not be able to flood the log.
        log.debug("ignored (%s): %s", reason, detail)

    # -- time ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``tick`` has something to do, if nothing else happens before."""
        times = [
            self._retries.next_due(),
            self.dad.next_deadline(),
            self.peers.sweep_due(),
            None if self._held_since is None else self._held_since + self.cfg.route_hold_time,
        ]
        return min((t for t in times if t is not None), default=None)

    def tick(self, now: float) -> None:
        """Retry refused writes, end freezes, expire held routes, enable the sweep."""
        self._now = now
        for retry in self._retries.due(now):
            self.counters["kernel-retries" if retry.kind != "advert" else "bgp-retries"] += 1
            key = retry.key
            if isinstance(key, AdvertKey):
                self._dirty_adverts.add(key)
            elif retry.kind == "fdb":
                self._dirty.fdb.add(VniMac(*key))
            elif retry.kind == "flood":
                self._dirty.flood.add(VniVtep(*key))
            else:
                self._dirty.neigh.add(VniIp(*key))
        for key in self.dad.expire(now):
            log.info("MAC %s in VNI %d: freeze over, followed again", key.mac, key.vni)
            self._dirty.fdb.add(key)
            self._dirty_adverts.add(AdvertKey(key.vni, key.mac, None))
        if self._held_since is not None and now - self._held_since >= self.cfg.route_hold_time:
            self._drop_held(f"no route reflector for {self.cfg.route_hold_time:g}s")
        due = self.peers.sweep_due()
        if due is not None and now >= due:
            log.info("routing table complete: removing stale kernel entries")
            self.peers.sweep_ok = True
            self._mark_everything()

    # -- outputs -------------------------------------------------------------------------

    def pending(self) -> bool:
        return bool(self._dirty or self._dirty_adverts or self._ops)

    def take_work(self) -> Work:
        """Kernel ops and advert changes for everything dirty; dirty sets are emptied."""
        work = Work(ops=self._plan_kernel())
        dirty, self._dirty_adverts = self._dirty_adverts, set()
        for key in dirty:
            work.changes.extend(self.adverts.set(key, self._desired(key)))
        if self._retries:
            # A refused announce planned again is settled: refused anew, it backs off anew.
            self._retries.forget([k for k in self._retries.in_flight() if k.kind == "advert"])
        return work

    def _plan_kernel(self) -> list[Op]:
        dirty, self._dirty = self._dirty, Dirty()
        ops, self._ops = self._ops, []
        sweep = plan.Sweep(
            self.peers.sweep_ok, self._touched_fdb, self._touched_flood, self._touched_neigh
        )
        for key in dirty.fdb:
            if self.dad.frozen(key, self._now):
                continue  # a frozen duplicate keeps its last entry
            step = plan.fdb(self.view, self.rib, self.mirror, self.vtep_ip, key, sweep)
            if step is None:
                continue
            if step.wanted is not None:
                self._touched_fdb.add(step.wanted)
            if step.lost_to is not None:
                self._lost_to_remote(key, step.lost_to)
            if step.op is not None:
                ops.append(step.op)
            # Our own route for the MAC depends on who won; a purely remote MAC has none.
            advert = AdvertKey(key.vni, key.mac, None)
            if step.local or advert in self.adverts.sent:
                self._dirty_adverts.add(advert)
        for fkey in dirty.flood:
            fstep = plan.flood(self.view, self.rib, self.mirror, fkey, sweep)
            if fstep is not None:
                if fstep.wanted:
                    self._touched_flood.add((self.view.vnis[fkey.vni].vxlan_ifindex, fkey.vtep))
                if fstep.op is not None:
                    ops.append(fstep.op)
        for nkey in dirty.neigh:
            nstep = plan.neigh(self.view, self.rib, self.mirror, nkey, sweep)
            if nstep is not None:
                svi = self.view.vnis[nkey.vni].svi_ifindex
                if nstep.wanted and svi is not None:
                    self._touched_neigh.add(DeviceIp(svi, nkey.ip))
                if nstep.op is not None:
                    ops.append(nstep.op)
        if retrying := self._retries.in_flight():
            planned = {self._retry_key(op) for op in ops}
            self._retries.forget([k for k in retrying if k.kind != "advert" and k not in planned])
        return ops

    def _lost_to_remote(self, key: VniMac, best: MacRoute) -> None:
        # The remote claim is newer: our AddFdb replaces the bridge's local entry, so the
        # MAC is no longer local here until the bridge learns it again.
        lv = self.view.vnis[key.vni]
        log.info(
            "MAC %s in VNI %d moved to VTEP %s (seq %d)", key.mac, key.vni, best.vtep, best.seq
        )
        self.view.fdb.pop(BridgeMac(lv.bridge_ifindex, lv.vlan, key.mac), None)
        self.view.seq.pop(key, None)
        self._dirty_adverts.update(
            AdvertKey(key.vni, key.mac, ip) for ip in self.view.ips_of(lv, key.mac)
        )
        self._moved(key, best.vtep)

    def _desired(self, key: AdvertKey) -> Advert | None:
        frozen = bool(key.mac) and self.dad.frozen(VniMac(key.vni, key.mac), self._now)
        if key.vni not in self.view.vnis:
            return None
        return plan.advert(
            self.view,
            self.rib,
            key,
            vtep_ip=self.vtep_ip,
            rd=self.rd(key.vni),
            rts=self.export_rts(key.vni),
            frozen=frozen,
        )

    def _retry_key(self, op: Op) -> RetryKey | None:
        """The dirty key that plans ``op`` again, while its device is still ours."""
        if isinstance(op, AddFdb | DelFdb):
            lv = self.view.by_vxlan.get(op.ifindex)
            return None if lv is None else RetryKey("fdb", VniMac(lv.vni, op.mac))
        if isinstance(op, AddFlood | DelFlood):
            lv = self.view.by_vxlan.get(op.ifindex)
            return None if lv is None else RetryKey("flood", VniVtep(lv.vni, op.dst))
        vni = self.view.by_svi.get(op.ifindex)
        return None if vni is None else RetryKey("neigh", VniIp(vni, op.ip))

    def kernel_applied(self, ops: Sequence[Op], failed: Iterable[Op]) -> None:
        """Record acked writes in the mirror; failed ops are planned again after a backoff."""
        bad = set(failed)
        for op in ops:
            if op in bad:
                self.counters["kernel-failures"] += 1
                if (key := self._retry_key(op)) is not None:
                    delay = self._retries.failed(key, self._now)
                    log.debug("retrying %s in %gs", op, delay)
                continue
            self.counters["kernel-ops"] += 1
            if self._retries and (key := self._retry_key(op)) is not None:
                self._retries.succeeded(key)
            self.mirror.record(op)
            if isinstance(op, AddNeigh):
                # Ours replaced any entry the SVI had learned (its echo is filtered out).
                svi_vni = self.view.by_svi.get(op.ifindex)
                if svi_vni is not None:
                    self._local_neigh_gone(svi_vni, DeviceIp(op.ifindex, op.ip))

    def _mark_everything(self) -> None:
        view = self.view
        for vni in view.vnis:
            self._dirty.update(self.rib.keys_of_vni(vni))
            self._dirty_adverts.add(AdvertKey(vni, "", None))
        for lv in view.vnis.values():
            for entry in self.mirror.fdb_on(lv.vxlan_ifindex):
                self._dirty.fdb.add(VniMac(lv.vni, entry.mac))
            for dst in self.mirror.flood.get(lv.vxlan_ifindex, ()):
                self._dirty.flood.add(VniVtep(lv.vni, dst))
            if lv.svi_ifindex is not None:
                for neigh in self.mirror.neigh_on(lv.svi_ifindex):
                    self._dirty.neigh.add(VniIp(lv.vni, neigh.ip))
        for key in view.fdb:
            local_vni = view.vni_of(key)
            if local_vni is not None:
                self._local_changed(VniMac(local_vni, key.mac), learned=True)
        for (svi, ip), mac in view.neigh.items():
            neigh_vni = view.by_svi.get(svi)
            if neigh_vni is not None:
                self._dirty_adverts.add(AdvertKey(neigh_vni, mac, ip))
        self._dirty_adverts.update(self.adverts.sent)

    # -- requests ------------------------------------------------------------------------

    def clear_duplicate(self, vni: int | None, mac: str | None) -> list[VniMac]:
        """Forget duplicate marks (all, one VNI's, or one MAC's); returns what was cleared."""
        keys = [
            k
            for k in list(self.dad.duplicates)
            if (vni is None or k.vni == vni) and (mac is None or k.mac == mac)
        ]
        for key in keys:
            self.dad.clear(key)
            self._dirty.fdb.add(key)
            self._dirty_adverts.add(AdvertKey(key.vni, key.mac, None))
        return keys


def advert_key(advert: Advert) -> AdvertKey:
    if isinstance(advert, ImetAdvert):
        return AdvertKey(advert.vni, "", None)
    return AdvertKey(advert.vni, advert.mac, advert.ip)
