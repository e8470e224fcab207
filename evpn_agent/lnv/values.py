"""Values as written in vxrd.conf and ifupdown2 attributes: booleans, numbers, addresses.
Each returns None for text that is not one."""

from __future__ import annotations

import ipaddress
import re

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def as_bool(value: str) -> bool | None:
    low = value.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


def as_number(text: str) -> int | None:
    # str.isdigit() would pass '²', which int() refuses
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def as_ip(value: str) -> str | None:
    """The address in canonical form; quotes around it are allowed."""
    try:
        return str(ipaddress.ip_address(value.strip("'\"")))
    except ValueError:
        return None
