"""What this VTEP has locally: its VNIs (from links), the MACs its bridges learned and the
MAC+IP bindings its SVIs learned. Pure tables over the kernel's observation values."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from evpn_agent.core.sizes import TableSize, indexed, size_of
from evpn_agent.model import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    BridgeDevice,
    FdbEntry,
    Link,
    Managed,
    OtherLink,
    VxlanDevice,
    build,
    is_host_mac,
)
from evpn_agent.model.keys import BridgeMac, DeviceIp, VniMac

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalVni:
    vni: int
    vxlan_ifindex: int
    vxlan_name: str
    bridge_ifindex: int
    bridge_name: str
    vlan: int | None  # VLAN the VNI maps to on a VLAN-aware bridge
    svi_ifindex: int | None  # where MAC+IP neighbours go (the bridge, or its VLAN device)
    local_ip: str | None
    up: bool


class LocalMac(NamedTuple):  # one per local MAC, compared on every event: built in C
    port: int  # ifindex of the bridge port it was learned on
    static: bool  # added by an operator (NUD_NOARP): advertised sticky


def derive_vnis(links: Iterable[Link], wanted: frozenset[int] | None) -> dict[int, LocalVni]:
    """The VNIs served here: VXLAN devices enslaved to a bridge (and allowed by config)."""
    by_index = {link.ifindex: link for link in links}
    vnis: dict[int, LocalVni] = {}
    for link in sorted(by_index.values(), key=lambda x: x.ifindex):
        if not isinstance(link, VxlanDevice) or link.master is None:
            continue
        bridge = by_index.get(link.master)
        if not isinstance(bridge, BridgeDevice):
            continue
        if wanted is not None and link.vni not in wanted:
            continue
        if link.vni in vnis:
            log.warning(
                "VNI %d is on both %s and %s; using %s",
                link.vni,
                vnis[link.vni].vxlan_name,
                link.name,
                vnis[link.vni].vxlan_name,
            )
            continue
        vlan = link.vlan if bridge.vlan_filtering else None
        vnis[link.vni] = LocalVni(
            vni=link.vni,
            vxlan_ifindex=link.ifindex,
            vxlan_name=link.name,
            bridge_ifindex=bridge.ifindex,
            bridge_name=bridge.name,
            vlan=vlan,
            svi_ifindex=_svi(by_index.values(), bridge, vlan),
            local_ip=link.local,
            up=link.up and bridge.up,
        )
    return vnis


def _svi(links: Iterable[Link], bridge: BridgeDevice, vlan: int | None) -> int | None:
    if vlan is None:
        return bridge.ifindex
    # On a VLAN-aware bridge the SVI is a VLAN device on top of the bridge (e.g. vlan10).
    for link in links:
        if (
            isinstance(link, OtherLink)
            and link.kind == "vlan"
            and link.link == bridge.ifindex
            and link.vlan_id == vlan
        ):
            return link.ifindex
    return None


def local_mac_of(entry: FdbEntry, vxlan_ports: set[int]) -> tuple[BridgeMac, LocalMac] | None:
    """A bridge's own learned/static entry for a host behind a local port, else None."""
    # The bridge reports its own entries with NDA_MASTER set but without NTF_MASTER;
    # NTF_SELF entries belong to the port device itself (its address lists).
    if entry.master is None or entry.flags & NTF_SELF:
        return None
    if entry.flags & NTF_EXT_LEARNED or entry.state & NUD_PERMANENT:
        return None  # ours (remote) or the bridge's own addresses
    if entry.ifindex in vxlan_ports or entry.ifindex == entry.master:
        return None
    if not is_host_mac(entry.mac):
        return None
    key = build(BridgeMac, (entry.master, entry.vlan, entry.mac))
    return key, build(LocalMac, (entry.ifindex, bool(entry.state & NUD_NOARP)))


@dataclass
class LocalView:
    """Devices, VNIs and what the bridges and SVIs of those VNIs learned."""

    wanted: frozenset[int] | None = None  # the configured VNI list (None: every VNI)
    links: dict[int, Link] = field(default_factory=dict)
    vnis: dict[int, LocalVni] = field(default_factory=dict)
    fdb: dict[BridgeMac, LocalMac] = field(default_factory=dict)
    # (svi, ip) -> MAC; change it through set_neigh/pop_neigh/clear_neigh (they keep _ips)
    neigh: dict[DeviceIp, str] = field(default_factory=dict)
    _ips: dict[tuple[int, str], set[str]] = field(default_factory=dict)  # (svi, MAC) -> IPs
    seq: dict[VniMac, int] = field(default_factory=dict)  # our MAC mobility sequence
    # indexes over vnis, rebuilt by relink()
    vxlan_ports: set[int] = field(default_factory=set)
    by_vxlan: dict[int, LocalVni] = field(default_factory=dict)
    by_bridge: dict[tuple[int, int | None], int] = field(default_factory=dict)
    by_svi: dict[int, int] = field(default_factory=dict)
    managed: Managed = field(default_factory=Managed)  # where our entries live

    def sizes(self) -> dict[str, TableSize]:
        """What the bridges and SVIs learned (``show memory``)."""
        return {
            "local-macs": indexed(size_of(self.fdb), size_of(self.seq)),
            "local-neigh": indexed(size_of(self.neigh), size_of(self._ips, 1)),
        }

    def relink(self) -> dict[int, LocalVni]:
        """Derive the VNIs from the links again; returns the previous VNIs."""
        old = self.vnis
        self.vnis = derive_vnis(self.links.values(), self.wanted)
        self.vxlan_ports = {i for i, link in self.links.items() if isinstance(link, VxlanDevice)}
        self.by_vxlan = {lv.vxlan_ifindex: lv for lv in self.vnis.values()}
        self.by_bridge = {(lv.bridge_ifindex, lv.vlan): lv.vni for lv in self.vnis.values()}
        self.by_svi = {
            lv.svi_ifindex: lv.vni for lv in self.vnis.values() if lv.svi_ifindex is not None
        }
        # derived here, once per device change: the daemon asks for it on every flush
        self.managed = Managed(frozenset(self.by_vxlan), frozenset(self.by_svi))
        return old

    def mac(self, lv: LocalVni, mac: str) -> LocalMac | None:
        return self.fdb.get(build(BridgeMac, (lv.bridge_ifindex, lv.vlan, mac)))

    def vni_of(self, key: BridgeMac) -> int | None:
        return self.by_bridge.get((key.bridge, key.vlan))

    def ips_of(self, lv: LocalVni, mac: str) -> list[str]:
        """The IPs bound to ``mac`` on the VNI's SVI (an index: one MAC's change must not
        cost a scan of every binding of every VNI)."""
        if lv.svi_ifindex is None:
            return []
        ips = self._ips.get((lv.svi_ifindex, mac))
        return sorted(ips) if ips else []  # most MACs have none: no sort

    def set_neigh(self, key: DeviceIp, mac: str) -> str | None:
        """Bind ``key`` to ``mac``; returns the MAC it was bound to before."""
        old = self.neigh.get(key)
        if old == mac:
            return old
        if old is not None:
            self._unbind(key, old)
        self.neigh[key] = mac
        self._ips.setdefault((key.ifindex, mac), set()).add(key.ip)
        return old

    def pop_neigh(self, key: DeviceIp) -> str | None:
        mac = self.neigh.pop(key, None)
        if mac is not None:
            self._unbind(key, mac)
        return mac

    def clear_neigh(self) -> None:
        self.neigh.clear()
        self._ips.clear()

    def _unbind(self, key: DeviceIp, mac: str) -> None:
        ips = self._ips.get((key.ifindex, mac))
        if ips is not None:
            ips.discard(key.ip)
            if not ips:
                del self._ips[(key.ifindex, mac)]

    def forget_vni(self, vni: int) -> None:
        self.seq = {k: v for k, v in self.seq.items() if k.vni != vni}
