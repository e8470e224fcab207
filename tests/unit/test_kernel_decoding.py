"""Decoding of kernel messages: neighbours (lean decoder), bridge-port VLANs, links, and the
monitor's echo filter, all on constructed messages."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from evpn_agent.kernel.bridge_vlan import PortVlans, port_vlans
from evpn_agent.kernel.echo_filter import build_program, run_program
from evpn_agent.kernel.links import IFF_UP, link_of, port_vlans_of
from evpn_agent.kernel.monitor import Monitor
from evpn_agent.kernel.neighbours import decode_neighbour
from evpn_agent.model import (
    BridgeDevice,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    Link,
    LinkRemoved,
    LinkUpdated,
    Managed,
    NeighEntry,
    NeighUpdated,
    OtherLink,
    VxlanDevice,
)

AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10
NEWLINK, DELLINK, NEWNEIGH, DELNEIGH = 16, 17, 28, 29
NESTED = 0x8000
PVID, UNTAGGED, RANGE_BEGIN, RANGE_END = 0x2, 0x4, 0x8, 0x10
VX, BR, HOST = 5, 4, 6


# --- message builders (kernel layout) -------------------------------------------------------


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(msg_type: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), msg_type, 0, 0, 0) + body


def neigh_msg(
    msg_type: int, family: int, ifindex: int, state: int, flags: int, attrs: Any
) -> bytes:
    msg = ndmsg()
    msg["header"]["type"] = msg_type
    msg["family"] = family
    msg["ifindex"] = ifindex
    msg["state"] = state
    msg["flags"] = flags
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def vlan_info(flags: int, vid: int) -> bytes:
    return nla(2, struct.pack("=HH", flags, vid))


def tunnel_info(vni: int, vid: int, flags: int = 0, nested_flag: int = 0) -> bytes:
    inner = nla(1, struct.pack("=I", vni)) + nla(2, struct.pack("=H", vid))
    if flags:
        inner += nla(3, struct.pack("=H", flags))
    return nla(3 | nested_flag, inner)


def bridge_port_msg(ifindex: int, af_spec: bytes | None, msg_type: int = NEWLINK) -> bytes:
    """RTM_NEWLINK of family AF_BRIDGE as br_fill_ifinfo() builds it."""
    body = struct.pack("=BxHiII", AF_BRIDGE, 1, ifindex, 0x1043, 0)
    body += nla(3, b"vx100\0") + nla(10, struct.pack("=I", BR)) + nla(4, struct.pack("=I", 1500))
    if af_spec is not None:
        body += nla(26, af_spec)
    return nlmsg(msg_type, body)


def vxlan_link_msg(
    ifindex: int = VX, vni: int = 100, up: bool = True, msg_type: int = NEWLINK
) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = msg_type
    msg["index"] = ifindex
    msg["flags"] = 0x1043 if up else 0x1002
    vxlan = [("IFLA_VXLAN_ID", vni), ("IFLA_VXLAN_LOCAL", "192.0.2.1"), ("IFLA_VXLAN_LEARNING", 0)]
    msg["attrs"] = [
        ("IFLA_IFNAME", "vx100"),
        ("IFLA_MASTER", BR),
        (
            "IFLA_LINKINFO",
            {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": vxlan})]},
        ),
    ]
    msg.encode()
    return bytes(msg.data)


# --- neighbours -----------------------------------------------------------------------------


def pyroute2_decode(data: bytes) -> dict[str, Any]:
    msg = ndmsg(data)
    msg.decode()
    return {"ifindex": msg["ifindex"], "flags": msg["flags"], "state": msg["state"]} | {
        name: msg.get_attr(name)
        for name in ("NDA_LLADDR", "NDA_DST", "NDA_VLAN", "NDA_MASTER", "NDA_PROTOCOL")
    }


@pytest.mark.parametrize(
    ("family", "attrs"),
    [
        (AF_BRIDGE, [("NDA_LLADDR", "02:00:5e:00:01:01"), ("NDA_MASTER", BR)]),
        (AF_BRIDGE, [("NDA_LLADDR", "02:00:5e:00:01:01"), ("NDA_VLAN", 10), ("NDA_MASTER", 4)]),
        (AF_BRIDGE, [("NDA_LLADDR", "00:00:00:00:00:00"), ("NDA_DST", "198.51.100.7")]),
        (AF_BRIDGE, [("NDA_LLADDR", "02:00:5e:00:01:01"), ("NDA_DST", "2001:db8::7")]),
        (AF_INET, [("NDA_DST", "203.0.113.4"), ("NDA_LLADDR", "02:00:5e:00:01:01")]),
        (AF_INET6, [("NDA_DST", "2001:db8::4"), ("NDA_LLADDR", "02:aa:5e:00:01:01"),
                    ("NDA_PROTOCOL", 186)]),
        (AF_INET, [("NDA_DST", "203.0.113.5")]),  # incomplete: no lladdr
    ],
)  # fmt: skip
def test_neighbour_decoder_agrees_with_pyroute2(family: int, attrs: Any) -> None:
    data = neigh_msg(NEWNEIGH, family, VX, 0x42, 0x12, attrs)
    ref = pyroute2_decode(data)
    entry = decode_neighbour(data)
    if family == AF_BRIDGE:
        assert isinstance(entry, FdbEntry)
        assert (entry.mac, entry.dst, entry.vlan, entry.master) == (
            ref["NDA_LLADDR"], ref["NDA_DST"], ref["NDA_VLAN"], ref["NDA_MASTER"],
        )  # fmt: skip
    else:
        assert isinstance(entry, NeighEntry)
        assert (entry.ip, entry.mac, entry.protocol) == (
            ref["NDA_DST"], ref["NDA_LLADDR"], ref["NDA_PROTOCOL"],
        )  # fmt: skip
    assert (entry.ifindex, entry.flags, entry.state) == (VX, ref["flags"], ref["state"])


def test_fdb_entry_properties() -> None:
    master = FdbEntry(VX, "02:00:5e:00:01:01", None, None, BR, 0x10, 0x02)
    assert master.is_master and master.ext_learned and not master.is_self
    flood = FdbEntry(VX, "00:00:00:00:00:00", None, "192.0.2.9", None, 0x02, 0xC0)
    assert flood.is_flood and flood.is_self and flood.permanent and not flood.is_static
    static = FdbEntry(HOST, "02:00:5e:00:01:02", None, None, BR, 0, 0x40)
    assert static.is_static and static.noarp


def test_other_families_are_ignored() -> None:
    assert decode_neighbour(neigh_msg(NEWNEIGH, 28, 1, 0, 0, [])) is None


# --- bridge port VLANs ----------------------------------------------------------------------


def parse_link(data: bytes) -> Any:
    """pyroute2's generic decoding of a link message: the reference for ours."""
    msg = ifinfmsg(data)
    msg.decode()
    return msg


def pyroute2_port_vlans(data: bytes) -> PortVlans:
    """The reference: a bridge port's VLANs as pyroute2's `ifinfmsg` decoding reads them."""
    msg = parse_link(data)
    spec = msg.get_attr("IFLA_AF_SPEC")
    if spec is None:
        return PortVlans(msg["index"])
    vlan_infos = [(v["flags"], v["vid"]) for v in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO")]
    tunnel_infos = [
        (
            t.get_attr("IFLA_BRIDGE_VLAN_TUNNEL_FLAGS") or 0,
            t.get_attr("IFLA_BRIDGE_VLAN_TUNNEL_VID"),
            t.get_attr("IFLA_BRIDGE_VLAN_TUNNEL_ID"),
        )
        for t in spec.get_attrs("IFLA_BRIDGE_VLAN_TUNNEL_INFO")
    ]
    return port_vlans(
        msg["index"],
        vlan_infos,
        [(f, vid, tid) for f, vid, tid in tunnel_infos if vid is not None and tid is not None],
    )


def decode_ports(data: bytes) -> PortVlans:
    ours = port_vlans_of(data)
    assert ours == pyroute2_port_vlans(data)  # every message below, both ways
    return ours


def test_pvid_is_the_vlan_of_a_classic_vxlan_port() -> None:
    spec = vlan_info(0, 1) + vlan_info(PVID | UNTAGGED, 100) + vlan_info(0, 200)
    ports = decode_ports(bridge_port_msg(VX, spec))
    assert ports.ifindex == VX and ports.pvid == 100
    assert ports.vlan_for(100) == 100 and ports.vlan_for(4242) == 100


def test_compressed_ranges_keep_the_pvid_single() -> None:
    spec = vlan_info(RANGE_BEGIN, 10) + vlan_info(RANGE_END, 20) + vlan_info(PVID | UNTAGGED, 30)
    assert decode_ports(bridge_port_msg(VX, spec)).pvid == 30


def test_no_pvid_means_no_vlan() -> None:
    spec = vlan_info(UNTAGGED, 10) + vlan_info(0, 20)
    assert decode_ports(bridge_port_msg(VX, spec)).vlan_for(100) is None


def test_no_af_spec_means_no_vlan() -> None:
    """What a bridge without VLAN filtering (this machine's kernel) reports."""
    ports = decode_ports(bridge_port_msg(VX, None))
    assert ports.pvid is None and ports.tunnels == {} and ports.vlan_for(100) is None


@pytest.mark.parametrize("nested_flag", [0, NESTED])
def test_tunnel_info_maps_vni_to_vlan(nested_flag: int) -> None:
    spec = vlan_info(PVID | UNTAGGED, 1) + vlan_info(0, 10) + vlan_info(0, 11)
    spec += tunnel_info(10010, 10, nested_flag=nested_flag)
    spec += tunnel_info(10011, 11, nested_flag=nested_flag)
    ports = decode_ports(bridge_port_msg(VX, spec))
    assert ports.tunnels == {10010: 10, 10011: 11}
    assert ports.vlan_for(10011) == 11
    assert ports.vlan_for(99) == 1  # not mapped: the PVID


def test_tunnel_info_ranges_expand() -> None:
    spec = tunnel_info(1000, 100, RANGE_BEGIN) + tunnel_info(1003, 103, RANGE_END)
    spec += tunnel_info(5000, 500)
    assert decode_ports(bridge_port_msg(VX, spec)).tunnels == {
        1000: 100, 1001: 101, 1002: 102, 1003: 103, 5000: 500,
    }  # fmt: skip


def test_a_tunnel_entry_without_its_vni_or_vlan_maps_nothing() -> None:
    no_vid = nla(3, nla(1, struct.pack("=I", 10010)))
    no_vni = nla(3, nla(2, struct.pack("=H", 10)))
    spec = vlan_info(PVID | UNTAGGED, 1) + no_vid + no_vni + tunnel_info(10011, 11)
    assert decode_ports(bridge_port_msg(VX, spec)).tunnels == {10011: 11}


def test_other_bridge_attributes_and_a_deleted_port_are_read_alike() -> None:
    """IFLA_BRIDGE_FLAGS and _MODE (a port's settings) sit beside the VLANs; an
    RTM_DELLINK carries the same header: its ifindex says which port left."""
    spec = nla(0, struct.pack("=H", 1)) + nla(1, struct.pack("=H", 0))
    spec += vlan_info(PVID | UNTAGGED, 42)
    assert decode_ports(bridge_port_msg(VX, spec)).pvid == 42
    assert decode_ports(bridge_port_msg(HOST, None, DELLINK)).ifindex == HOST


def test_inconsistent_tunnel_range_is_dropped() -> None:
    ports = port_vlans(VX, [], [(RANGE_BEGIN, 100, 1000), (RANGE_END, 103, 1010), (0, 7, 70)])
    assert ports.tunnels == {70: 7}


def decode_link(msg: Any) -> Link:
    """The reference: the device as pyroute2's generic `ifinfmsg` decoding reads it."""
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


# --- links ----------------------------------------------------------------------------------


def link_msg(ifindex: int, name: str, kind: str, data: Any, extra: Any = ()) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = NEWLINK
    msg["index"] = ifindex
    msg["flags"] = 0x1043
    info: list[Any] = [("IFLA_INFO_KIND", kind)]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": info}), *extra]
    msg.encode()
    return bytes(msg.data)


def test_decode_links() -> None:
    assert decode_link(parse_link(vxlan_link_msg())) == VxlanDevice(
        VX, "vx100", 100, "192.0.2.1", BR, learning=False, up=True, vlan=None
    )
    bridge = link_msg(
        BR, "br0", "bridge", [("IFLA_BR_VLAN_FILTERING", 1)],
        [("IFLA_ADDRESS", "02:00:5E:00:00:04")],
    )  # fmt: skip
    assert decode_link(parse_link(bridge)) == BridgeDevice(
        BR, "br0", "02:00:5e:00:00:04", True, True
    )
    svi = link_msg(9, "br0.10", "vlan", [("IFLA_VLAN_ID", 10)], [("IFLA_LINK", BR)])
    assert decode_link(parse_link(svi)) == OtherLink(9, "br0.10", None, "vlan", 10, BR, True)


# --- monitor echo filter --------------------------------------------------------------------


def fdb(msg_type: int, ifindex: int, mac: str, flags: int, dst: str | None = None) -> bytes:
    attrs: list[Any] = [("NDA_LLADDR", mac)]
    if dst:
        attrs.append(("NDA_DST", dst))
    else:
        attrs.append(("NDA_MASTER", BR))
    return neigh_msg(msg_type, AF_BRIDGE, ifindex, 0x02, flags, attrs)


def test_monitor_skips_quiet_echoes_and_decodes_the_rest() -> None:
    monitor = Monitor(Managed(vxlans=frozenset({VX}), svis=frozenset({BR})))
    ours = [
        fdb(NEWNEIGH, VX, "02:00:5e:00:01:01", 0x10),  # bridge side of a remote MAC
        fdb(NEWNEIGH, VX, "02:00:5e:00:01:01", 0x12, "198.51.100.1"),  # VXLAN side
        fdb(DELNEIGH, VX, "02:00:5e:00:01:01", 0x10),
        fdb(NEWNEIGH, VX, "00:00:00:00:00:00", 0x02, "198.51.100.1"),  # flood list
        neigh_msg(NEWNEIGH, AF_INET, BR, 0x40, 0x10, [("NDA_DST", "203.0.113.1")]),
    ]
    local_learned = fdb(NEWNEIGH, HOST, "02:00:5e:00:02:01", 0)
    static_on_vxlan = fdb(NEWNEIGH, VX, "02:00:5e:00:02:02", 0x02, "198.51.100.2")
    aged = fdb(DELNEIGH, HOST, "02:00:5e:00:02:01", 0)
    local_arp = neigh_msg(
        NEWNEIGH,
        AF_INET,
        BR,
        0x02,
        0,
        [("NDA_DST", "203.0.113.2"), ("NDA_LLADDR", "02:01:02:03:04:05")],
    )
    events = monitor.feed(b"".join([*ours, local_learned, static_on_vxlan, aged, local_arp]))
    assert [type(e) for e in events] == [FdbUpdated, FdbUpdated, FdbRemoved, NeighUpdated]
    assert isinstance(events[0], FdbUpdated) and events[0].entry.ifindex == HOST
    assert isinstance(events[1], FdbUpdated) and events[1].entry.dst == "198.51.100.2"
    assert monitor.stats.quiet == len(ours)
    # one FDB deletion that is not ours: an FDB dump running meanwhile may have skipped some
    assert monitor.fdb_generation() == (1, 0)
    # without a filter nothing is quiet
    assert len(Monitor().feed(b"".join(ours))) == len(ours)


def vxlan_of(event: object) -> VxlanDevice:
    assert isinstance(event, LinkUpdated) and isinstance(event.link, VxlanDevice)
    return event.link


def test_monitor_merges_bridge_port_vlan_into_vxlan_device() -> None:
    monitor = Monitor()
    (first,) = monitor.feed(vxlan_link_msg())
    assert vxlan_of(first).vlan is None
    assert monitor.feed(vxlan_link_msg()) == []  # unchanged: no event
    (moved,) = monitor.feed(bridge_port_msg(VX, vlan_info(PVID | UNTAGGED, 100)))
    assert vxlan_of(moved).vlan == 100
    (down,) = monitor.feed(vxlan_link_msg(up=False))
    assert (vxlan_of(down).up, vxlan_of(down).vlan) == (False, 100)
    (left,) = monitor.feed(bridge_port_msg(VX, None, DELLINK))  # port left the bridge
    assert vxlan_of(left).vlan is None
    assert monitor.feed(vxlan_link_msg(msg_type=DELLINK)) == [LinkRemoved(VX, "vx100")]


# --- in-kernel echo filter ------------------------------------------------------------------


def test_kernel_echo_filter_program() -> None:
    program = build_program(vxlans={VX, 300}, svis={BR})

    def verdict(data: bytes) -> bool:
        return run_program(program, data) != 0

    # dropped: extern_learn FDB on managed VXLAN devices, extern_learn neighbours on SVIs
    assert not verdict(fdb(NEWNEIGH, VX, "02:00:5e:00:01:01", 0x10))
    assert not verdict(fdb(DELNEIGH, 300, "02:00:5e:00:01:01", 0x12, "198.51.100.1"))
    for family in (AF_INET, AF_INET6):
        assert not verdict(neigh_msg(NEWNEIGH, family, BR, 0x40, 0x10, []))
    # passed: everything else
    assert verdict(fdb(NEWNEIGH, HOST, "02:00:5e:00:01:01", 0x10))  # other device
    assert verdict(fdb(NEWNEIGH, VX, "02:00:5e:00:01:01", 0x02, "198.51.100.1"))  # not ours
    assert verdict(fdb(NEWNEIGH, BR, "02:00:5e:00:01:01", 0x10))  # BR only quiet for neigh
    assert verdict(neigh_msg(NEWNEIGH, AF_INET, VX, 0x40, 0x10, []))  # VX only quiet for fdb
    assert verdict(neigh_msg(NEWNEIGH, AF_INET, BR, 0x02, 0, []))
    assert verdict(vxlan_link_msg())
    assert verdict(bridge_port_msg(VX, None))


def test_kernel_echo_filter_without_devices_passes_everything() -> None:
    program = build_program((), ())
    assert run_program(program, fdb(NEWNEIGH, VX, "02:00:5e:00:01:01", 0x10)) != 0
    assert run_program(program, neigh_msg(DELNEIGH, AF_INET, BR, 0x40, 0x10, [])) != 0


def test_fast_link_decoder_agrees_with_pyroute2() -> None:
    """link_of (the dump's decoder) reads what decode_link(parse_link(...)) reads."""
    messages = [
        vxlan_link_msg(),
        link_msg(BR, "br0", "bridge", [("IFLA_BR_VLAN_FILTERING", 1)],
                 [("IFLA_ADDRESS", "02:00:5E:00:00:04")]),
        link_msg(BR, "br1", "bridge", [("IFLA_BR_VLAN_FILTERING", 0)]),
        link_msg(9, "br0.10", "vlan", [("IFLA_VLAN_ID", 10)], [("IFLA_LINK", BR)]),
        link_msg(11, "vx6", "vxlan", [("IFLA_VXLAN_ID", 16777215),
                                       ("IFLA_VXLAN_LOCAL6", "2001:db8::21"),
                                       ("IFLA_VXLAN_LEARNING", 1)], [("IFLA_MASTER", BR)]),
        link_msg(12, "veth0", "veth", None, [("IFLA_MASTER", BR)]),
        link_msg(13, "lo", "", None),
    ]  # fmt: skip
    for data in messages:
        assert link_of(data) == decode_link(parse_link(data)), parse_link(data)
    # truncated attributes end the walk instead of raising
    assert link_of(messages[0][:-3]).ifindex == VX


@pytest.mark.parametrize("vlan_aware", [False, True])
def test_port_vlans_are_dumped_only_when_a_bridge_is_vlan_aware(
    vlan_aware: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a VLAN-aware bridge no VNI maps to a VLAN: the per-port dump is skipped."""
    import asyncio

    from evpn_agent.kernel import snapshot
    from evpn_agent.model import BridgeDevice, VxlanDevice

    links = [
        BridgeDevice(10, "br100", "02:00:00:00:00:10", vlan_aware, True),
        VxlanDevice(11, "vx100", 100, "192.0.2.1", 10, False, True, None),
    ]
    asked: list[str] = []

    async def links_dump(request: bytes, decode: Any) -> list[Any]:
        return links

    async def port_dump() -> dict[int, PortVlans]:
        asked.append("ports")
        return {}

    monkeypatch.setattr(snapshot.netlink, "request_dump", links_dump)
    monkeypatch.setattr(snapshot, "dump_port_vlans", port_dump)
    got, ports = asyncio.run(snapshot.dump_devices())
    assert got == links and ports == {}
    assert asked == (["ports"] if vlan_aware else [])
