"""Which VLAN a VXLAN bridge port carries, from the bridge's AF_BRIDGE link messages.

The bridge reports per-port VLANs in RTM_NEWLINK messages of family AF_BRIDGE (dump with
IFLA_EXT_MASK = RTEXT_FILTER_BRVLAN; notifications use the compressed form), inside
IFLA_AF_SPEC (include/uapi/linux/if_bridge.h):

- IFLA_BRIDGE_VLAN_INFO, struct bridge_vlan_info {u16 flags; u16 vid}: flag PVID = untagged
  frames entering the port join this VLAN. Frames decapsulated from a classic (one VNI)
  VXLAN device arrive untagged, so the PVID is the VNI's VLAN (FRR's "access VLAN").
  RANGE_BEGIN/RANGE_END mark the ends of a compressed range; the PVID is never part of one
  (ranges only merge VLANs with equal flags, and only one VLAN has PVID).
- IFLA_BRIDGE_VLAN_TUNNEL_INFO, nested {TUNNEL_ID u32, TUNNEL_VID u16, TUNNEL_FLAGS u16}:
  explicit VLAN <-> tunnel id (VNI) mapping of a `vlan_tunnel on` port; ranges come as a
  RANGE_BEGIN entry followed by a RANGE_END entry, VLANs and VNIs both consecutive.
An explicit tunnel mapping wins over the PVID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10


@dataclass(frozen=True, slots=True)
class PortVlans:
    """VLAN membership of one bridge port."""

    ifindex: int
    pvid: int | None = None
    tunnels: dict[int, int] = field(default_factory=dict, hash=False)  # tunnel id (VNI) -> vid

    def vlan_for(self, vni: int) -> int | None:
        return self.tunnels.get(vni, self.pvid)


def port_vlans(
    ifindex: int,
    vlan_infos: Iterable[tuple[int, int]],
    tunnel_infos: Iterable[tuple[int, int, int]],
) -> PortVlans:
    """Interpret (flags, vid) VLAN entries and (flags, vid, tunnel id) tunnel entries."""
    pvid = None
    for flags, vid in vlan_infos:
        if flags & BRIDGE_VLAN_INFO_PVID:
            pvid = vid
    tunnels: dict[int, int] = {}
    begin: tuple[int, int] | None = None
    for flags, vid, tunnel_id in tunnel_infos:
        if flags & BRIDGE_VLAN_INFO_RANGE_BEGIN:
            begin = (vid, tunnel_id)
            continue
        if flags & BRIDGE_VLAN_INFO_RANGE_END and begin is not None:
            first_vid, first_id = begin
            # a range maps vid first_vid+k to tunnel id first_id+k
            if vid - first_vid == tunnel_id - first_id and vid >= first_vid:
                for k in range(vid - first_vid + 1):
                    tunnels[first_id + k] = first_vid + k
            begin = None
            continue
        begin = None
        tunnels[tunnel_id] = vid
    return PortVlans(ifindex, pvid, tunnels)
