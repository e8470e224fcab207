"""Typed network devices, decoded from RTM_NEWLINK messages with pyroute2's `ifinfmsg`.

Link messages are few (one per device and change), so the library's decoder is fine here.
"""

from __future__ import annotations

from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from evpn_agent.model import BridgeDevice, Link, OtherLink, VxlanDevice

IFF_UP = 0x1


def parse_link(data: bytes) -> ifinfmsg:
    msg = ifinfmsg(data)
    msg.decode()
    return msg


def decode_link(msg: Any) -> Link:
    """The device described by a decoded pyroute2 `ifinfmsg` (family AF_UNSPEC)."""
    ifindex: int = msg["index"]
    name: str = msg.get_attr("IFLA_IFNAME") or ""
    master: int | None = msg.get_attr("IFLA_MASTER") or None
    up = bool(msg["flags"] & IFF_UP)
    info = msg.get_attr("IFLA_LINKINFO")
    kind: str | None = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    if kind == "vxlan" and data is not None:
        local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
        return VxlanDevice(
            ifindex=ifindex,
            name=name,
            vni=data.get_attr("IFLA_VXLAN_ID") or 0,
            local=local or None,
            master=master,
            learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
            up=up,
        )
    if kind == "bridge":
        filtering = data.get_attr("IFLA_BR_VLAN_FILTERING") if data is not None else None
        return BridgeDevice(
            ifindex=ifindex,
            name=name,
            mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
            vlan_filtering=bool(filtering),
            up=up,
        )
    vlan_id = data.get_attr("IFLA_VLAN_ID") if kind == "vlan" and data is not None else None
    return OtherLink(
        ifindex=ifindex,
        name=name,
        master=master,
        kind=kind,
        vlan_id=vlan_id,
        link=msg.get_attr("IFLA_LINK") if kind == "vlan" else None,
        up=up,
    )
