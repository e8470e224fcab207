"""Our entries as the kernel holds them: from a dump, then our writes (recorded when handed to
the kernel, put back if it refused them) and the kernel's events. Planning compares the
routes against this, never against a fresh dump."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from evpn_agent.core.sizes import TableSize, indexed, size_of
from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op, build
from evpn_agent.model.keys import DeviceIp, DeviceMac

_K = TypeVar("_K", DeviceMac, DeviceIp)
# what an entry was before a write: its VTEP or MAC (None: absent), or a flood entry held
Prior = str | bool | None


@dataclass
class Mirror:
    """Read ``flood`` and ``neigh`` directly, FDB entries through ``fdb_dst`` and
    ``fdb_on``; change them through the methods. A device's entries are asked for per VNI
    (every reconcile, every sweep, a VNI leaving), and must not cost a scan of every VNI's
    entries."""

    # VXLAN ifindex -> our FDB entries on it -> VTEP (dst). Kept per device, not flat with a
    # per-device index beside it: a burst's write (100,000 of them) then changes one table,
    # not two, a tenth of recording and planning a withdraw burst.
    fdb_by_dev: dict[int, dict[DeviceMac, str]] = field(default_factory=dict)
    flood: dict[int, set[str]] = field(default_factory=dict)  # VXLAN ifindex -> VTEPs
    neigh: dict[DeviceIp, str] = field(default_factory=dict)  # -> MAC
    # ifindex -> its keys (dicts as insertion-ordered sets); a MAC+IP burst writes the MAC
    # too, so the neighbour's second table is the smaller part of it
    _neigh_of: dict[int, dict[DeviceIp, None]] = field(default_factory=dict)
    # While rebuilt from a dump (``rebuilding``): the previous mirror's keys, stored instead
    # of the dump's equal ones.
    _keys: dict[DeviceMac | DeviceIp, DeviceMac | DeviceIp] = field(
        default_factory=dict, compare=False, repr=False
    )
    # ... and its bindings' MACs, stored instead of the dump's equal strings (a VTEP is
    # one string per VTEP already: see kernel.neighbours)
    _macs: dict[DeviceIp, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def rebuilding(cls, old: Mirror) -> Mirror:
        """An empty mirror to fill from a dump, keeping ``old``'s key objects for the
        entries the dump holds too (call ``rebuilt`` when done). The dump's own objects
        then all die with it: kept, a few among its ~200,000 pinned Python's memory arenas,
        and RSS grew a step at every reconcile of a table that kept changing."""
        mirror = cls()
        mirror._keys = {key: key for entries in old.fdb_by_dev.values() for key in entries}
        mirror._keys.update((key, key) for key in old.neigh)
        mirror._macs = old.neigh
        return mirror

    def rebuilt(self) -> None:
        self._keys = {}
        self._macs = {}

    def sizes(self) -> dict[str, TableSize]:
        """Our kernel entries as mirrored, with their per-device indexes (``show memory``)."""
        return {
            "kernel-fdb": size_of(self.fdb_by_dev, 1),
            "kernel-flood": size_of(self.flood, 1),
            "kernel-neigh": indexed(size_of(self.neigh), size_of(self._neigh_of, 1)),
        }

    def record(self, op: Op) -> Prior:
        """A write handed to the kernel; returns what the entry was before, for ``restore``."""
        if type(op) is AddFdb:  # most of a burst: tested first
            entries = self.fdb_by_dev.get(op.ifindex)
            if entries is None:  # not setdefault: no new dict per entry recorded
                entries = self.fdb_by_dev[op.ifindex] = {}
            key = build(DeviceMac, (op.ifindex, op.mac, op.vlan))
            before = entries.get(key)
            entries[key] = op.dst
            return before
        if type(op) is DelFdb:
            return self.pop_fdb(op)  # type: ignore[arg-type]  # its own key (see DelFdb)
        if isinstance(op, AddFlood | DelFlood):
            vteps = self.flood.get(op.ifindex)
            held = vteps is not None and op.dst in vteps
            if isinstance(op, AddFlood):
                self.flood.setdefault(op.ifindex, set()).add(op.dst)
            elif vteps is not None:
                vteps.discard(op.dst)
            return held
        if isinstance(op, AddNeigh):
            key_ip = build(DeviceIp, (op.ifindex, op.ip))
            before = self.neigh.get(key_ip)
            self.set_neigh(key_ip, op.mac)
            return before
        assert isinstance(op, DelNeigh)
        return self.pop_neigh(build(DeviceIp, (op.ifindex, op.ip)))

    def restore(self, op: Op, prior: Prior) -> None:
        """Put back the entry ``op`` changed, as ``record`` found it (the write failed)."""
        if isinstance(op, AddFdb | DelFdb):
            key = DeviceMac(op.ifindex, op.mac, op.vlan)
            if isinstance(prior, str):
                self.set_fdb(key, prior)
            else:
                self.pop_fdb(key)
        elif isinstance(op, AddFlood | DelFlood):
            if prior:
                self.flood.setdefault(op.ifindex, set()).add(op.dst)
            else:
                self.flood.get(op.ifindex, set()).discard(op.dst)
        else:
            key_ip = DeviceIp(op.ifindex, op.ip)  # a neighbour
            if isinstance(prior, str):
                self.set_neigh(key_ip, prior)
            else:
                self.pop_neigh(key_ip)

    def fdb_dst(self, key: DeviceMac) -> str | None:
        """The VTEP of our entry ``key``; None if we hold none."""
        entries = self.fdb_by_dev.get(key.ifindex)
        return entries.get(key) if entries is not None else None

    def fdb_entries(self) -> dict[DeviceMac, str]:
        """Every FDB entry, all devices' in one new table (tests, rare callers: a copy)."""
        return {key: dst for entries in self.fdb_by_dev.values() for key, dst in entries.items()}

    def set_fdb(self, key: DeviceMac, dst: str) -> None:
        if self._keys:
            key = self._keys.get(key, key)  # type: ignore[assignment]
        entries = self.fdb_by_dev.get(key.ifindex)
        if entries is None:
            entries = self.fdb_by_dev[key.ifindex] = {}
        entries[key] = dst

    def pop_fdb(self, key: DeviceMac) -> str | None:
        entries = self.fdb_by_dev.get(key.ifindex)
        if entries is None:
            return None
        dst = entries.pop(key, None)
        if not entries:
            del self.fdb_by_dev[key.ifindex]
        return dst

    def set_neigh(self, key: DeviceIp, mac: str) -> None:
        if self._keys:
            key = self._keys.get(key, key)  # type: ignore[assignment]
            if (held := self._macs.get(key)) == mac:
                mac = held
        self.neigh[key] = mac
        _index(self._neigh_of, key.ifindex, key)

    def pop_neigh(self, key: DeviceIp) -> str | None:
        mac = self.neigh.pop(key, None)
        if mac is not None:
            _unindex(self._neigh_of, key.ifindex, key)
        return mac

    def fdb_on(self, ifindex: int) -> list[DeviceMac]:
        return list(self.fdb_by_dev.get(ifindex, ()))

    def neigh_on(self, ifindex: int) -> list[DeviceIp]:
        return list(self._neigh_of.get(ifindex, ()))

    def forget_fdb(self, ifindex: int) -> None:
        """The kernel flushed a device's FDB entries (it went down) without telling us."""
        self.fdb_by_dev.pop(ifindex, None)

    def forget(self, ifindex: int) -> None:
        self.forget_fdb(ifindex)
        self.flood.pop(ifindex, None)
        for key in self._neigh_of.pop(ifindex, {}):
            del self.neigh[key]


def _unindex(
    index: dict[int, dict[DeviceMac, None]] | dict[int, dict[DeviceIp, None]],
    ifindex: int,
    key: DeviceMac | DeviceIp,
) -> None:
    keys = index.get(ifindex)
    if keys is not None:
        keys.pop(key, None)  # type: ignore[arg-type]
        if not keys:
            del index[ifindex]


def _index(index: dict[int, dict[_K, None]], ifindex: int, key: _K) -> None:
    keys = index.get(ifindex)
    if keys is None:  # not setdefault: no new dict per entry recorded
        keys = index[ifindex] = {}
    keys[key] = None
