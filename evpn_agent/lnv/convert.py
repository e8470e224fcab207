"""An LNV host's files converted: the evpn-agent configuration, the operator's changes and
the FRR route reflector configuration, with every problem found on the way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evpn_agent.lnv.agent_config import render_config, validate_generated
from evpn_agent.lnv.changes import Change, changes
from evpn_agent.lnv.devices import VniInfo, bridges_by_port, vni_map, vxlan_devices
from evpn_agent.lnv.findings import Findings, LnvError, Location
from evpn_agent.lnv.flooding import remote_vteps, replication, service_nodes
from evpn_agent.lnv.frr import render_frr
from evpn_agent.lnv.interfaces import INTERFACES, Interfaces, read_interfaces
from evpn_agent.lnv.log_settings import log_settings
from evpn_agent.lnv.reader import Reader
from evpn_agent.lnv.vtep_ip import vtep_ip
from evpn_agent.lnv.vxrd import VXRD_CONF, VxrdConf, read_vxrd

_NO_DEVICES = "no VXLAN device (an iface stanza with vxlan-id) found: nothing to migrate"


@dataclass(frozen=True)
class Migration:
    config_text: str
    vtep_ip: str | None
    vnis: tuple[VniInfo, ...]
    route_reflectors: tuple[str, ...]
    service_nodes: tuple[str, ...]
    replication: str
    changes: tuple[Change, ...]
    frr_config: str
    warnings: tuple[str, ...]
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "vtep-ip": self.vtep_ip,
            "vnis": [v.to_json() for v in self.vnis],
            "route-reflectors": list(self.route_reflectors),
            "lnv-service-nodes": list(self.service_nodes),
            "lnv-replication": self.replication,
            "config": self.config_text,
            "changes": [c.to_json() for c in self.changes],
            "frr-route-reflector": self.frr_config,
            "warnings": list(self.warnings),
        }


def migrate_files(
    vxrd_path: str,
    interfaces_path: str,
    reader: Reader,
    *,
    local_as: int,
    route_reflectors: Sequence[str] = (),
) -> Migration:
    """Read an LNV host's files and convert them; raises LnvError listing every problem."""
    findings = Findings()
    vxrd = read_vxrd(vxrd_path, reader, findings)
    ifaces = read_interfaces(interfaces_path, reader, findings)
    # Conversion checks run even after read errors, so every problem shows at once.
    return convert(
        vxrd,
        ifaces,
        local_as=local_as,
        route_reflectors=route_reflectors,
        vxrd_path=vxrd_path,
        findings=findings,
    )


def convert(
    vxrd: VxrdConf,
    ifaces: Interfaces,
    *,
    local_as: int,
    route_reflectors: Sequence[str] = (),
    vxrd_path: str = VXRD_CONF,
    findings: Findings | None = None,
) -> Migration:
    f = findings or Findings()
    devices = vxlan_devices(ifaces, f)
    if not devices and not f.errors:
        f.error(Location(ifaces.files[0] if ifaces.files else INTERFACES), _NO_DEVICES)
    bridges = bridges_by_port(ifaces, f)
    vnis = vni_map(devices, bridges, f)
    vtep, vtep_origin = vtep_ip(devices, ifaces, vxrd, f)
    if f.errors:
        raise LnvError(f.errors)
    svcnodes = service_nodes(ifaces, vxrd, f)
    mode = replication(vxrd, devices, f)
    edits = changes(devices, ifaces, bridges, vtep, vxrd_path, svcnodes, vxrd)
    logs = log_settings(vxrd, f)
    sources = vxrd.files + ifaces.files
    if not route_reflectors:
        _warn_no_reflectors(svcnodes, f)
    text = render_config(
        local_as=local_as,
        route_reflectors=route_reflectors,
        vtep_ip=vtep,
        vtep_origin=vtep_origin,
        vnis=vnis,
        log_settings=logs,
        service_nodes=svcnodes,
        sources=sources,
    )
    validate_generated(text, rr_given=bool(route_reflectors))
    seen = [vtep] if vtep else []
    seen += [r for r in remote_vteps(ifaces) if r not in seen]
    return Migration(
        config_text=text,
        vtep_ip=vtep,
        vnis=tuple(vnis),
        route_reflectors=tuple(route_reflectors),
        service_nodes=tuple(svcnodes),
        replication=mode,
        changes=tuple(edits),
        frr_config=render_frr(local_as, route_reflectors, seen),
        warnings=tuple(f.warnings),
        sources=sources,
    )


def _warn_no_reflectors(svcnodes: Sequence[str], f: Findings) -> None:
    hint = f" (the LNV service nodes were {', '.join(svcnodes)}: a hint only)"
    f.warn(
        None,
        "no --route-reflector given: the configuration has a placeholder and evpn-agent "
        "will not start until route-reflectors is filled in" + (hint if svcnodes else ""),
    )
