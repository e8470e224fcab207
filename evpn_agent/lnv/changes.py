"""The edits the operator must make on an LNV host: interfaces file lines to remove, add or
change, and services to stop; each with its reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evpn_agent.lnv.devices import Device
from evpn_agent.lnv.findings import Location
from evpn_agent.lnv.interfaces import Attr, Interfaces, Stanza
from evpn_agent.lnv.values import as_bool
from evpn_agent.lnv.vxrd import VxrdConf

_WHY_SVCNODE = (
    "service-node replication ends: the BUM flood list comes from EVPN type-3 routes, "
    "and a remote set here would duplicate floods"
)
_WHY_REMOTEIP = "static head-end list: evpn-agent programs the flood list from EVPN type-3 routes"
_WHY_VXRD_ATTR = (
    "read only by vxrd's ifupdown2 module; ifupdown2 rejects it once the vxfld package is removed"
)
_WHY_NOLEARNING = (
    "the VXLAN device must not learn remote MACs from traffic (nolearning): "
    "evpn-agent installs them from EVPN type-2 routes"
)
_WHY_BRLEARNING = (
    "the bridge must not learn MACs behind the VXLAN port from traffic "
    "(bridge link set ... learning off); EVPN routes provide them"
)
_WHY_SUPPRESS = (
    "answers ARP/ND locally from the MAC+IP bindings in EVPN type-2 routes "
    "(neigh_suppress on), less flooding across the fabric"
)
_WHY_LOCAL = "the VXLAN device's local address is the VTEP address evpn-agent advertises"

# The LNV attributes that must go, wherever they are.
_REMOVALS = {
    "vxlan-svcnodeip": _WHY_SVCNODE,
    "vxlan-remoteip": _WHY_REMOTEIP,
    "vxrd-svcnode-ip": _WHY_VXRD_ATTR,
    "vxrd-src-ip": _WHY_VXRD_ATTR,
}


@dataclass(frozen=True)
class Change:
    """One edit the operator must make. ``action`` is remove, add, change, keep,
    recommend or service; ``current`` is the line as it is, ``wanted`` as it should be."""

    action: str
    where: Location
    interface: str | None
    current: str | None
    wanted: str | None
    why: str

    @property
    def summary(self) -> str:
        if self.action == "remove":
            return f"remove '{self.current}'"
        if self.action == "keep":
            return f"keep '{self.current}'"
        if self.action == "service":
            return self.wanted or ""
        verb = f"change '{self.current}' to" if self.current else "add"
        tail = " (recommended)" if self.action == "recommend" else ""
        return f"{verb} '{self.wanted}'{tail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "file": self.where.file,
            "line": self.where.line,
            "interface": self.interface,
            "current": self.current,
            "wanted": self.wanted,
            "why": self.why,
        }


def changes(
    devices: list[Device],
    ifaces: Interfaces,
    bridges: Mapping[str, Stanza],
    vtep: str | None,
    vxrd_path: str,
    service_nodes: list[str],
    vxrd: VxrdConf,
) -> list[Change]:
    """The interfaces file's changes by file and line, then the services'."""
    lo = ifaces.stanzas.get("lo")
    out = _lnv_attr_changes(ifaces)
    for d in devices:
        out += _device_changes(d, bridges.get(d.stanza.name), lo, vtep)
    out.sort(key=lambda c: (c.where.file, c.where.line or 0))
    return out + _service_changes(vxrd_path, service_nodes, vxrd)


def _lnv_attr_changes(ifaces: Interfaces) -> list[Change]:
    out: list[Change] = []
    for stanza in ifaces.stanzas.values():
        for attr in stanza.attrs:
            why = _REMOVALS.get(attr.name)
            if why is not None:
                out.append(Change("remove", attr.where, stanza.name, attr.text, None, why))
    return out


def _device_changes(
    d: Device, bridge: Stanza | None, lo: Stanza | None, vtep: str | None
) -> list[Change]:
    s = d.stanza
    out: list[Change] = []
    learning = s.first("vxlan-learning")
    if learning is None:
        out.append(Change("add", s.where, s.name, None, "vxlan-learning no", _WHY_NOLEARNING))
    elif as_bool(learning.value) is not False:
        wanted = "vxlan-learning no"
        out.append(Change("change", learning.where, s.name, learning.text, wanted, _WHY_NOLEARNING))
    for change in (
        _port_flag(s, bridge, "bridge-learning", False, _WHY_BRLEARNING),
        _port_flag(s, bridge, "bridge-arp-nd-suppress", True, _WHY_SUPPRESS),
    ):
        if change is not None:
            out.append(change)
    local = s.first("vxlan-local-tunnelip")
    if local is not None:
        out.append(Change("keep", local.where, s.name, local.text, local.text, _WHY_LOCAL))
    elif (lo is None or lo.first("vxlan-local-tunnelip") is None) and vtep is not None:
        out.append(Change("add", s.where, s.name, None, f"vxlan-local-tunnelip {vtep}", _WHY_LOCAL))
    return out


def _port_flag(
    device: Stanza, bridge: Stanza | None, name: str, on: bool, why: str
) -> Change | None:
    """The change that sets bridge-port flag ``name`` of ``device``, if any. Off is
    required (add or change); on is a recommendation only."""
    word = "on" if on else "off"
    missing, wrong = ("recommend", "recommend") if on else ("add", "change")
    found = _port_setting(device, bridge, name)
    if found is None:
        return Change(missing, device.where, device.name, None, f"{name} {word}", why)
    attr, value = found
    if as_bool(value) is on:
        return None
    wanted = _replace_port_value(attr, device.name, word)
    return Change(wrong, attr.where, device.name, attr.text, wanted, why)


def _port_setting(device: Stanza, bridge: Stanza | None, name: str) -> tuple[Attr, str] | None:
    """A bridge-port attribute of ``device``: under its own stanza, or on the bridge as
    PORT=VALUE (traditional bridges)."""
    attr = device.first(name)
    if attr is not None:
        return attr, attr.value
    for attr in bridge.all(name) if bridge else []:
        for word in attr.value.split():
            port, sep, value = word.partition("=")
            if sep and port == device.name:
                return attr, value
    return None


def _replace_port_value(attr: Attr, port: str, value: str) -> str:
    if "=" not in attr.value:
        return f"{attr.name} {value}"
    words = [f"{port}={value}" if w.startswith(f"{port}=") else w for w in attr.value.split()]
    return f"{attr.name} {' '.join(words)}"


def _service_changes(vxrd_path: str, service_nodes: list[str], vxrd: VxrdConf) -> list[Change]:
    out = [
        Change(
            "service",
            Location(vxrd_path),
            None,
            None,
            "stop and disable vxrd: systemctl disable --now vxrd.service",
            "vxrd would keep registering with the service node and rewriting the flood list; "
            "once the vxrd-* attributes are gone the vxfld package can be removed",
        )
    ]
    if service_nodes:
        setting = vxrd.get("common", "svcnode_ip")
        out.append(
            Change(
                "service",
                setting.where if setting else Location(vxrd_path),
                None,
                None,
                f"on the service node(s) {', '.join(service_nodes)}: "
                "systemctl disable --now vxsnd.service, after the last VTEP has moved",
                "no VTEP registers or floods through vxsnd any more",
            )
        )
    return out
