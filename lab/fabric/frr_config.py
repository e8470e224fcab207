"""FRR configuration files for the fabric's route reflectors and VTEPs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.fabric.addressing import ASN, UNDERLAY


def render_zebra_config(hostname: str, log_file: Path) -> str:
    return f"hostname {hostname}\nlog file {log_file}\n!\n"


_DEBUG = ["debug bgp neighbor-events", "debug bgp updates out"]


def render_rr_config(
    *,
    router_id: str,
    log_file: Path,
    asn: int = ASN,
    cluster_id: str | None = None,
    listen_range: str = str(UNDERLAY),
    password: str | None = None,
    hostname: str = "rr",
) -> str:
    """An FRR route reflector: iBGP l2vpn evpn, clients accepted from ``listen_range``.

    ``FABRIC_FRR_DEBUG=1`` in the environment logs its sessions' events and every UPDATE it
    sends (for a failing test; far too much for a benchmark)."""
    lines = [
        f"hostname {hostname}",
        f"log file {log_file}",
        *(_DEBUG if os.environ.get("FABRIC_FRR_DEBUG") else []),
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        f" bgp cluster-id {cluster_id or router_id}",
        " bgp log-neighbor-changes",
        " no bgp default ipv4-unicast",
        " neighbor CLIENTS peer-group",
        f" neighbor CLIENTS remote-as {asn}",
        # fast failure detection for tests; 3/9 is FRR's datacenter profile
        " neighbor CLIENTS timers 3 9",
    ]
    if password is not None:
        lines.append(f" neighbor CLIENTS password {password}")
    lines += [
        f" bgp listen range {listen_range} peer-group CLIENTS",
        " address-family l2vpn evpn",
        "  neighbor CLIENTS activate",
        "  neighbor CLIENTS route-reflector-client",
        " exit-address-family",
        "!",
    ]
    return "\n".join(lines) + "\n"


def render_vtep_config(
    *,
    router_id: str,
    route_reflectors: Sequence[str],
    log_file: Path,
    asn: int = ASN,
    hostname: str = "vtep",
) -> str:
    """An FRR VTEP: advertises every kernel VNI to the route reflectors."""
    lines = [
        f"hostname {hostname}",
        f"log file {log_file}",
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        " bgp log-neighbor-changes",
        " no bgp default ipv4-unicast",
    ]
    for rr in route_reflectors:
        lines += [
            f" neighbor {rr} remote-as {asn}",
            f" neighbor {rr} timers 3 9",
            f" neighbor {rr} timers connect 1",
        ]
    lines.append(" address-family l2vpn evpn")
    lines += [f"  neighbor {rr} activate" for rr in route_reflectors]
    lines += ["  advertise-all-vni", " exit-address-family", "!"]
    return "\n".join(lines) + "\n"
