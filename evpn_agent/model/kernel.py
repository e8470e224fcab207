"""The kernel as the agent sees it: devices, FDB and neighbour entries, what changed, what
to write, and which entries are ours. Values only; the netlink edge builds and reads them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from evpn_agent.model.keys import BridgeMac
from evpn_agent.model.net import (
    NTF_EXT_LEARNED,
    NTF_MASTER,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    ZERO_MAC,
)

# -- devices -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VxlanDevice:
    ifindex: int
    name: str
    vni: int
    local: str | None
    master: int | None
    learning: bool
    up: bool  # administratively up (IFF_UP)
    vlan: int | None = None  # VLAN of this VNI on a VLAN-aware bridge


@dataclass(frozen=True, slots=True)
class BridgeDevice:
    ifindex: int
    name: str
    mac: str
    vlan_filtering: bool
    up: bool


@dataclass(frozen=True, slots=True)
class OtherLink:
    """Any other device: host ports, VLAN SVIs (vlan_id + link = lower device), loopback..."""

    ifindex: int
    name: str
    master: int | None
    kind: str | None
    vlan_id: int | None = None
    link: int | None = None
    up: bool = False


Link = VxlanDevice | BridgeDevice | OtherLink

# -- entries -------------------------------------------------------------------------------


# Entries are NamedTuples, not frozen dataclasses: a dump builds one per FDB entry (tens
# of thousands per reconcile) and a burst of learned MACs one per event; a tuple is built,
# hashed and compared in C. FdbEntry and NeighEntry differ in length: never equal.
class FdbEntry(NamedTuple):
    """A bridge (master) or device (NTF_SELF, e.g. VXLAN) forwarding entry."""

    ifindex: int
    mac: str
    vlan: int | None
    dst: str | None
    master: int | None
    flags: int
    state: int

    @property
    def ext_learned(self) -> bool:
        return bool(self.flags & NTF_EXT_LEARNED)

    @property
    def is_self(self) -> bool:
        return bool(self.flags & NTF_SELF)

    @property
    def is_master(self) -> bool:
        """A bridge entry. The kernel reports those with NDA_MASTER, not with NTF_MASTER."""
        return self.master is not None or bool(self.flags & NTF_MASTER)

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)

    @property
    def noarp(self) -> bool:
        return bool(self.state & NUD_NOARP)

    @property
    def is_static(self) -> bool:
        """`bridge fdb` shows "static": NOARP but not PERMANENT."""
        return self.noarp and not self.permanent

    @property
    def is_flood(self) -> bool:
        """A head-end replication (flood list) entry of a VXLAN device."""
        return self.mac == ZERO_MAC


class NeighEntry(NamedTuple):
    """An ARP (IPv4) or ND (IPv6) neighbour."""

    ifindex: int
    ip: str
    mac: str | None
    flags: int
    state: int
    protocol: int | None

    @property
    def ext_learned(self) -> bool:
        return bool(self.flags & NTF_EXT_LEARNED)


# -- what changed --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkUpdated:
    link: Link


@dataclass(frozen=True, slots=True)
class LinkRemoved:
    ifindex: int
    name: str


@dataclass(frozen=True, slots=True)
class FdbUpdated:
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class FdbRemoved:
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class NeighUpdated:
    entry: NeighEntry


@dataclass(frozen=True, slots=True)
class NeighRemoved:
    entry: NeighEntry


@dataclass(frozen=True, slots=True)
class MonitorOverflowed:
    """Events were lost (ENOBUFS): dump and reconcile."""


KernelEvent = (
    LinkUpdated
    | LinkRemoved
    | FdbUpdated
    | FdbRemoved
    | NeighUpdated
    | NeighRemoved
    | MonitorOverflowed
)


@dataclass(frozen=True, slots=True)
class KernelSnapshot:
    links: tuple[Link, ...]
    # Walked, possibly more than once: a tuple, or a kernel dump that decodes its entries
    # as they are walked (kernel.dumped: 200,000 at once were ~30 MiB of objects).
    fdb: Iterable[FdbEntry]
    neigh: Iterable[NeighEntry]
    # False when the FDB or neighbour dump was interrupted by changes: entries may be
    # missing from it, so absence proves nothing until a complete dump.
    complete: bool = True
    # Bridge entries the kernel said, asked one by one after the dump, do not exist
    # (kernel.fdb_probe): gone even if the dump is incomplete.
    fdb_gone: frozenset[BridgeMac] = frozenset()


# -- what to write -------------------------------------------------------------------------


# The ops of a burst (one per route) are NamedTuples: a frozen dataclass's __init__ cost a
# tenth of planning. No two kinds compare equal: AddFdb has four fields, DelFdb and AddNeigh
# three (the third an int or None against a MAC string), the rarer kinds stay dataclasses.


class AddFdb(NamedTuple):
    """Remote MAC behind a VTEP: bridge (master) and VXLAN (self) entry on the VXLAN device."""

    ifindex: int
    mac: str
    dst: str
    vlan: int | None = None


class DelFdb(NamedTuple):
    """Remove a remote MAC: both the bridge and the VXLAN entry. Its fields are DeviceMac's,
    in order: equal to the key of the entry it removes, it finds that entry in the core's
    tables without a key built for it (a withdraw burst's 100,000)."""

    ifindex: int
    mac: str
    vlan: int | None = None


@dataclass(frozen=True, slots=True)
class AddFlood:
    """One remote VTEP in the VXLAN device's flood list (zero-MAC entry)."""

    ifindex: int
    dst: str


@dataclass(frozen=True, slots=True)
class DelFlood:
    """Remove one remote VTEP from the flood list."""

    ifindex: int
    dst: str


class AddNeigh(NamedTuple):
    """Remote MAC+IP as a neighbour on the SVI (bridge device), for ARP/ND suppression."""

    ifindex: int
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class DelNeigh:
    """Remove a remote neighbour."""

    ifindex: int
    ip: str


Op = AddFdb | DelFdb | AddFlood | DelFlood | AddNeigh | DelNeigh


def describe(op: Op) -> str:
    """An op as the ``bridge``/``ip`` command that would do the same, for people."""
    name = type(op).__name__
    if isinstance(op, AddFdb | DelFdb):
        vlan = f" vlan {op.vlan}" if op.vlan is not None else ""
        dst = f" dst {op.dst}" if isinstance(op, AddFdb) else ""
        verb = "replace" if isinstance(op, AddFdb) else "del"
        return f"{name}: bridge fdb {verb} {op.mac} dev if{op.ifindex}{dst}{vlan} master self"
    if isinstance(op, AddFlood | DelFlood):
        verb = "append" if isinstance(op, AddFlood) else "del"
        return f"{name}: bridge fdb {verb} {ZERO_MAC} dev if{op.ifindex} dst {op.dst} self"
    if isinstance(op, AddNeigh):
        return f"{name}: ip neigh replace {op.ip} lladdr {op.mac} dev if{op.ifindex} extern_learn"
    return f"{name}: ip neigh del {op.ip} dev if{op.ifindex}"


# -- whose entries -------------------------------------------------------------------------


class Managed(NamedTuple):
    """The devices whose entries the agent owns, and so the one rule of ownership:

    on a managed VXLAN device, every ``extern_learn`` entry (remote MACs, bridge and VXLAN
    side) and every zero-MAC entry (the flood list); on a managed SVI, every
    ``extern_learn`` neighbour. FDB entries keep no protocol field, so this is all the
    kernel can tell. The engine hands this value to the kernel edge, whose monitor drops
    the echoes of exactly these (reading the message bytes, not decoded entries).
    """

    vxlans: frozenset[int] = frozenset()
    svis: frozenset[int] = frozenset()
