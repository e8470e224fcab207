"""Plan steps for the kernel: what the planner asks the writer to do.

MACs are lower-case colon-separated strings; IPs are strings (IPv4 or IPv6).
"""

from __future__ import annotations

from dataclasses import dataclass

ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True, slots=True)
class AddFdb:
    """Remote MAC behind a VTEP: bridge (master) and VXLAN (self) entry on the VXLAN device."""

    ifindex: int
    mac: str
    dst: str
    vlan: int | None = None


@dataclass(frozen=True, slots=True)
class DelFdb:
    """Remove a remote MAC: both the bridge and the VXLAN entry."""

    ifindex: int
    mac: str
    vlan: int | None = None


@dataclass(frozen=True, slots=True)
class AddFlood:
    """One remote VTEP in the VXLAN device's flood list (zero-MAC entry)."""

    ifindex: int
    dst: str


@dataclass(frozen=True, slots=True)
class DelFlood:
    """Remove one remote VTEP from the flood list."""

    ifindex: int
    dst: str


@dataclass(frozen=True, slots=True)
class AddNeigh:
    """Remote MAC+IP as a neighbour on the SVI (bridge device), for ARP/ND suppression."""

    ifindex: int
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class DelNeigh:
    """Remove a remote neighbour."""

    ifindex: int
    ip: str


Op = AddFdb | DelFdb | AddFlood | DelFlood | AddNeigh | DelNeigh
