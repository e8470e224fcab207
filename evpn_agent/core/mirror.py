"""Our entries as the kernel holds them: from a dump, then our acknowledged writes and the
kernel's events. Planning compares the routes against this, never against a fresh dump."""

from __future__ import annotations

from dataclasses import dataclass, field

from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op
from evpn_agent.model.keys import DeviceIp, DeviceMac


@dataclass
class Mirror:
    fdb: dict[DeviceMac, str] = field(default_factory=dict)  # -> VTEP (dst)
    flood: dict[int, set[str]] = field(default_factory=dict)  # VXLAN ifindex -> VTEPs
    neigh: dict[DeviceIp, str] = field(default_factory=dict)  # -> MAC

    def record(self, op: Op) -> None:
        """A write the kernel acknowledged."""
        if isinstance(op, AddFdb):
            self.fdb[DeviceMac(op.ifindex, op.mac, op.vlan)] = op.dst
        elif isinstance(op, DelFdb):
            self.fdb.pop(DeviceMac(op.ifindex, op.mac, op.vlan), None)
        elif isinstance(op, AddFlood):
            self.flood.setdefault(op.ifindex, set()).add(op.dst)
        elif isinstance(op, DelFlood):
            self.flood.get(op.ifindex, set()).discard(op.dst)
        elif isinstance(op, AddNeigh):
            self.neigh[DeviceIp(op.ifindex, op.ip)] = op.mac
        elif isinstance(op, DelNeigh):
            self.neigh.pop(DeviceIp(op.ifindex, op.ip), None)

    def fdb_on(self, ifindex: int) -> list[DeviceMac]:
        return [k for k in self.fdb if k.ifindex == ifindex]

    def neigh_on(self, ifindex: int) -> list[DeviceIp]:
        return [k for k in self.neigh if k.ifindex == ifindex]

    def forget_fdb(self, ifindex: int) -> None:
        """The kernel flushed a device's FDB entries (it went down) without telling us."""
        self.fdb = {k: v for k, v in self.fdb.items() if k.ifindex != ifindex}

    def forget(self, ifindex: int) -> None:
        self.forget_fdb(ifindex)
        self.flood.pop(ifindex, None)
        self.neigh = {k: v for k, v in self.neigh.items() if k.ifindex != ifindex}
