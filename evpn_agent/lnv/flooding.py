"""How LNV flooded BUM traffic: through service nodes or by head-end replication to the
VTEPs it knew."""

from __future__ import annotations

from evpn_agent.lnv.devices import Device
from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.interfaces import Interfaces
from evpn_agent.lnv.values import as_bool, as_ip
from evpn_agent.lnv.vxrd import VxrdConf


def service_nodes(ifaces: Interfaces, vxrd: VxrdConf, f: Findings) -> list[str]:
    """vxsnd's addresses, from vxrd.conf and the interfaces' attributes, in that order."""
    found: list[tuple[str, Location]] = []
    setting = vxrd.get("common", "svcnode_ip")
    if setting is not None:
        found.append((setting.value, setting.where))
    for stanza in ifaces.stanzas.values():
        found += [(a.value, a.where) for a in stanza.all("vxrd-svcnode-ip")]
        found += [(a.value, a.where) for a in stanza.all("vxlan-svcnodeip")]
    out: list[str] = []
    for value, where in found:
        ip = as_ip(value)
        if ip is None:
            f.warn(where, f"service node {value!r} is not an IP address")
        elif ip != "0.0.0.0" and ip not in out:
            out.append(ip)
    return out


def remote_vteps(ifaces: Interfaces) -> list[str]:
    """The static head-end lists' VTEPs (vxlan-remoteip)."""
    out: list[str] = []
    for stanza in ifaces.stanzas.values():
        for attr in stanza.all("vxlan-remoteip"):
            ip = as_ip(attr.value)
            if ip is not None and ip not in out:
                out.append(ip)
    return out


def replication(vxrd: VxrdConf, devices: list[Device], f: Findings) -> str:
    """'head-end' or 'service-node', as vxrd's head_rep says."""
    setting = vxrd.get("vxrd", "head_rep")
    head_rep = True if setting is None else as_bool(setting.value)
    if setting is not None and head_rep is None:
        f.warn(
            setting.where, f"head_rep {setting.value!r} is not a boolean: vxrd takes it as false"
        )
        head_rep = False
    svcnodes = [a for d in devices for a in d.stanza.all("vxlan-svcnodeip")]
    if head_rep and svcnodes:
        f.warn(
            setting.where if setting else svcnodes[0].where,
            "head_rep is on and VXLAN devices have vxlan-svcnodeip: BUM traffic was sent twice",
        )
    return "head-end" if head_rep else "service-node"
