"""Typed network devices and bridge ports' VLANs, decoded from RTM_NEWLINK messages.

Both read the few attributes we use straight from the bytes. ``link_of``: every full dump
(each periodic reconcile) decodes every device, and pyroute2's generic ``ifinfmsg`` decoder
took ~0.4 ms a device (0.2 s of a reconcile's 0.26 s at 500 devices). ``port_vlans_of``:
a bridge reports its ports (VLANs, STP state, carrier) as AF_BRIDGE messages, whenever a
port comes or goes (every VM started on a hypervisor); pyroute2 decoded those and was
imported for the first one, ~125 ms of CPU and ~10 MiB that stayed, in the middle of
whatever the core was doing (an idle window's whole CPU). The agent imports no pyroute2.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator

from evpn_agent.kernel.bridge_vlan import PortVlans, port_vlans
from evpn_agent.model import BridgeDevice, Link, OtherLink, VxlanDevice

IFF_UP = 0x1

# rtnetlink attribute numbers (linux/if_link.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 5, 10, 18
IFLA_AF_SPEC = 26
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_LOCAL6 = 1, 4, 7, 17
IFLA_BR_VLAN_FILTERING = 7
IFLA_VLAN_ID = 1
# inside a bridge port's IFLA_AF_SPEC (linux/if_bridge.h)
IFLA_BRIDGE_VLAN_INFO, IFLA_BRIDGE_VLAN_TUNNEL_INFO = 2, 3
IFLA_BRIDGE_VLAN_TUNNEL_ID, IFLA_BRIDGE_VLAN_TUNNEL_VID, IFLA_BRIDGE_VLAN_TUNNEL_FLAGS = 1, 2, 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_ATTR = struct.Struct("=HH")
_VLAN_INFO = struct.Struct("=HH")  # struct bridge_vlan_info: flags, vid


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each rtattr in data[start:end]; stops at a malformed one."""
    while start + 4 <= end:
        length, kind = _ATTR.unpack_from(data, start)
        if length < 4 or start + length > end:
            return
        yield kind & NLA_TYPE_MASK, data[start + 4 : start + length]
        start += (length + 3) & ~3


def _string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(value: bytes) -> int:
    return int(struct.unpack_from("=I", value)[0]) if len(value) >= 4 else 0


def _u16(value: bytes) -> int:
    return int(struct.unpack_from("=H", value)[0]) if len(value) >= 2 else 0


def link_of(data: bytes) -> Link:
    """The device of one RTM_NEWLINK message (header included), family AF_UNSPEC."""
    offset = _HEADER.size
    _family, _type, ifindex, flags, _change = _IFINFO.unpack_from(data, offset)
    name, master, address, link = "", None, "", None
    kind: str | None = None
    info_data = b""
    for attr, value in _attrs(data, offset + _IFINFO.size, len(data)):
        if attr == IFLA_IFNAME:
            name = _string(value)
        elif attr == IFLA_MASTER:
            master = _u32(value) or None
        elif attr == IFLA_ADDRESS:
            address = ":".join(f"{b:02x}" for b in value)
        elif attr == IFLA_LINK:
            link = _u32(value)
        elif attr == IFLA_LINKINFO:
            for inner, payload in _attrs(value, 0, len(value)):
                if inner == IFLA_INFO_KIND:
                    kind = _string(payload)
                elif inner == IFLA_INFO_DATA:
                    info_data = payload
    fields = dict(_attrs(info_data, 0, len(info_data)))
    up = bool(flags & IFF_UP)
    if kind == "vxlan" and info_data:
        local: str | None = None  # as pyroute2 gives it: the IPv4 attribute first
        if len(v4 := fields.get(IFLA_VXLAN_LOCAL, b"")) == 4:
            local = socket.inet_ntoa(v4)
        elif len(v6 := fields.get(IFLA_VXLAN_LOCAL6, b"")) == 16:
            local = str(ipaddress.IPv6Address(v6))
        learning = fields.get(IFLA_VXLAN_LEARNING, b"\0")
        return VxlanDevice(
            ifindex=ifindex,
            name=name,
            vni=_u32(fields.get(IFLA_VXLAN_ID, b"")),
            local=local,
            master=master,
            learning=bool(learning and learning[0]),
            up=up,
        )
    if kind == "bridge":
        filtering = fields.get(IFLA_BR_VLAN_FILTERING, b"\0")
        return BridgeDevice(
            ifindex=ifindex,
            name=name,
            mac=address,
            vlan_filtering=bool(filtering and filtering[0]),
            up=up,
        )
    vlan_id = None
    if kind == "vlan" and len(raw := fields.get(IFLA_VLAN_ID, b"")) >= 2:
        vlan_id = _u16(raw)
    return OtherLink(
        ifindex=ifindex,
        name=name,
        master=master,
        kind=kind,
        vlan_id=vlan_id,
        link=link if kind == "vlan" else None,
        up=up,
    )


def port_vlans_of(data: bytes) -> PortVlans:
    """The VLANs of the bridge port in one RTM_NEWLINK message of family AF_BRIDGE (header
    included): its IFLA_AF_SPEC's VLAN entries and VLAN-tunnel entries (see bridge_vlan)."""
    offset = _HEADER.size
    _family, _type, ifindex, _flags, _change = _IFINFO.unpack_from(data, offset)
    vlan_infos: list[tuple[int, int]] = []
    tunnel_infos: list[tuple[int, int, int]] = []
    for attr, spec in _attrs(data, offset + _IFINFO.size, len(data)):
        if attr != IFLA_AF_SPEC:
            continue
        for inner, value in _attrs(spec, 0, len(spec)):
            if inner == IFLA_BRIDGE_VLAN_INFO and len(value) >= _VLAN_INFO.size:
                flags, vid = _VLAN_INFO.unpack_from(value)
                vlan_infos.append((flags, vid))
            elif inner == IFLA_BRIDGE_VLAN_TUNNEL_INFO:
                fields = dict(_attrs(value, 0, len(value)))
                tunnel_id = fields.get(IFLA_BRIDGE_VLAN_TUNNEL_ID, b"")
                vid_value = fields.get(IFLA_BRIDGE_VLAN_TUNNEL_VID, b"")
                if len(tunnel_id) < 4 or len(vid_value) < 2:
                    continue  # an entry without both is no mapping
                tunnel_flags = _u16(fields.get(IFLA_BRIDGE_VLAN_TUNNEL_FLAGS, b""))
                tunnel_infos.append((tunnel_flags, _u16(vid_value), _u32(tunnel_id)))
    return port_vlans(ifindex, vlan_infos, tunnel_infos)
