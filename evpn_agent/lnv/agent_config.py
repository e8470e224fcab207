"""The evpn-agent configuration file made from an LNV host, with comments saying where each
value came from, and the check that it loads."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from evpn_agent.config import ConfigError, parse
from evpn_agent.lnv.devices import VniInfo
from evpn_agent.lnv.findings import LnvError, Location


def render_config(
    *,
    local_as: int,
    route_reflectors: Sequence[str],
    vtep_ip: str | None,
    vtep_origin: str,
    vnis: Sequence[VniInfo],
    log_settings: Sequence[tuple[str, str, Location]] = (),
    service_nodes: Sequence[str],
    sources: Sequence[str],
) -> str:
    lines = [
        "# evpn-agent configuration made by 'evpn-agent migrate-lnv' from",
        *(f"#   {s}" for s in sources),
        "# Check it with: evpn-agent config check FILE",
        "",
        "# The fabric's iBGP AS, shared with the route reflectors.",
        f"local-as: {local_as}",
        "",
    ]
    lines += _render_reflectors(route_reflectors, service_nodes)
    if vtep_ip is not None:
        lines += [f"# The VTEP address, from {vtep_origin}.", f"vtep-ip: {_scalar(vtep_ip)}", ""]
    else:
        lines += [
            "# vtep-ip: not found in the LNV files; set it (default: the VXLAN devices' local)",
            "",
        ]
    lines += ["# VNIs found: VNI, VXLAN device, bridge, VLAN (bridge-access), where."]
    for v in vnis:
        vlan = f"VLAN {v.vlan}" if v.vlan is not None else "no VLAN (traditional bridge)"
        lines.append(
            f"#   {v.vni:<8} {v.device:<15} {v.bridge or '(no bridge)':<15} {vlan:<12} {v.where}"
        )
    lines.append(f"vnis: [{', '.join(str(v.vni) for v in vnis)}]")
    for key, value, where in log_settings:
        lines += ["", f"# From vxrd's logging ({where}).", f"{key}: {value}"]
    return "\n".join(lines) + "\n"


def validate_generated(text: str, *, rr_given: bool) -> None:
    """The generated file must load; without route reflectors only their absence may fail."""
    try:
        parse(text, "<generated>")
    except ConfigError as exc:
        problems = [
            p for p in exc.problems if rr_given or not p.startswith("key 'route-reflectors'")
        ]
        if problems:
            raise LnvError(
                [f"the generated configuration is invalid: {p}" for p in problems]
            ) from None


def _scalar(value: str | int) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True)).removesuffix("\n...\n").strip()


def _render_reflectors(route_reflectors: Sequence[str], service_nodes: Sequence[str]) -> list[str]:
    if route_reflectors:
        return [
            "# The FRR route reflectors (see the FRR snippet migrate-lnv prints).",
            "route-reflectors:",
            *(f"  - address: {_scalar(rr)}" for rr in route_reflectors),
            "",
        ]
    lines = [
        "# route-reflectors: REQUIRED and not known yet; evpn-agent will not start without it.",
        "# Fill in the FRR route reflectors' addresses, e.g.",
        "#   route-reflectors:",
        "#     - address: RR-ADDRESS",
    ]
    if service_nodes:
        lines += [
            f"# Hint only: the LNV service node(s) were {', '.join(service_nodes)};",
            "# a service node is not a route reflector unless you make it one.",
        ]
    return [*lines, ""]
