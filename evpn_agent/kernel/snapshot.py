"""Read the whole relevant kernel state: devices, FDB, neighbours."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Set

from evpn_agent.kernel import netlink
from evpn_agent.kernel.bridge_vlan import PortVlans
from evpn_agent.kernel.dumped import Dumped
from evpn_agent.kernel.links import link_of, port_vlans_of
from evpn_agent.kernel.neighbours import decode_neighbour
from evpn_agent.kernel.netlink import (
    AF_BRIDGE,
    AF_UNSPEC,
    NDMSG,
    NLMSGHDR,
    NTF_SELF,
    RTEXT_FILTER_BRVLAN,
    RTEXT_FILTER_SKIP_STATS,
    U32,
)
from evpn_agent.model import BridgeDevice, FdbEntry, KernelSnapshot, Link, NeighEntry, VxlanDevice

log = logging.getLogger(__name__)

_NDMSG_AT = NLMSGHDR.size


def _link_at(buf: bytearray, offset: int) -> Link:
    (length,) = U32.unpack_from(buf, offset)
    return link_of(bytes(buf[offset : offset + length]))


def _port_vlans_at(buf: bytearray, offset: int) -> PortVlans:
    (length,) = U32.unpack_from(buf, offset)
    return port_vlans_of(bytes(buf[offset : offset + length]))


def _fdb_at(buf: bytearray, offset: int) -> FdbEntry | None:
    entry = decode_neighbour(buf, offset)
    return entry if isinstance(entry, FdbEntry) else None


def _neigh_at(buf: bytearray, offset: int) -> NeighEntry | None:
    entry = decode_neighbour(buf, offset)
    return entry if isinstance(entry, NeighEntry) else None


def with_vlans(links: Iterable[Link], ports: Mapping[int, PortVlans]) -> list[Link]:
    """Fill in each VXLAN device's VLAN from its bridge port's VLAN table."""
    out: list[Link] = []
    for link in links:
        if isinstance(link, VxlanDevice):
            port = ports.get(link.ifindex)
            vlan = port.vlan_for(link.vni) if port is not None else None
            if vlan != link.vlan:
                link = dataclasses.replace(link, vlan=vlan)
        out.append(link)
    return out


async def dump_port_vlans() -> dict[int, PortVlans]:
    """Per-port VLANs of every bridge port; empty where the kernel cannot report them."""
    try:
        ports = await netlink.request_dump(
            netlink.link_dump_request(AF_BRIDGE, RTEXT_FILTER_BRVLAN), _port_vlans_at
        )
    except OSError as exc:  # no bridge VLAN support: there is no VLAN to map
        log.info("bridge VLAN dump unavailable: %s", exc)
        return {}
    return {port.ifindex: port for port in ports}


async def dump_devices() -> tuple[list[Link], dict[int, PortVlans]]:
    """All devices (VXLAN VLANs filled in) and the bridge ports' VLAN tables."""
    links: list[Link] = await netlink.request_dump(
        netlink.link_dump_request(AF_UNSPEC, RTEXT_FILTER_SKIP_STATS), _link_at
    )
    # Only a VLAN-aware bridge maps VNIs to VLANs. Without one, the per-port dump (a
    # message a port, every reconcile) has nothing to tell.
    if not any(isinstance(link, BridgeDevice) and link.vlan_filtering for link in links):
        return links, {}
    ports = await dump_port_vlans()
    return with_vlans(links, ports), ports


async def dump_links() -> list[Link]:
    links, _ports = await dump_devices()
    return links


async def dump_fdb(skip_bridge_side: Set[int] = frozenset()) -> tuple[Dumped[FdbEntry], bool]:
    """The bridge FDB, and whether the dump is complete.

    ``skip_bridge_side``: devices (the VXLAN devices) whose bridge entries (not NTF_SELF)
    are left out undecoded. Every remote MAC has one there beside its VXLAN entry, and
    nothing the agent derives reads them: at scale they were a third of a dump's work.
    """
    wanted = None
    if skip_bridge_side:

        def wanted(buf: bytearray, offset: int) -> bool:
            _family, ifindex, _state, flags, _type = NDMSG.unpack_from(buf, offset + _NDMSG_AT)
            return ifindex not in skip_bridge_side or bool(flags & NTF_SELF)

    request = netlink.neigh_dump_request(AF_BRIDGE)
    return await netlink.request_dump_kept(request, _fdb_at, wanted)


async def dump_neighbours() -> tuple[Dumped[NeighEntry], bool]:
    """ARP and ND entries, and whether the dump is complete."""
    # AF_UNSPEC walks the ARP and ND tables (the FDB only answers AF_BRIDGE)
    return await netlink.request_dump_kept(netlink.neigh_dump_request(AF_UNSPEC), _neigh_at)


async def dump(*, vxlan_bridge_side: bool = True) -> KernelSnapshot:
    """Devices, FDB and neighbours of the current network namespace; without the bridge
    entries of VXLAN devices if not ``vxlan_bridge_side`` (see dump_fdb).

    Bind the Monitor first: changes during the dump then arrive as events afterwards.
    """
    links = await dump_links()
    skip = (
        frozenset()
        if vxlan_bridge_side
        else frozenset(link.ifindex for link in links if isinstance(link, VxlanDevice))
    )
    fdb, fdb_complete = await dump_fdb(skip)
    neigh, neigh_complete = await dump_neighbours()
    return KernelSnapshot(tuple(links), fdb, neigh, fdb_complete and neigh_complete)
