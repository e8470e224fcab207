"""The second route reflector's copy of an UPDATE, decoded once, for records.

A VTEP peers with two reflectors, and each sends it every route of the fabric: the same
UPDATE bytes but for the CLUSTER_LIST, where each puts its own cluster id (RFC 4456). In a
VTEP's cold start into a 1,000-VNI fabric that is 128,000 UPDATEs decoded twice by the
launcher while the core is behind. So :func:`compat._events_line` keeps the events of the
UPDATEs it decoded lately by :func:`wire_check.twin_key` (the bytes less that value), and
encodes the same events again for the other reflector's copy: records carry no peer (the
line names it), so the events need no copy with the other peer in them.

Bounded by the bytes of the UPDATEs held, not their number (a reflector packs the routes of
a VNI into UPDATEs of up to 4 KiB, or sends one route in ~100 bytes): two generations of up
to ``HELD_BYTES`` each, the older dropped whole when the newer is full; all dropped when a
burst is over (with the heap's free pages).
"""

from __future__ import annotations

from evpn_agent.model import BgpEvent
from evpn_agent.speaker.wire_check import TwinKey, key_holds, twin_key
from evpn_agent.speaker.wire_decode import decode_update

HELD_BYTES = 1 << 20  # per generation: ~10,000 UPDATEs of one route

_Held = tuple[str | None, list[BgpEvent]]  # the router id they were decoded for; events


class TwinDecodes:
    """``decode_update`` for records: the events of an UPDATE whose twin was decoded
    lately are that twin's, as from the peer that sent it."""

    def __init__(self, held_bytes: int = HELD_BYTES) -> None:
        self._held_bytes = held_bytes
        self._new: dict[TwinKey, _Held] = {}
        self._old: dict[TwinKey, _Held] = {}
        self._bytes = 0  # of the UPDATEs held in the newer generation
        self.hits = 0

    def decode(self, body: bytes, peer: str, router_id: str | None) -> list[BgpEvent]:
        key = twin_key(body)
        if key is None:
            return decode_update(body, peer, router_id)
        held = self._new.get(key) or self._old.get(key)
        if held is not None and held[0] == router_id:
            self.hits += 1
            return held[1]
        events = decode_update(body, peer, router_id)
        if key_holds(body, key):
            if self._bytes >= self._held_bytes:
                self._old, self._new, self._bytes = self._new, {}, 0
            self._new[key] = (router_id, events)
            self._bytes += len(body)
        return events

    def clear(self) -> None:
        """Drop what is held (a burst is over: nothing of it comes again soon)."""
        self._new, self._old, self._bytes = {}, {}, 0
