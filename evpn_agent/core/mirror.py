"""Our entries as the kernel holds them: from a dump, then our acknowledged writes and the
kernel's events. Planning compares the routes against this, never against a fresh dump."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op
from evpn_agent.model.keys import DeviceIp, DeviceMac

_K = TypeVar("_K", DeviceMac, DeviceIp)


@dataclass
class Mirror:
    """Read ``fdb`` and ``neigh`` directly; change them through the methods, which keep the
    per-device indexes: a device's entries are asked for per VNI (every reconcile, every
    sweep, a VNI leaving), and must not cost a scan of every VNI's entries."""

    fdb: dict[DeviceMac, str] = field(default_factory=dict)  # -> VTEP (dst)
    flood: dict[int, set[str]] = field(default_factory=dict)  # VXLAN ifindex -> VTEPs
    neigh: dict[DeviceIp, str] = field(default_factory=dict)  # -> MAC
    # ifindex -> its keys (dicts as insertion-ordered sets)
    _fdb_of: dict[int, dict[DeviceMac, None]] = field(default_factory=dict)
    _neigh_of: dict[int, dict[DeviceIp, None]] = field(default_factory=dict)

    def record(self, op: Op) -> None:
        """A write the kernel acknowledged."""
        if type(op) is AddFdb:  # most of a burst: tested first
            self.set_fdb(DeviceMac(op.ifindex, op.mac, op.vlan), op.dst)
        elif isinstance(op, DelFdb):
            self.pop_fdb(DeviceMac(op.ifindex, op.mac, op.vlan))
        elif isinstance(op, AddFlood):
            self.flood.setdefault(op.ifindex, set()).add(op.dst)
        elif isinstance(op, DelFlood):
            self.flood.get(op.ifindex, set()).discard(op.dst)
        elif isinstance(op, AddNeigh):
            self.set_neigh(DeviceIp(op.ifindex, op.ip), op.mac)
        elif isinstance(op, DelNeigh):
            self.pop_neigh(DeviceIp(op.ifindex, op.ip))

    def set_fdb(self, key: DeviceMac, dst: str) -> None:
        self.fdb[key] = dst
        _index(self._fdb_of, key.ifindex, key)

    def pop_fdb(self, key: DeviceMac) -> str | None:
        dst = self.fdb.pop(key, None)
        if dst is not None:
            _unindex(self._fdb_of, key.ifindex, key)
        return dst

    def set_neigh(self, key: DeviceIp, mac: str) -> None:
        self.neigh[key] = mac
        _index(self._neigh_of, key.ifindex, key)

    def pop_neigh(self, key: DeviceIp) -> str | None:
        mac = self.neigh.pop(key, None)
        if mac is not None:
            _unindex(self._neigh_of, key.ifindex, key)
        return mac

    def fdb_on(self, ifindex: int) -> list[DeviceMac]:
        return list(self._fdb_of.get(ifindex, ()))

    def neigh_on(self, ifindex: int) -> list[DeviceIp]:
        return list(self._neigh_of.get(ifindex, ()))

    def forget_fdb(self, ifindex: int) -> None:
        """The kernel flushed a device's FDB entries (it went down) without telling us."""
        for key in self._fdb_of.pop(ifindex, {}):
            del self.fdb[key]

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
