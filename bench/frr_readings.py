"""What the benchmarks read from FRR: session-up times in bgpd.log, the BGP summary."""

from __future__ import annotations

import re
import time
from typing import Any

_ADJCHANGE = re.compile(
    r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?) "
    r".*%ADJCHANGE: neighbor (\S+?)(?:\(\S*\))? .*\bUp\b"
)


def set_frr_log_precision(box: Any) -> None:
    """Millisecond timestamps in the box's FRR logs (for the session-up time)."""
    box.vtysh("configure terminal", "log timestamp precision 3")


def frr_session_up_times(box: Any, peer: str) -> list[float]:
    """time.time() of every '%ADJCHANGE ... Up' for ``peer`` in the box's bgpd.log."""
    path = box.frr.directory / "bgpd.log"
    found = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        match = _ADJCHANGE.match(line)
        if match and match.group(2) == peer:
            stamp, _, fraction = match.group(1).partition(".")
            seconds = time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S"))
            found.append(seconds + (float("0." + fraction) if fraction else 0.0))
    return found


def evpn_summary(box: Any) -> dict[str, Any]:
    peers: dict[str, Any] = box.vtysh_json("show bgp l2vpn evpn summary json").get("peers", {})
    return peers
