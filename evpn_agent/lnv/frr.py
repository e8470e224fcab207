"""The FRR route reflector configuration for the migrated VTEPs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

PEER_GROUP = "VTEPS"


def listen_ranges(addresses: Sequence[str]) -> list[str]:
    """The smallest prefix per address family covering ``addresses``, at most /24 (IPv4)
    or /64 (IPv6) long: one VTEP alone says nothing about the fabric's loopback range."""
    out: list[str] = []
    for version, widest in ((4, 24), (6, 64)):
        ips = [ipaddress.ip_address(a) for a in addresses]
        ips = [ip for ip in ips if ip.version == version]
        if not ips:
            continue
        length = widest
        while length > 0:
            net = ipaddress.ip_network(f"{ips[0]}/{length}", strict=False)
            if all(ip in net for ip in ips):
                break
            length -= 1
        out.append(str(ipaddress.ip_network(f"{ips[0]}/{length}", strict=False)))
    return out


def render_frr(local_as: int, route_reflectors: Sequence[str], vteps: Sequence[str]) -> str:
    v4_rrs = [rr for rr in route_reflectors if ipaddress.ip_address(rr).version == 4]
    cluster = v4_rrs[0] if v4_rrs else "CLUSTER-ID"
    ranges = listen_ranges(vteps) or ["VTEP-RANGE"]
    seen = ", ".join(vteps) if vteps else "none"
    lines = [
        "! FRR route reflector for evpn-agent VTEPs (/etc/frr/frr.conf, bgpd=yes in",
        "! /etc/frr/daemons). The same on every route reflector; set 'bgp router-id' per RR.",
        f"router bgp {local_as}",
        " ! one cluster-id on all RRs: they form one redundant cluster"
        + ("" if v4_rrs else " (an IPv4 address or a number)"),
        f" bgp cluster-id {cluster}",
        " no bgp default ipv4-unicast",
        f" neighbor {PEER_GROUP} peer-group",
        f" neighbor {PEER_GROUP} remote-as {local_as}",
        f" neighbor {PEER_GROUP} timers 3 9",
        f" ! covers the VTEP addresses seen on this host ({seen});",
        " ! widen it to the range of every VTEP's loopback",
        *(f" bgp listen range {r} peer-group {PEER_GROUP}" for r in ranges),
        " address-family l2vpn evpn",
        f"  neighbor {PEER_GROUP} activate",
        f"  neighbor {PEER_GROUP} route-reflector-client",
        " exit-address-family",
        "exit",
    ]
    return "\n".join(lines) + "\n"
