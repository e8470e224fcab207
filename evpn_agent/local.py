"""What this VTEP has locally: its VNIs (from links) and the MACs its bridges learned.

Pure functions and tables over the kernel adapter's observation values; no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from evpn_agent.kernel import BridgeDevice, FdbEntry, OtherLink, VxlanDevice

log = logging.getLogger(__name__)

NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

Link = VxlanDevice | BridgeDevice | OtherLink


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


@dataclass(frozen=True, slots=True)
class LocalMac:
    port: int  # ifindex of the bridge port it was learned on
    static: bool  # added by an operator (NUD_NOARP): advertised sticky


LocalFdbKey = tuple[int, int | None, str]  # (bridge ifindex, vlan, mac)


def local_mac_of(entry: FdbEntry, vxlan_ports: set[int]) -> tuple[LocalFdbKey, LocalMac] | None:
    """A bridge's own learned/static entry for a host behind a local port, else None."""
    # The bridge reports its own entries with NDA_MASTER set but without NTF_MASTER;
    # NTF_SELF entries belong to the port device itself (its address lists).
    if entry.master is None or entry.flags & NTF_SELF:
        return None
    if entry.flags & NTF_EXT_LEARNED or entry.state & NUD_PERMANENT:
        return None  # ours (remote) or the bridge's own addresses
    if entry.ifindex in vxlan_ports or entry.ifindex == entry.master:
        return None
    first = int(entry.mac[:2], 16)
    if first & 1 or entry.mac == "00:00:00:00:00:00":
        return None
    key = (entry.master, entry.vlan, entry.mac)
    return key, LocalMac(port=entry.ifindex, static=bool(entry.state & NUD_NOARP))
