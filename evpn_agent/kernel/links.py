"""Typed network devices, decoded from RTM_NEWLINK messages.

``link_of`` reads the few attributes we use straight from the bytes: every full dump
(each periodic reconcile) decodes every device, and pyroute2's generic ``ifinfmsg`` decoder
took ~0.4 ms a device (0.2 s of a reconcile's 0.26 s at 500 devices). ``parse_link``
(pyroute2) stays for the AF_BRIDGE port messages (VLAN tables), which are few, and only a
VLAN-aware bridge has: pyroute2 is imported then, not with this module (its package imports
most of itself, ~170 ms of CPU at each start of the core and of ``evpn-agent run``).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from evpn_agent.model import BridgeDevice, Link, OtherLink, VxlanDevice

if TYPE_CHECKING:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

IFF_UP = 0x1


def parse_link(data: bytes) -> ifinfmsg:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # see the module's docstring

    msg = ifinfmsg(data)
    msg.decode()
    return msg


# rtnetlink attribute numbers (linux/if_link.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 5, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LEARNING, IFLA_VXLAN_LOCAL6 = 1, 4, 7, 17
IFLA_BR_VLAN_FILTERING = 7
IFLA_VLAN_ID = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_ATTR = struct.Struct("=HH")


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
        vlan_id = int(struct.unpack_from("=H", raw)[0])
    return OtherLink(
        ifindex=ifindex,
        name=name,
        master=master,
        kind=kind,
        vlan_id=vlan_id,
        link=link if kind == "vlan" else None,
        up=up,
    )
