"""Planning for everything dirty (through the pure queries of ``plan``) and recording what
the kernel and the speaker did with it.

A batch of kernel writes is recorded in the mirror when it is handed over
(``kernel_submitted``) and settled when the kernel has answered (``kernel_settled``): the
daemon plans the next round meanwhile, so a burst's planning overlaps the kernel's work."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from evpn_agent.core import drift, observe, plan
from evpn_agent.core.mirror import Prior
from evpn_agent.core.rib import Dirty
from evpn_agent.core.state import RetryKey, State
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    AdvertChange,
    AdvertKey,
    DelFdb,
    DelFlood,
    DelNeigh,
    MacRoute,
    Op,
    build,
    describe,
)
from evpn_agent.model.keys import BridgeMac, DeviceIp, DeviceMac, VniIp, VniMac, VniVtep

log = logging.getLogger(__name__)


@dataclass
class Work:
    ops: list[Op] = field(default_factory=list)
    changes: list[AdvertChange] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)  # BGP sessions to reset, by peer

    def __bool__(self) -> bool:
        return bool(self.ops or self.changes or self.resets)


def take_work(s: State) -> Work:
    """Kernel ops and advert changes for everything dirty; dirty sets are emptied."""
    out = Work(ops=_plan_kernel(s), resets=s.peers.take_resets())
    if out.resets:
        s.counters["sessions-reset"] += len(out.resets)
    dirty, s.dirty_adverts = s.dirty_adverts, set()
    if dirty:
        frozen = functools.partial(s.dad.frozen, now=s.now) if s.dad.duplicates else None
        wanted = plan.adverts(
            s.view, s.rib, dirty, vtep_ip=s.vtep_ip, rd_of=s.rd, rts_of=s.export_rts,
            frozen=frozen,
        )  # fmt: skip
        out.changes = s.adverts.set_many(wanted)
    if s.retries:
        # A refused announce planned again is settled: refused anew, it backs off anew.
        s.retries.forget([k for k in s.retries.in_flight() if k.kind == "advert"])
    return out


def _plan_kernel(s: State) -> list[Op]:
    dirty, s.dirty = s.dirty, Dirty()
    ops, s.retired = s.retired, []
    # after a dump, every key is compared; what changed since the last plan is explained
    compare = s.drift.take_compare()
    keys = _KernelPlan(s, dirty, ops)
    if compare:
        keys.plan(dirty.fdb | compare.fdb, dirty.flood | compare.flood,
                  dirty.neigh | compare.neigh)  # fmt: skip
    else:
        keys.plan(dirty.fdb, dirty.flood, dirty.neigh)
    for vni in dirty.vnis | compare.vnis:
        # made now, a VNI's at a time, and garbage before the next (see Dirty.vnis)
        whole = observe.keys_of_vni(s, vni)
        keys.plan(whole.fdb - dirty.fdb - compare.fdb, whole.flood - dirty.flood - compare.flood,
                  whole.neigh - dirty.neigh - compare.neigh)  # fmt: skip
    s.drift.plan_done(s.vnis, s.now)
    if retrying := s.retries.in_flight():
        planned = {retry_key(s, op) for op in ops}
        s.retries.forget([k for k in retrying if k.kind != "advert" and k not in planned])
    return ops


class _KernelPlan:
    """One round's plan of kernel writes, fed keys in parts (the dirty ones, then each VNI
    whose every key is dirty); its writes go to ``ops``."""

    def __init__(self, s: State, dirty: Dirty, ops: list[Op]) -> None:
        self.s, self.dirty, self.ops = s, dirty, ops
        self.sweep = plan.Sweep(s.peers.sweep_ok, s.touched_fdb, s.touched_flood, s.touched_neigh)
        self.watching = s.drift.watching()

    def plan(self, fdb: Iterable[VniMac], flood: Iterable[VniVtep], neigh: Iterable[VniIp]) -> None:
        s, dirty, ops, sweep, watching, found = (
            self.s, self.dirty, self.ops, self.sweep, self.watching, self.s.drift
        )  # fmt: skip
        # per key of a burst (100,000 of them): names looked up once
        frozen = s.dad.frozen if s.dad.duplicates else None
        view, rib, mirror, vtep_ip, touched = s.view, s.rib, s.mirror, s.vtep_ip, s.touched_fdb
        mac_adverts = s.adverts.mac_routes
        for key in fdb:
            if frozen is not None and frozen(key, s.now):
                continue  # a frozen duplicate keeps its last entry
            step = plan.fdb(view, rib, mirror, vtep_ip, key, sweep)
            if step is None:
                continue
            op = step.op
            if step.kept or (op is not None and (watching or type(op) is DelFdb)):
                wanted_before = step.entry in touched
                # Not watching, a removal of an entry we wanted is an ordinary withdraw, and
                # planned() would note nothing: not asked, for every route of a withdraw burst.
                if watching or step.kept or not wanted_before:
                    explained = key in dirty.fdb or key.vni in dirty.vnis
                    found.planned(key, op, kept=step.kept, explained=explained,
                                  wanted_before=wanted_before)  # fmt: skip
            if step.wanted:
                touched.add(step.entry)
            if step.lost_to is not None:
                _lost_to_remote(s, key, step.lost_to)
            if op is not None:
                ops.append(op)
            # Our own route for the MAC depends on who won; a purely remote MAC has none.
            if step.local or mac_adverts:
                advert = build(AdvertKey, (key.vni, key.mac, None))
                if step.local or advert in s.adverts.sent:
                    s.dirty_adverts.add(advert)
        for fkey in flood:
            fstep = plan.flood(s.view, s.rib, s.mirror, fkey, sweep)
            if fstep is not None:
                flood_entry = (s.view.vnis[fkey.vni].vxlan_ifindex, fkey.vtep)
                if fstep.kept or (
                    fstep.op is not None and (watching or isinstance(fstep.op, DelFlood))
                ):
                    explained = fkey in dirty.flood or fkey.vni in dirty.vnis
                    found.planned(fkey, fstep.op, kept=fstep.kept, explained=explained,
                                  wanted_before=flood_entry in s.touched_flood)  # fmt: skip
                if fstep.wanted:
                    s.touched_flood.add(flood_entry)
                if fstep.op is not None:
                    ops.append(fstep.op)
        for nkey in neigh:
            nstep = plan.neigh(s.view, s.rib, s.mirror, nkey, sweep)
            if nstep is not None:
                svi = s.view.vnis[nkey.vni].svi_ifindex
                if nstep.kept or (
                    nstep.op is not None and (watching or isinstance(nstep.op, DelNeigh))
                ):
                    wanted_before = svi is not None and DeviceIp(svi, nkey.ip) in s.touched_neigh
                    explained = nkey in dirty.neigh or nkey.vni in dirty.vnis
                    found.planned(nkey, nstep.op, kept=nstep.kept, explained=explained,
                                  wanted_before=wanted_before)  # fmt: skip
                if nstep.wanted and svi is not None:
                    s.touched_neigh.add(DeviceIp(svi, nkey.ip))
                if nstep.op is not None:
                    ops.append(nstep.op)


def _lost_to_remote(s: State, key: VniMac, best: MacRoute) -> None:
    # The remote claim is newer: our AddFdb replaces the bridge's local entry, so the
    # MAC is no longer local here until the bridge learns it again.
    lv = s.view.vnis[key.vni]
    log.info("MAC %s in VNI %d moved to VTEP %s (seq %d)", key.mac, key.vni, best.vtep, best.seq)
    s.view.fdb.pop(BridgeMac(lv.bridge_ifindex, lv.vlan, key.mac), None)
    s.view.seq.pop(key, None)
    s.dirty_adverts.update(AdvertKey(key.vni, key.mac, ip) for ip in s.view.ips_of(lv, key.mac))
    observe.moved(s, key, best.vtep)


def retry_key(s: State, op: Op) -> RetryKey | None:
    """The dirty key that plans ``op`` again, while its device is still ours."""
    if isinstance(op, AddFdb | DelFdb):
        lv = s.view.by_vxlan.get(op.ifindex)
        return None if lv is None else RetryKey("fdb", VniMac(lv.vni, op.mac))
    if isinstance(op, AddFlood | DelFlood):
        lv = s.view.by_vxlan.get(op.ifindex)
        return None if lv is None else RetryKey("flood", VniVtep(lv.vni, op.dst))
    vni = s.view.by_svi.get(op.ifindex)
    return None if vni is None else RetryKey("neigh", VniIp(vni, op.ip))


@dataclass(frozen=True, slots=True)
class Written:
    """A batch handed to the kernel and recorded in the mirror, its outcome not yet known."""

    ops: Sequence[Op]
    priors: list[Prior]  # per op: its entry as the mirror held it before


def kernel_submitted(s: State, ops: Sequence[Op]) -> Written:
    """Record ``ops`` in the mirror as if the kernel took them all: the next round is planned
    while the kernel still works on this one, and must not plan the same writes again."""
    record = s.mirror.record
    return Written(ops, [record(op) for op in ops])


def kernel_applied(s: State, ops: Sequence[Op], failed: Iterable[Op]) -> None:
    """Both at once: ``ops`` were written, ``failed`` of them refused."""
    kernel_settled(s, kernel_submitted(s, ops), failed)


def kernel_settled(
    s: State, written: Written, failed: Iterable[Op], gone: Iterable[Op] = ()
) -> None:
    """The kernel's answer for a batch: refused ops are put back in the mirror and planned
    again after a backoff; what the acked ones change beyond the mirror happens now.

    ``gone``: those of ``failed`` refused because their device does not exist any more (a
    VNI deleted while the batch was planned or written). Its removal is on its way as an
    event; they are not failures of the kernel and are not retried."""
    ops = written.ops
    bad = set(failed)
    if bad:
        s.drift.all_matched = False  # the kernel differs from our plan: compare next time
        _put_back(s, written, bad)
    if s.drift.pending:
        _repaired(s, s.drift.applied(ops, bad, s.now))
    failures = sum(op in bad for op in ops) if bad else 0  # no op hashed in the usual burst
    missing = set(gone)  # a part of failed
    lost = sum(op in missing for op in ops) if missing else 0
    if lost:
        s.counters["kernel-device-gone"] += lost
    if failures > lost:
        s.counters["kernel-failures"] += failures - lost
    if len(ops) > failures:
        s.counters["kernel-ops"] += len(ops) - failures
    # the usual burst: nothing failed, nothing retried, nothing removed (no key built)
    retrying = bool(s.retries)
    for op in ops:
        if bad and op in bad:
            if op not in missing and (key := retry_key(s, op)) is not None:
                delay = s.retries.failed(key, s.now)
                log.debug("retrying %s in %gs", op, delay)
            continue
        if retrying and (key := retry_key(s, op)) is not None:
            s.retries.succeeded(key)
        kind = type(op)
        if kind is AddFdb or kind is AddFlood:
            continue
        # An entry we removed is no longer one "wanted earlier in this run": the sets stay
        # as large as the tables, not as every MAC ever seen (hours of churn).
        if isinstance(op, DelFdb):  # a withdraw burst's: tested first
            s.touched_fdb.discard(op)  # its own key (see DelFdb)
        elif isinstance(op, AddNeigh):
            # Ours replaced any entry the SVI had learned (its echo is filtered out).
            svi_vni = s.view.by_svi.get(op.ifindex)
            if svi_vni is not None:
                observe.local_neigh_gone(s, svi_vni, DeviceIp(op.ifindex, op.ip))
        elif isinstance(op, DelFlood):
            s.touched_flood.discard((op.ifindex, op.dst))
        elif isinstance(op, DelNeigh):
            s.touched_neigh.discard(DeviceIp(op.ifindex, op.ip))


def _put_back(s: State, written: Written, bad: set[Op]) -> None:
    """Undo the mirror's record of refused ops: each entry they touched becomes what it was
    before the batch, changed by the batch's acked ops on it, in order.

    Entries of devices no longer ours are left alone: a device that went away or left its
    VNI meanwhile took its entries with it (``observe`` forgot them)."""
    mirror = s.mirror
    affected = {_entry(op) for op in bad}
    first: dict[object, tuple[Op, Prior]] = {}
    for op, prior in zip(written.ops, written.priors, strict=True):
        entry = _entry(op)
        if entry in affected and entry not in first:
            first[entry] = (op, prior)
    for op, prior in first.values():
        if _ours(s, op):
            mirror.restore(op, prior)
    for op in written.ops:
        if op not in bad and _entry(op) in affected and _ours(s, op):
            mirror.record(op)


def _entry(op: Op) -> object:
    """The kernel entry an op writes (what the mirror keys it by)."""
    if isinstance(op, AddFdb | DelFdb):
        return DeviceMac(op.ifindex, op.mac, op.vlan)
    if isinstance(op, AddFlood | DelFlood):
        return ("flood", op.ifindex, op.dst)
    return DeviceIp(op.ifindex, op.ip)


def _ours(s: State, op: Op) -> bool:
    if isinstance(op, AddNeigh | DelNeigh):
        return op.ifindex in s.view.by_svi
    return op.ifindex in s.view.by_vxlan


def _repaired(s: State, repaired: list[tuple[Op, drift.Repair]]) -> None:
    """Count the kernel's acked repairs; one log line per reconcile, with a sample."""
    if not repaired:
        return
    tally = Counter((r.kind, r.action) for _op, r in repaired)
    for (kind, action), n in tally.items():
        s.counters[drift.counter_name(kind, action)] += n
    what = ", ".join(f"{n} {kind} {action}" for (kind, action), n in sorted(tally.items()))
    vnis = ",".join(str(v) for v in sorted({r.vni for _op, r in repaired}))
    sample = "; ".join(describe(op) for op, _r in repaired[:3])
    if any(r.drift for _op, r in repaired):
        log.warning("kernel differed from the routes (VNI %s): %s; e.g. %s", vnis, what, sample)
    else:
        log.info("removed entries no route backs (VNI %s): %s; e.g. %s", vnis, what, sample)
