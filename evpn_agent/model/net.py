"""Addresses, numbers and kernel flag values every layer speaks, with their one validator.

Conventions: MACs are lower-case colon-separated strings, IPs are strings in Python's
canonical form, VNIs are ints. Values are validated once where they enter (config, a route,
a kernel message) and trusted after that.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

MAX_VNI = (1 << 24) - 1  # a VXLAN VNI is 24 bits (RFC 7348)
ZERO_MAC = "00:00:00:00:00:00"  # the flood-list (head-end replication) entry

# Kernel neighbour-table flags and states (linux/neighbour.h): FRR's exact recipe uses them.
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10
NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

_HEX = frozenset("0123456789abcdef")


class BadValue(ValueError):
    """A MAC, VNI or address that cannot be used; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_mac(value: object) -> str:
    """A host MAC (unicast, not zero), lower-case; raises BadValue saying why not."""
    mac = value.lower() if isinstance(value, str) else ""
    if len(mac) != 17 or any(
        mac[i] != ":" if i % 3 == 2 else mac[i] not in _HEX for i in range(17)
    ):
        raise BadValue(
            "bad-mac", f"MAC must be six hex octets like 02:00:5e:00:01:01, got {value!r}"[:120]
        )
    if mac == ZERO_MAC:
        raise BadValue("zero-mac", f"MAC {mac} is not a host address")
    if int(mac[1], 16) & 1:
        raise BadValue("multicast-mac", f"MAC {mac} is a multicast or broadcast address")
    return mac


def is_host_mac(mac: str) -> bool:
    """True for a unicast, non-zero MAC already in canonical form."""
    return mac != ZERO_MAC and not int(mac[1], 16) & 1


def check_vni(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_VNI:
        raise BadValue("bad-label", f"VNI {value!r} is outside 1..{MAX_VNI}")
    return value


@functools.lru_cache(maxsize=4096)
def vtep_address(value: str) -> str | None:
    """The canonical address if ``value`` can be a VTEP (unicast, routable), else None.

    Cached: few VTEPs send many routes, and parsing was a tenth of the receive path.
    """
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return None
    if ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(ip)


@functools.lru_cache(maxsize=4096)
def ip_order(address: str) -> tuple[int, int]:
    """Sort key of an address: numeric, IPv4 before IPv6 (RFC 7432's lower-IP tie-break)."""
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def is_host_ip(address: str) -> bool:
    """An address that can be a host binding (not multicast, link-local or unspecified)."""
    ip = ipaddress.ip_address(address)
    return not (ip.is_multicast or ip.is_link_local or ip.is_unspecified)


def vni_ranges(vnis: Iterable[int]) -> str:
    """VNIs as sorted ranges, for a log line: {7, 1, 2, 3} -> '1-3, 7'."""
    spans: list[list[int]] = []
    for vni in sorted(set(vnis)):
        if spans and vni == spans[-1][1] + 1:
            spans[-1][1] = vni
        else:
            spans.append([vni, vni])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
