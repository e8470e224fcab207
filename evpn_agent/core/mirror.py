"""Our entries as the kernel holds them: from a dump, then our writes (recorded when handed to
the kernel, put back if it refused them) and the kernel's events. Planning compares the
routes against this, never against a fresh dump."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from evpn_agent.core.sizes import TableSize, size_of
from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op, build
from evpn_agent.model.keys import DeviceIp, DeviceMac

_K = TypeVar("_K", DeviceMac, DeviceIp)
# what an entry was before a write: its VTEP or MAC (None: absent), or a flood entry held
Prior = str | bool | None


@dataclass
class Mirror:
    """Read one entry with ``fdb_dst`` or ``neigh_mac``, a device's with ``fdb_on`` or
    ``neigh_on``; change them through the methods.

    Entries are kept per device: a device's entries are asked for per VNI (every
    reconcile, every sweep, a VNI leaving) and must not cost a scan of every VNI's; and
    kept that way, not in one flat table with a per-device index beside it, a burst's
    write (100,000 of them) changes one table, not two (a tenth of recording and planning
    a withdraw burst). A device without entries has no table."""

    # VXLAN ifindex -> our FDB entries on it -> VTEP (dst)
    fdb_by_dev: dict[int, dict[DeviceMac, str]] = field(default_factory=dict)
    flood: dict[int, set[str]] = field(default_factory=dict)  # VXLAN ifindex -> VTEPs
    # SVI ifindex -> our neighbours on it -> MAC
    neigh_by_dev: dict[int, dict[DeviceIp, str]] = field(default_factory=dict)
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
        mirror._macs = _every(old.neigh_by_dev)
        mirror._keys.update((key, key) for key in mirror._macs)
        return mirror

    def rebuilt(self) -> None:
        self._keys = {}
        self._macs = {}

    def sizes(self) -> dict[str, TableSize]:
        """Our kernel entries as mirrored, with their per-device tables (``show memory``)."""
        return {
            "kernel-fdb": size_of(self.fdb_by_dev, 1),
            "kernel-flood": size_of(self.flood, 1),
            "kernel-neigh": size_of(self.neigh_by_dev, 1),
        }

    def record(self, op: Op) -> Prior:
        """A write handed to the kernel; returns what the entry was before, for ``restore``."""
        if type(op) is AddFdb:  # most of a burst: tested first
            return _put(self.fdb_by_dev, build(DeviceMac, (op.ifindex, op.mac, op.vlan)), op.dst)
        if type(op) is DelFdb:
            return _take(self.fdb_by_dev, op)  # type: ignore[misc]  # its own key (see DelFdb)
        if isinstance(op, AddFlood | DelFlood):
            vteps = self.flood.get(op.ifindex)
            held = vteps is not None and op.dst in vteps
            if isinstance(op, AddFlood):
                self.flood.setdefault(op.ifindex, set()).add(op.dst)
            elif vteps is not None:
                vteps.discard(op.dst)
            return held
        if isinstance(op, AddNeigh):
            return self.set_neigh(build(DeviceIp, (op.ifindex, op.ip)), op.mac)
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
        """The VTEP of our FDB entry ``key``; None if we hold none."""
        entries = self.fdb_by_dev.get(key.ifindex)
        return entries.get(key) if entries is not None else None

    def neigh_mac(self, key: DeviceIp) -> str | None:
        """The MAC of our neighbour ``key``; None if we hold none."""
        entries = self.neigh_by_dev.get(key.ifindex)
        return entries.get(key) if entries is not None else None

    def fdb_entries(self) -> dict[DeviceMac, str]:
        """Every FDB entry in one new table (a copy, for tests and rare callers)."""
        return _every(self.fdb_by_dev)

    def set_fdb(self, key: DeviceMac, dst: str) -> None:
        if self._keys:
            key = self._keys.get(key, key)  # type: ignore[assignment]
        _put(self.fdb_by_dev, key, dst)

    def pop_fdb(self, key: DeviceMac) -> str | None:
        return _take(self.fdb_by_dev, key)

    def set_neigh(self, key: DeviceIp, mac: str) -> str | None:
        """Returns the MAC the neighbour had (None: it was not ours)."""
        if self._keys:
            key = self._keys.get(key, key)  # type: ignore[assignment]
            if (held := self._macs.get(key)) == mac:
                mac = held
        return _put(self.neigh_by_dev, key, mac)

    def pop_neigh(self, key: DeviceIp) -> str | None:
        return _take(self.neigh_by_dev, key)

    def fdb_on(self, ifindex: int) -> list[DeviceMac]:
        return list(self.fdb_by_dev.get(ifindex, ()))

    def neigh_on(self, ifindex: int) -> list[DeviceIp]:
        return list(self.neigh_by_dev.get(ifindex, ()))

    def forget_fdb(self, ifindex: int) -> None:
        """The kernel flushed a device's FDB entries (it went down) without telling us."""
        self.fdb_by_dev.pop(ifindex, None)

    def forget(self, ifindex: int) -> None:
        self.forget_fdb(ifindex)
        self.flood.pop(ifindex, None)
        self.neigh_by_dev.pop(ifindex, None)


def _put(table: dict[int, dict[_K, str]], key: _K, value: str) -> str | None:
    """Store ``key``'s entry on its device; returns what it was (None: absent)."""
    entries = table.get(key.ifindex)
    if entries is None:  # not setdefault: no new dict per entry recorded
        entries = table[key.ifindex] = {}
    before = entries.get(key)
    entries[key] = value
    return before


def _take(table: dict[int, dict[_K, str]], key: _K) -> str | None:
    """Drop ``key``'s entry (and its device's table with its last one); what it was."""
    entries = table.get(key.ifindex)
    if entries is None:
        return None
    before = entries.pop(key, None)
    if not entries:
        del table[key.ifindex]
    return before


def _every(table: dict[int, dict[_K, str]]) -> dict[_K, str]:
    return {key: value for entries in table.values() for key, value in entries.items()}
