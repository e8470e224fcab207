"""The agent's single owner of state: events in, kernel ops and BGP commands out.

No I/O happens here. The glue (``agent.py``) feeds kernel observations and ExaBGP events,
then takes the planned kernel ops and command lines and performs them. Work is
incremental: every change marks keys dirty, and only dirty keys are planned, so one route
costs the same whether the table holds ten routes or a hundred thousand.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from evpn_agent.adverts import AdvertKey, AdvertTable, ImetAdvert, MacAdvert
from evpn_agent.bgp_events import (
    BgpEvent,
    CommandAnswered,
    EndOfRib,
    LineRejected,
    MacRoute,
    Route,
    RouteAnnounced,
    RouteRejected,
    RouteWithdrawn,
    SessionDown,
    SessionUp,
)
from evpn_agent.config import Config
from evpn_agent.dad import DuplicateDetector
from evpn_agent.kernel import (
    BridgeDevice,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    KernelSnapshot,
    LinkRemoved,
    LinkUpdated,
    MonitorOverflowed,
    NeighEntry,
    NeighRemoved,
    NeighUpdated,
    VxlanDevice,
)
from evpn_agent.kernel.ops import (
    ZERO_MAC,
    AddFdb,
    AddFlood,
    AddNeigh,
    DelFdb,
    DelFlood,
    DelNeigh,
    Op,
)
from evpn_agent.local import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_FAILED,
    NUD_INCOMPLETE,
    Link,
    LocalFdbKey,
    LocalMac,
    LocalVni,
    derive_vnis,
    local_mac_of,
)
from evpn_agent.retries import Retries
from evpn_agent.rib import Dirty, PathId, Rib, better
from evpn_agent.targets import Importer, RouteTarget, default_export_rt, route_distinguisher

log = logging.getLogger(__name__)

# ("fdb", VNI, MAC), ("flood", VNI, VTEP) or ("neigh", VNI, IP): a refused write to retry
RetryKey = tuple[str, int, str]

QUIET_PERIOD = 1.0  # no route changes for this long before a sweep, after a route refresh


@dataclass
class Mirror:
    """Our entries as the kernel holds them (dump, then our acked writes and events)."""

    fdb: dict[tuple[int, str, int | None], str] = field(default_factory=dict)  # -> dst
    flood: dict[int, set[str]] = field(default_factory=dict)  # vxlan ifindex -> dsts
    neigh: dict[tuple[int, str], str] = field(default_factory=dict)  # (svi, ip) -> mac

    def forget_ifindex(self, ifindex: int) -> None:
        self.fdb = {k: v for k, v in self.fdb.items() if k[0] != ifindex}
        self.flood.pop(ifindex, None)
        self.neigh = {k: v for k, v in self.neigh.items() if k[0] != ifindex}


@dataclass
class PeerState:
    up: bool = False
    eor: bool = False
    since: float | None = None  # monotonic time of the last state change seen
    last_error: str = ""
    downs: int = 0


def _unicast_ip(text: str) -> bool:
    ip = ipaddress.ip_address(text)
    return not (ip.is_multicast or ip.is_link_local or ip.is_unspecified)


class AgentState:
    def __init__(
        self, cfg: Config, *, router_id: str, vtep_ip: str, rd_index: dict[int, int], now: float
    ) -> None:
        self.cfg = cfg
        self.router_id = router_id
        self.vtep_ip = vtep_ip
        self.rd_index = rd_index
        self.started = now
        self.links: dict[int, Link] = {}
        self.vnis: dict[int, LocalVni] = {}
        self.importer = Importer((), {})
        self.rib = Rib(self._import)
        self.local_fdb: dict[LocalFdbKey, LocalMac] = {}
        self.local_seq: dict[tuple[int, str], int] = {}
        self.mirror = Mirror()
        self.adverts = AdvertTable()
        self.peers: dict[str, PeerState] = {}
        self.counters: Counter[str] = Counter()
        self.sweep_ok = False
        self.last_route_change = now
        self._touched: set[object] = set()  # kernel keys desired at some point in this run
        self._held: set[PathId] = set()  # paths kept while no route reflector is up
        self.dad = DuplicateDetector(cfg.duplicate_detection)
        self.local_neigh: dict[tuple[int, str], str] = {}  # (svi, ip) -> MAC, learned here
        self._now = now
        self._held_since: float | None = None
        self._dirty = Dirty()
        self._dirty_adverts: set[AdvertKey] = set()
        self._ops: list[Op] = []
        self._vxlan_ports: set[int] = set()
        self._vni_by_vxlan: dict[int, LocalVni] = {}
        self._vni_of_bridge: dict[tuple[int, int | None], int] = {}
        self._svis: dict[int, int] = {}
        self._retries: Retries[RetryKey] = Retries()

    # -- inputs: kernel ----------------------------------------------------------------

    def load_snapshot(self, snap: KernelSnapshot) -> None:
        """Start state, or a resync after lost netlink events: rebuild from a full dump.

        An incomplete dump (changed while the kernel walked it) may lack entries that never
        changed: local MACs and bindings we knew stay until a complete dump, or their
        removal event, says otherwise. Otherwise a burst makes them flap in BGP.
        """
        kept_fdb = {} if snap.complete else dict(self.local_fdb)
        kept_neigh = {} if snap.complete else dict(self.local_neigh)
        self.links = {link.ifindex: link for link in snap.links}
        self._relink()
        self.mirror = Mirror()
        self.local_fdb.clear()
        self.local_neigh.clear()
        for fdb in snap.fdb:
            self._fdb_seen(fdb)
        for neigh in snap.neigh:
            self._neigh_seen(neigh)
        for fdb_key, local in kept_fdb.items():
            self.local_fdb.setdefault(fdb_key, local)
        for neigh_key, mac in kept_neigh.items():
            self.local_neigh.setdefault(neigh_key, mac)
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
                old_link = self.links.get(ev.link.ifindex)
                self.links[ev.link.ifindex] = ev.link
                if (
                    isinstance(ev.link, BridgeDevice)
                    and isinstance(old_link, BridgeDevice)
                    and old_link.mac != ev.link.mac
                ):
                    self._svi_flushed(ev.link.ifindex)
                relink = True
            elif isinstance(ev, LinkRemoved):
                self.links.pop(ev.ifindex, None)
                relink = True
            elif isinstance(ev, MonitorOverflowed):
                self.counters["netlink-overflow"] += 1
                return False
        if relink:
            self._relink()
        return True

    def _fdb_seen(self, entry: FdbEntry) -> None:
        lv = self._vni_by_vxlan.get(entry.ifindex)
        if lv is not None:
            if entry.mac == ZERO_MAC:
                if entry.dst is not None:
                    self.mirror.flood.setdefault(entry.ifindex, set()).add(entry.dst)
            elif entry.flags & NTF_EXT_LEARNED and entry.flags & NTF_SELF and entry.dst:
                ours = (entry.ifindex, entry.mac, entry.vlan)
                if self.mirror.fdb.get(ours) != entry.dst:
                    self.mirror.fdb[ours] = entry.dst
                    self._dirty.fdb.add((lv.vni, entry.mac))
            return
        found = local_mac_of(entry, self._vxlan_ports)
        if found is None:
            return
        (bridge, vlan, mac), local = found
        if self.local_fdb.get((bridge, vlan, mac)) == local:
            return
        self.local_fdb[(bridge, vlan, mac)] = local
        vni = self._vni_of_bridge.get((bridge, vlan))
        if vni is not None:
            self._local_changed(vni, mac, learned=True)

    def _fdb_gone(self, entry: FdbEntry) -> None:
        lv = self._vni_by_vxlan.get(entry.ifindex)
        if lv is not None:
            if entry.mac == ZERO_MAC:
                if entry.dst is not None:
                    self.mirror.flood.get(entry.ifindex, set()).discard(entry.dst)
                    self._dirty.flood.add((lv.vni, entry.dst))
            elif (
                entry.flags & NTF_SELF
                and self.mirror.fdb.pop((entry.ifindex, entry.mac, entry.vlan), None) is not None
            ):
                self._dirty.fdb.add((lv.vni, entry.mac))
            return
        key = (entry.master or 0, entry.vlan, entry.mac)
        local = self.local_fdb.get(key)
        if local is None or local.port != entry.ifindex:
            return
        del self.local_fdb[key]
        vni = self._vni_of_bridge.get((key[0], key[1]))
        if vni is not None:
            self._local_changed(vni, entry.mac, learned=False)

    def _neigh_seen(self, entry: NeighEntry) -> None:
        vni = self._svis.get(entry.ifindex)
        if vni is None:
            return
        key = (entry.ifindex, entry.ip)
        if entry.flags & NTF_EXT_LEARNED:
            if entry.mac:
                self.mirror.neigh[key] = entry.mac
        elif not _unicast_ip(entry.ip):
            return  # multicast and link-local entries are no host bindings
        elif entry.mac and not entry.state & (NUD_INCOMPLETE | NUD_FAILED):
            # A binding learned here (ARP/ND on the SVI). STALE still counts: the route
            # stays until the kernel really deletes the entry.
            old = self.local_neigh.get(key)
            if old != entry.mac:
                self.local_neigh[key] = entry.mac
                self._dirty_adverts.add((vni, entry.mac, entry.ip))
                if old is not None:  # the IP moved to another MAC
                    self._dirty_adverts.add((vni, old, entry.ip))
        else:
            self._local_neigh_gone(vni, key)

    def _neigh_gone(self, entry: NeighEntry) -> None:
        vni = self._svis.get(entry.ifindex)
        if vni is None:
            return
        if self.mirror.neigh.pop((entry.ifindex, entry.ip), ""):
            self._dirty.neigh.add((vni, entry.ip))
        self._local_neigh_gone(vni, (entry.ifindex, entry.ip))

    def _svi_flushed(self, bridge: int) -> None:
        """A bridge's MAC changed: the kernel flushed its neighbours, ours among them."""
        for lv in self.vnis.values():
            if lv.bridge_ifindex == bridge and lv.svi_ifindex is not None:
                for svi, ip in [k for k in self.mirror.neigh if k[0] == lv.svi_ifindex]:
                    del self.mirror.neigh[(svi, ip)]
                    self._dirty.neigh.add((lv.vni, ip))

    def _local_neigh_gone(self, vni: int, key: tuple[int, str]) -> None:
        mac = self.local_neigh.pop(key, None)
        if mac is not None:
            self._dirty_adverts.add((vni, mac, key[1]))

    def _ips_of(self, lv: LocalVni, mac: str) -> list[str]:
        return [
            ip for (svi, ip), m in self.local_neigh.items() if m == mac and svi == lv.svi_ifindex
        ]

    def _local_changed(self, vni: int, mac: str, *, learned: bool) -> None:
        key = (vni, mac)
        if learned and key not in self.local_seq:
            # RFC 7432 s15: a MAC learned while a remote route exists moves here with seq+1.
            best = self.rib.best_mac(vni, mac)
            self.local_seq[key] = best.seq + 1 if best is not None else 0
            if best is not None:
                self._moved(vni, mac, "this VTEP")
        elif not learned:
            self.local_seq.pop(key, None)
        self._dirty.fdb.add(key)
        self._dirty_adverts.add((vni, mac, None))
        lv = self.vnis.get(vni)
        if lv is not None:
            self._dirty_adverts.update((vni, mac, ip) for ip in self._ips_of(lv, mac))

    def _moved(self, vni: int, mac: str, where: str) -> None:
        self.counters["mac-moves"] += 1
        if self.dad.moved((vni, mac), self._now, where):
            self.counters["duplicate-macs"] += 1

    # -- VNIs ----------------------------------------------------------------------------

    def _relink(self) -> None:
        old = self.vnis
        new = derive_vnis(self.links.values(), self.cfg.vnis)
        self.vnis = new
        self._vxlan_ports = {i for i, link in self.links.items() if isinstance(link, VxlanDevice)}
        self._vni_by_vxlan = {lv.vxlan_ifindex: lv for lv in new.values()}
        self._vni_of_bridge = {(lv.bridge_ifindex, lv.vlan): lv.vni for lv in new.values()}
        self._svis = {lv.svi_ifindex: lv.vni for lv in new.values() if lv.svi_ifindex is not None}
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
                self.mirror.fdb = {
                    k: v for k, v in self.mirror.fdb.items() if k[0] != after.vxlan_ifindex
                }
            if after is None:
                log.info("VNI %d removed (was on %s)", vni, before.vxlan_name if before else "?")
            else:
                log.info("VNI %d on %s in bridge %s", vni, after.vxlan_name, after.bridge_name)
            self._dirty_adverts.add((vni, "", None))
            self._dirty_adverts.update(self.adverts.keys_of_vni(vni))
            for (bridge, vlan, mac), _ in self.local_fdb.items():
                if after is not None and (bridge, vlan) == (after.bridge_ifindex, after.vlan):
                    self._local_changed(vni, mac, learned=True)
        if old.keys() != new.keys() or any(
            (old[v].vxlan_ifindex != new[v].vxlan_ifindex) for v in old.keys() & new.keys()
        ):
            overrides = {v: t.import_rts for v, t in self.cfg.route_targets.items()}
            self.importer = Importer(new.keys(), overrides)
            self.rib.reimport(self._import, self._dirty)
        for vni in changed & new.keys():
            self._dirty.update(self.rib.keys_of_vni(vni))

    def _retire(self, lv: LocalVni) -> None:
        """A VNI left (or moved device): remove our entries if its device still exists."""
        if lv.vxlan_ifindex in self.links:
            for ifindex, mac, vlan in [k for k in self.mirror.fdb if k[0] == lv.vxlan_ifindex]:
                self._ops.append(DelFdb(ifindex, mac, vlan))
            for dst in self.mirror.flood.get(lv.vxlan_ifindex, ()):
                self._ops.append(DelFlood(lv.vxlan_ifindex, dst))
        if lv.svi_ifindex is not None and lv.svi_ifindex in self.links:
            for ifindex, ip in [k for k in self.mirror.neigh if k[0] == lv.svi_ifindex]:
                self._ops.append(DelNeigh(ifindex, ip))
        self.mirror.forget_ifindex(lv.vxlan_ifindex)
        if lv.svi_ifindex is not None:
            self.mirror.forget_ifindex(lv.svi_ifindex)
        self.local_seq = {k: v for k, v in self.local_seq.items() if k[0] != lv.vni}

    def _import(self, route: Route) -> int | None:
        return self.importer.vni_for(route.rts)

    # -- inputs: BGP ---------------------------------------------------------------------

    def on_bgp(self, events: Iterable[BgpEvent], now: float) -> None:
        self._now = now
        for ev in events:
            if isinstance(ev, RouteAnnounced):
                self._announced(ev.peer, ev.route, now)
            elif isinstance(ev, RouteWithdrawn):
                self._peer(ev.peer)
                if self.rib.withdraw(ev.peer, ev.key, self._dirty):
                    self.last_route_change = now
                self.counters["routes-withdrawn"] += 1
            elif isinstance(ev, CommandAnswered):
                if not ev.ok:
                    self.counters["commands-failed"] += 1
                    log.warning("ExaBGP rejected a command (see its log)")
            elif isinstance(ev, RouteRejected | LineRejected):
                self._reject(ev.reason, ev.detail)
            elif isinstance(ev, SessionUp):
                log.info("BGP session with %s is up", ev.peer)
                old = self.peers.get(ev.peer, PeerState())
                self.peers[ev.peer] = PeerState(
                    up=True, since=now, last_error=old.last_error, downs=old.downs
                )
                self.last_route_change = now
            elif isinstance(ev, SessionDown):
                old = self.peers.get(ev.peer, PeerState())
                if ev.peer in self.peers and not old.up:
                    continue  # ExaBGP repeats "down" on every failed reconnect
                log.warning("BGP session with %s is down: %s", ev.peer, ev.reason or "no reason")
                self.peers[ev.peer] = PeerState(
                    up=False, since=now, last_error=ev.reason, downs=old.downs + 1
                )
                self._peer_lost(ev.peer, now)
            elif isinstance(ev, EndOfRib):
                self._peer(ev.peer).eor = True
                if self._held:
                    # A reflector's table is complete again: what it did not repeat of
                    # the routes we held is gone.
                    self._drop_held(f"End-of-RIB from {ev.peer}")

    def _peer(self, peer: str) -> PeerState:
        state = self.peers.get(peer)
        if state is None:
            # An update from a peer we never saw come up: the session predates this core
            # (ExaBGP respawned us), so it is up.
            state = self.peers[peer] = PeerState(up=True)
        return state

    def _peer_lost(self, peer: str, now: float) -> None:
        # Another reflector speaks for the fabric only once its table is complete (End-of-
        # RIB): one that just came back may not have sent the copies yet.
        others_ready = any(p.up and p.eor for name, p in self.peers.items() if name != peer)
        paths = self.rib.peer_paths(peer)
        if others_ready or not self.cfg.route_hold_time or not paths:
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
            gone += self.rib.withdraw(pid[0], pid[1], self._dirty)
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
        self._peer(peer)  # an update proves the session is up
        self.counters["routes-received"] += 1
        if self._held:
            self._held.discard((peer, route.key))  # repeated: no longer stale
        if not self.rib.announce(peer, route, self._dirty):
            self.counters["rejected:vni-not-local"] += 1
        self.last_route_change = now

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

    def tick(self, now: float) -> None:
        """Expire held routes; enable the stale-entry sweep once the table is complete."""
        self._now = now
        for kind, vni, item in self._retries.due(now):
            self.counters["kernel-retries"] += 1
            if kind == "fdb":
                self._dirty.fdb.add((vni, item))
            elif kind == "flood":
                self._dirty.flood.add((vni, item))
            else:
                self._dirty.neigh.add((vni, item))
        for vni, mac in self.dad.expire(now):
            log.info("MAC %s in VNI %d: freeze over, followed again", mac, vni)
            self._dirty.fdb.add((vni, mac))
            self._dirty_adverts.add((vni, mac, None))
        if self._held_since is not None and now - self._held_since >= self.cfg.route_hold_time:
            self._drop_held(f"no route reflector for {self.cfg.route_hold_time:g}s")
        if self.sweep_ok:
            return
        up = [p for p in self.peers.values() if p.up]
        if (
            up
            and all(p.eor for p in up)
            and now - self.started >= self.cfg.sweep_delay
            and now - self.last_route_change >= QUIET_PERIOD
        ):
            log.info("routing table complete: removing stale kernel entries")
            self.sweep_ok = True
            self._mark_everything()

    # -- outputs -------------------------------------------------------------------------

    def take_kernel_ops(self) -> list[Op]:
        dirty, self._dirty = self._dirty, Dirty()
        ops, self._ops = self._ops, []
        for vni, mac in dirty.fdb:
            self._plan_fdb(vni, mac, ops)
        for vni, vtep in dirty.flood:
            self._plan_flood(vni, vtep, ops)
        for vni, ip in dirty.neigh:
            self._plan_neigh(vni, ip, ops)
        if retrying := self._retries.in_flight():
            planned = {self._retry_key(op) for op in ops}
            self._retries.forget([key for key in retrying if key not in planned])
        return ops

    def _retry_key(self, op: Op) -> RetryKey | None:
        """The dirty key that plans ``op`` again, while its device is still ours."""
        if isinstance(op, AddFdb | DelFdb):
            lv = self._vni_by_vxlan.get(op.ifindex)
            return None if lv is None else ("fdb", lv.vni, op.mac)
        if isinstance(op, AddFlood | DelFlood):
            lv = self._vni_by_vxlan.get(op.ifindex)
            return None if lv is None else ("flood", lv.vni, op.dst)
        vni = self._svis.get(op.ifindex)
        return None if vni is None else ("neigh", vni, op.ip)

    def _plan_fdb(self, vni: int, mac: str, ops: list[Op]) -> None:
        lv = self.vnis.get(vni)
        if lv is None or self.dad.frozen((vni, mac), self._now):
            return  # a frozen duplicate keeps its last entry
        want: str | None = None
        best = self.rib.best_mac(vni, mac)
        local = self._local_mac(lv, mac)
        if best is not None and (local is None or not self._local_wins(vni, mac, local, best)):
            want = best.vtep
            if local is not None:
                self._lost_to_remote(lv, mac, best)
        key = (lv.vxlan_ifindex, mac, lv.vlan)
        have = self.mirror.fdb.get(key)
        if want is not None:
            self._touched.add(key)
            if want != have:
                # A remote MAC changing VTEP is not a move here: as FRR and RFC 7432
                # s15.1, only moves seen through local learning count for duplicates.
                ops.append(AddFdb(lv.vxlan_ifindex, mac, want, lv.vlan))
        elif have is not None and (self.sweep_ok or key in self._touched):
            ops.append(DelFdb(lv.vxlan_ifindex, mac, lv.vlan))
        # Our own route for the MAC depends on who won; a purely remote MAC has none.
        if local is not None or (vni, mac, None) in self.adverts.sent:
            self._dirty_adverts.add((vni, mac, None))

    def _plan_flood(self, vni: int, vtep: str, ops: list[Op]) -> None:
        lv = self.vnis.get(vni)
        if lv is None:
            return
        want = self.rib.has_flood(vni, vtep)
        have = vtep in self.mirror.flood.get(lv.vxlan_ifindex, ())
        key = (lv.vxlan_ifindex, ZERO_MAC, vtep)
        if want:
            self._touched.add(key)
            if not have:
                ops.append(AddFlood(lv.vxlan_ifindex, vtep))
        elif have and (self.sweep_ok or key in self._touched):
            ops.append(DelFlood(lv.vxlan_ifindex, vtep))

    def _plan_neigh(self, vni: int, ip: str, ops: list[Op]) -> None:
        lv = self.vnis.get(vni)
        if lv is None or lv.svi_ifindex is None:
            return
        best = self.rib.best_ip(vni, ip)
        want = best.key.mac if best is not None else None
        key = (lv.svi_ifindex, ip)
        have = self.mirror.neigh.get(key)
        if want is not None:
            self._touched.add(key)
            if want != have:
                ops.append(AddNeigh(lv.svi_ifindex, ip, want))
        elif have is not None and (self.sweep_ok or key in self._touched):
            ops.append(DelNeigh(lv.svi_ifindex, ip))

    def _local_mac(self, lv: LocalVni, mac: str) -> LocalMac | None:
        return self.local_fdb.get((lv.bridge_ifindex, lv.vlan, mac))

    def _local_wins(self, vni: int, mac: str, local: LocalMac, remote: MacRoute) -> bool:
        seq = self.local_seq.get((vni, mac), 0)
        ours = MacRoute(remote.key, vni, self.vtep_ip, (), seq, local.static)
        return better(ours, remote)

    def _lost_to_remote(self, lv: LocalVni, mac: str, best: MacRoute) -> None:
        # The remote claim is newer: our AddFdb replaces the bridge's local entry, so the
        # MAC is no longer local here until the bridge learns it again.
        log.info("MAC %s in VNI %d moved to VTEP %s (seq %d)", mac, lv.vni, best.vtep, best.seq)
        self.local_fdb.pop((lv.bridge_ifindex, lv.vlan, mac), None)
        self.local_seq.pop((lv.vni, mac), None)
        self._dirty_adverts.update((lv.vni, mac, ip) for ip in self._ips_of(lv, mac))
        self._moved(lv.vni, mac, best.vtep)

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
            if isinstance(op, AddFdb):
                self.mirror.fdb[(op.ifindex, op.mac, op.vlan)] = op.dst
            elif isinstance(op, DelFdb):
                self.mirror.fdb.pop((op.ifindex, op.mac, op.vlan), None)
            elif isinstance(op, AddFlood):
                self.mirror.flood.setdefault(op.ifindex, set()).add(op.dst)
            elif isinstance(op, DelFlood):
                self.mirror.flood.get(op.ifindex, set()).discard(op.dst)
            elif isinstance(op, AddNeigh):
                self.mirror.neigh[(op.ifindex, op.ip)] = op.mac
                # Ours replaced any entry the SVI had learned (its echo is filtered out).
                svi_vni = self._svis.get(op.ifindex)
                if svi_vni is not None:
                    self._local_neigh_gone(svi_vni, (op.ifindex, op.ip))
            elif isinstance(op, DelNeigh):
                self.mirror.neigh.pop((op.ifindex, op.ip), None)

    def take_bgp_lines(self) -> list[str]:
        dirty, self._dirty_adverts = self._dirty_adverts, set()
        lines: list[str] = []
        for key in dirty:
            lines.extend(self.adverts.set(key, self._desired_advert(key)))
        return lines

    def _desired_advert(self, key: AdvertKey) -> ImetAdvert | MacAdvert | None:
        vni, mac, ip = key
        lv = self.vnis.get(vni)
        if lv is None:
            return None
        local = self._local_mac(lv, mac) if mac else None
        if mac and (local is None or self.dad.frozen((vni, mac), self._now)):
            return None
        if ip is not None and self.local_neigh.get((lv.svi_ifindex or -1, ip)) != mac:
            return None
        rd = route_distinguisher(self.router_id, self.rd_index.get(vni, vni & 0xFFFF))
        rts = self.export_rts(vni)
        if local is None:
            return ImetAdvert(rd, vni, self.vtep_ip, rts)
        best = self.rib.best_mac(vni, mac)
        if best is not None and not self._local_wins(vni, mac, local, best):
            return None
        seq = self.local_seq.get((vni, mac), 0)
        return MacAdvert(rd, vni, mac, ip, self.vtep_ip, rts, seq, local.static)

    def export_rts(self, vni: int) -> tuple[RouteTarget, ...]:
        override = self.cfg.route_targets.get(vni)
        if override is not None and override.export_rts:
            return override.export_rts
        return (default_export_rt(self.cfg.local_as, vni),)

    def _mark_everything(self) -> None:
        for vni in self.vnis:
            self._dirty.update(self.rib.keys_of_vni(vni))
            self._dirty_adverts.add((vni, "", None))
        for lv in self.vnis.values():
            for ifindex, mac, _vlan in self.mirror.fdb:
                if ifindex == lv.vxlan_ifindex:
                    self._dirty.fdb.add((lv.vni, mac))
            for dst in self.mirror.flood.get(lv.vxlan_ifindex, ()):
                self._dirty.flood.add((lv.vni, dst))
            for svi, ip in self.mirror.neigh:
                if svi == lv.svi_ifindex:
                    self._dirty.neigh.add((lv.vni, ip))
        for bridge, vlan, mac in self.local_fdb:
            local_vni = self._vni_of_bridge.get((bridge, vlan))
            if local_vni is not None:
                self._local_changed(local_vni, mac, learned=True)
        for (svi, ip), mac in self.local_neigh.items():
            neigh_vni = self._svis.get(svi)
            if neigh_vni is not None:
                self._dirty_adverts.add((neigh_vni, mac, ip))
        for key in self.adverts.sent:
            self._dirty_adverts.add(key)

    def quiet_echoes(self) -> tuple[frozenset[int], frozenset[int]]:
        """(managed VXLAN ifindexes, managed SVI ifindexes): where our own writes echo."""
        return frozenset(self._vni_by_vxlan), frozenset(self._svis)

    # -- views ---------------------------------------------------------------------------

    def clear_duplicate(self, vni: int | None, mac: str | None) -> list[tuple[int, str]]:
        """Forget duplicate marks (all, one VNI's, or one MAC's); returns what was cleared."""
        keys = [
            k for k in list(self.dad.duplicates)
            if (vni is None or k[0] == vni) and (mac is None or k[1] == mac)
        ]  # fmt: skip
        for key in keys:
            self.dad.clear(key)
            self._dirty.fdb.add(key)
            self._dirty_adverts.add((key[0], key[1], None))
        return keys

    def vni_of_bridge(self, bridge: int, vlan: int | None) -> int | None:
        return self._vni_of_bridge.get((bridge, vlan))
