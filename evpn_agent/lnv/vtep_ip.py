"""The VTEP's own address: the VXLAN devices' local tunnel IP, else vxrd's src_ip."""

from __future__ import annotations

from evpn_agent.lnv.devices import Device, single
from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.interfaces import Attr, Interfaces, Stanza
from evpn_agent.lnv.values import as_ip
from evpn_agent.lnv.vxrd import VxrdConf


def vtep_ip(
    devices: list[Device], ifaces: Interfaces, vxrd: VxrdConf, f: Findings
) -> tuple[str | None, str]:
    """The VTEP address and where it came from: the devices' local tunnel IP, all equal,
    else vxrd's src_ip."""
    lo = ifaces.stanzas.get("lo")
    first: tuple[str, Attr, str] | None = None
    for d in devices:
        attr = _local_tunnel_ip(d, lo, f)
        if attr is None:
            continue
        ip = as_ip(attr.value) or ""
        if first is None:
            first = (ip, attr, d.stanza.name)
        elif ip != first[0]:
            f.error(
                attr.where,
                f"iface {d.stanza.name}: vxlan-local-tunnelip {ip} conflicts with {first[0]} of "
                f"{first[2]} ({first[1].where}): a VTEP has one address, make them agree",
            )
    src = _src_ip(lo, vxrd, f)
    if first is not None:
        if src is not None and src[0] != first[0]:
            f.warn(
                src[1],
                f"vxrd src_ip {src[0]} differs from the VTEP address {first[0]}; using the latter",
            )
        return first[0], f"vxlan-local-tunnelip ({first[1].where})"
    if src is not None:
        return src[0], f"vxrd src_ip ({src[1]})"
    f.warn(None, "no VTEP address found (no vxlan-local-tunnelip, no vxrd src_ip): set vtep-ip")
    return None, ""


def _local_tunnel_ip(d: Device, lo: Stanza | None, f: Findings) -> Attr | None:
    attr = single(d.stanza, "vxlan-local-tunnelip", f)
    if attr is None and lo is not None:
        attr = lo.first("vxlan-local-tunnelip")  # ifupdown2's global default on lo
    if attr is not None and as_ip(attr.value) is None:
        f.error(
            attr.where,
            f"iface {d.stanza.name}: vxlan-local-tunnelip {attr.value!r} is not an IP address",
        )
        return None
    return attr


def _src_ip(lo: Stanza | None, vxrd: VxrdConf, f: Findings) -> tuple[str, Location] | None:
    attr = lo.first("vxrd-src-ip") if lo else None
    # lo's attribute is what ifupdown2 writes into the override file on the next ifreload.
    found = (attr.value, attr.where) if attr else None
    setting = vxrd.get("common", "src_ip")
    if found is None and setting is not None:
        found = (setting.value, setting.where)
    if found is None or found[0].strip("'\"") in ("", "0.0.0.0"):
        return None
    ip = as_ip(found[0])
    if ip is None:
        f.warn(found[1], f"vxrd src_ip {found[0]!r} is not an IP address; not used for the VTEP")
        return None
    return ip, found[1]
