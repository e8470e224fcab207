"""The fabric's address plan: TEST-NET only, underlay and tenants."""

from __future__ import annotations

import ipaddress

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")
# Fabric(underlay6=True): boxes get 2001:db8::<octet>/64 instead, and keep 192.0.2.<octet>
# as their BGP router-id only (a router-id is 32 bits; it is configured on no interface).
UNDERLAY6 = ipaddress.IPv6Network("2001:db8::/64")
ASN = 65000
VXLAN_PORT = 4789

TENANT_NETWORKS = tuple(
    ipaddress.ip_network(net) for net in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def tenant(address: str) -> str:
    """Check that a tenant address (with prefix) is TEST-NET; return it."""
    interface = ipaddress.ip_interface(address)
    if not any(interface.ip in net for net in TENANT_NETWORKS):
        raise ValueError(f"{address}: tenant addresses must be TEST-NET")
    return address
