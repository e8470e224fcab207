"""Our advert changes as ExaBGP API lines (the grammar of :mod:`grammar`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from evpn_agent.model import AdvertChange, ImetAdvert
from evpn_agent.speaker import grammar

# Bracket a core's full re-announcement; the launcher then withdraws what was not repeated.
SYNC_BEGIN = grammar.SYNC_BEGIN
SYNC_END = grammar.SYNC_END
REFRESH = "announce route-refresh l2vpn evpn"
# ExaBGP answers with one JSON line (a list, one object per neighbor: state, uptime, the
# capabilities the peer advertised), then "done".
SESSIONS = "show neighbor json"
ADMINISTRATIVE_RESET = 4  # Cease subcode (RFC 4486)


def reset(peer: str) -> str:
    """ExaBGP's command that closes the session with ``peer``, and connects again."""
    return f"neighbor {peer} teardown {ADMINISTRATIVE_RESET}"


# Changes per batch line, at most: ExaBGP packs the NLRIs of one line into UPDATEs, so
# longer lines make fuller UPDATEs for the reflector (50,000 local MACs: 1,000 per line
# 1.45 s, 4,000 per line 1.39 s). A line must stay below ExaBGP's 1 MiB cap on one command
# (Processes.MAX_COMMAND_SIZE): ~110 bytes a change, more with IPv6 and several RTs, so a
# line longer than MAX_LINE is split in halves.
BATCH_SIZE = 4000
MAX_LINE = 512 * 1024


def command(change: AdvertChange) -> grammar.Command:
    advert = change.advert
    vtep = ipaddress.ip_address(advert.vtep)
    cmd: grammar.Command
    if isinstance(advert, ImetAdvert):
        cmd = grammar.MulticastRoute(
            grammar.Action.ANNOUNCE, advert.rd, vtep, advert.vni, vtep, advert.rts
        )
    else:
        mobility = None
        if advert.seq or advert.sticky:
            mobility = grammar.MacMobility(advert.seq, advert.sticky)
        ip = ipaddress.ip_address(advert.ip) if advert.ip else None
        cmd = grammar.MacRoute(
            grammar.Action.ANNOUNCE, advert.rd, advert.mac, advert.vni, vtep, ip, advert.rts,
            mobility,
        )  # fmt: skip
    # A withdraw repeats the announce's RD, label and next hop (ExaBGP's index), no RTs.
    return cmd.withdrawal() if change.withdraw else cmd


def render(change: AdvertChange) -> str:
    return grammar.render(command(change))


def batches(changes: Sequence[AdvertChange]) -> list[tuple[str, tuple[AdvertChange, ...]]]:
    """``announce evpn batch`` lines for ``changes``, each with the changes it carries."""
    out: list[tuple[str, tuple[AdvertChange, ...]]] = []
    for start in range(0, len(changes), BATCH_SIZE):
        _render(tuple(changes[start : start + BATCH_SIZE]), out)
    return out


def _render(
    chunk: tuple[AdvertChange, ...], out: list[tuple[str, tuple[AdvertChange, ...]]]
) -> None:
    line = grammar.render_batch(chunk)
    if len(line) <= MAX_LINE or len(chunk) == 1:
        out.append((line, chunk))
        return
    half = len(chunk) // 2
    _render(chunk[:half], out)
    _render(chunk[half:], out)
