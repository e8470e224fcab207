"""Named keys for the tables of the agent, so no table is keyed by an anonymous tuple.

A MAC in a VNI (``VniMac``) is what BGP, duplicate detection and sequence numbers speak of;
the kernel speaks of entries on devices (``DeviceMac``, ``DeviceIp``) and of what a bridge
learned (``BridgeMac``). NamedTuples: hashable, cheap, and they read as what they are.
"""

from __future__ import annotations

from typing import NamedTuple


class VniMac(NamedTuple):
    vni: int
    mac: str


class VniIp(NamedTuple):
    vni: int
    ip: str


class VniVtep(NamedTuple):
    vni: int
    vtep: str


class BridgeMac(NamedTuple):
    """A MAC a bridge learned: (bridge ifindex, VLAN on a VLAN-aware bridge, MAC)."""

    bridge: int
    vlan: int | None
    mac: str


class DeviceMac(NamedTuple):
    """An FDB entry of ours on a VXLAN device."""

    ifindex: int
    mac: str
    vlan: int | None


class DeviceIp(NamedTuple):
    """A neighbour entry on an SVI."""

    ifindex: int
    ip: str
