"""The VXLAN devices of the interfaces file: their VNIs, the bridges they are ports of and
the VLANs they carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evpn_agent.config import MAX_VNI
from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.interfaces import Attr, Interfaces, Stanza
from evpn_agent.lnv.values import as_bool, as_number

# Cumulus Linux reserves VNI 0 and 2^24-1.
MAX_LNV_VNI = MAX_VNI - 1


@dataclass(frozen=True)
class Device:
    stanza: Stanza
    vni: int
    vni_attr: Attr


@dataclass(frozen=True)
class VniInfo:
    vni: int
    device: str
    bridge: str | None
    vlan: int | None
    where: Location

    def to_json(self) -> dict[str, Any]:
        return {
            "vni": self.vni,
            "device": self.device,
            "bridge": self.bridge,
            "vlan": self.vlan,
            "file": self.where.file,
            "line": self.where.line,
        }


def single(stanza: Stanza, name: str, f: Findings) -> Attr | None:
    """The attribute ``name`` of ``stanza``, which must not have differing values."""
    attrs = stanza.all(name)
    for other in attrs[1:]:
        if other.value != attrs[0].value:
            f.error(
                other.where,
                f"iface {stanza.name}: {name} {other.value} conflicts with "
                f"{name} {attrs[0].value} at {attrs[0].where}",
            )
    return attrs[0] if attrs else None


def vxlan_devices(ifaces: Interfaces, f: Findings) -> list[Device]:
    """The stanzas with a vxlan-id, each VNI on one device only."""
    devices: list[Device] = []
    by_vni: dict[int, Device] = {}
    for stanza in ifaces.stanzas.values():
        attr = single(stanza, "vxlan-id", f)
        if attr is None:
            continue
        vni = as_number(attr.value)
        if vni is None:
            f.error(attr.where, f"iface {stanza.name}: vxlan-id {attr.value!r} is not a number")
            continue
        if not 1 <= vni <= MAX_LNV_VNI:
            f.error(
                attr.where,
                f"iface {stanza.name}: vxlan-id {vni} is out of range 1..{MAX_LNV_VNI}",
            )
            continue
        if vni in by_vni:
            first = by_vni[vni]
            f.error(
                attr.where,
                f"iface {stanza.name}: VNI {vni} is also used by {first.stanza.name} "
                f"({first.vni_attr.where})",
            )
            continue
        device = Device(stanza, vni, attr)
        by_vni[vni] = device
        devices.append(device)
    return devices


def bridges_by_port(ifaces: Interfaces, f: Findings) -> dict[str, Stanza]:
    """Each port's bridge, from the bridges' bridge-ports; the first bridge wins."""
    out: dict[str, Stanza] = {}
    for stanza in ifaces.stanzas.values():
        for attr in stanza.all("bridge-ports"):
            for port in attr.value.split():
                if port in out and out[port] is not stanza:
                    f.warn(attr.where, f"{port} is a port of {out[port].name} and {stanza.name}")
                out.setdefault(port, stanza)
    return out


def vni_map(devices: list[Device], bridges: dict[str, Stanza], f: Findings) -> list[VniInfo]:
    """Each device's VNI, bridge and VLAN, by VNI."""
    out: list[VniInfo] = []
    for d in devices:
        bridge = bridges.get(d.stanza.name)
        vlan = None
        if bridge is None:
            f.warn(
                d.stanza.where,
                f"{d.stanza.name} (VNI {d.vni}) is in no bridge's bridge-ports (globs and "
                "ranges are not expanded): evpn-agent serves VXLAN devices enslaved to a bridge",
            )
        elif _vlan_aware(bridge):
            vlan = _access_vlan(d.stanza, bridge, f)
            vids = _vids(bridge)
            if vlan is not None and vids is not None and vlan not in vids:
                f.warn(
                    d.stanza.where,
                    f"VLAN {vlan} of {d.stanza.name} is not in {bridge.name}'s bridge-vids",
                )
        out.append(
            VniInfo(d.vni, d.stanza.name, bridge.name if bridge else None, vlan, d.vni_attr.where)
        )
    return sorted(out, key=lambda v: v.vni)


def _vlan_aware(bridge: Stanza) -> bool:
    attr = bridge.first("bridge-vlan-aware")
    return attr is not None and as_bool(attr.value) is True


def _vid(attr: Attr, owner: str, f: Findings) -> int | None:
    vid = as_number(attr.value)
    if vid is None or not 1 <= vid <= 4094:
        f.error(attr.where, f"iface {owner}: {attr.name} {attr.value!r} is not a VLAN id 1..4094")
        return None
    return vid


def _access_vlan(device: Stanza, bridge: Stanza, f: Findings) -> int | None:
    """The VLAN a VXLAN port carries untagged: bridge-access, else the PVID."""
    for owner, name in (
        (device, "bridge-access"),
        (device, "bridge-pvid"),
        (bridge, "bridge-pvid"),
    ):
        attr = owner.first(name)
        if attr is not None:
            return _vid(attr, owner.name, f)
    f.warn(
        device.where,
        f"{device.name} has no bridge-access in VLAN-aware bridge {bridge.name}: "
        "it carries the default PVID 1",
    )
    return 1


def _vids(bridge: Stanza) -> set[int] | None:
    """The bridge's bridge-vids (e.g. '10 20 100-110'); None when absent or unreadable."""
    out: set[int] = set()
    attrs = bridge.all("bridge-vids")
    for attr in attrs:
        for word in attr.value.split():
            first, _, last = word.partition("-")
            low, high = as_number(first), as_number(last or first)
            if low is None or high is None:
                return None
            out.update(range(low, high + 1))
    return out if attrs else None
