"""The attribute reader's layout fast path gives what reading each attribute gives."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from evpn_agent.speaker import wire_attributes
from evpn_agent.speaker.wire_attributes import Malformed, PathAttributes, read_attributes

VTEP = socket.inet_aton("198.51.100.7")


def _attribute(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10:
        return bytes([flags, code]) + struct.pack("!H", len(value)) + value
    return bytes([flags, code, len(value)]) + value


def frr_like(vni: int = 100, origin: int = 0, seq: int | None = None) -> bytes:
    """The attribute list of one type-2 UPDATE as an FRR reflector sends it."""
    nlri = struct.pack("!HIH", 1, 0xC6336407, vni) + bytes(14) + b"\x30\x02\0\0\0\0\x01\0"
    nlri += vni.to_bytes(3, "big")
    reach = struct.pack("!HB", 25, 70) + b"\x04" + VTEP + b"\0" + bytes([2, len(nlri)]) + nlri
    communities = struct.pack("!BBHI", 0, 2, 65000, vni) + bytes([3, 0x0C, 0, 0, 0, 0, 0, 8])
    if seq is not None:
        communities += bytes([6, 0, 0, 0]) + seq.to_bytes(4, "big")
    return (
        _attribute(0x90, 14, reach)
        + _attribute(0x40, 1, bytes([origin]))
        + _attribute(0x50, 2, b"")
        + _attribute(0x80, 4, bytes(4))
        + _attribute(0x40, 5, struct.pack("!I", 100))
        + _attribute(0x80, 9, VTEP)
        + _attribute(0x80, 10, socket.inet_aton("192.0.2.1"))
        + _attribute(0xC0, 16, communities)
        + _attribute(0xC0, 22, b"\0\x06\0\0\x64" + VTEP)  # PMSI: what a type 3 carries
    )


def outcome(data: bytes, *, layouts: bool) -> tuple[object, ...]:
    """What read_attributes makes of ``data``: its fields, or the Malformed it raises."""
    if not layouts:
        wire_attributes._layouts.clear()
    try:
        path = read_attributes(data, 0, len(data))
    except Malformed as exc:
        return ("malformed", exc.reason, exc.detail)
    finally:
        if not layouts:
            wire_attributes._layouts.clear()
    return tuple(getattr(path, name) for name in PathAttributes.__slots__)


def mutations(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        for value in (0, 1, 3, 0x10, 0x40, 0x80, 0xC0, 0xFF, data[i] ^ 1):
            if value != data[i]:
                yield data[:i] + bytes([value]) + data[i + 1 :]


def test_a_layout_seen_before_is_read_in_place_and_read_alike() -> None:
    wire_attributes._layouts.clear()
    first = frr_like(100, seq=3)
    read_attributes(first, 0, len(first))
    assert (0, len(first)) in wire_attributes._layouts  # remembered
    other = frr_like(200, seq=4)  # same layout, other values
    fast = outcome(other, layouts=True)
    assert fast == outcome(other, layouts=False)
    assert fast[PathAttributes.__slots__.index("seq")] == 4


@pytest.mark.parametrize("seq", [None, 7])
def test_every_one_byte_change_reads_as_without_the_layout(seq: int | None) -> None:
    clean = frr_like(100, seq=seq)
    for changed in mutations(clean):
        wire_attributes._layouts.clear()
        read_attributes(clean, 0, len(clean))  # the layout of the clean one
        assert outcome(changed, layouts=True) == outcome(changed, layouts=False), changed.hex()


def test_a_bad_origin_in_a_known_layout_is_still_malformed() -> None:
    wire_attributes._layouts.clear()
    good = frr_like(origin=2)
    read_attributes(good, 0, len(good))
    bad = frr_like(origin=3)
    path = read_attributes(bad, 0, len(bad))
    assert path.malformed == "ORIGIN 03"


def test_a_malformed_or_repeating_list_leaves_no_layout() -> None:
    wire_attributes._layouts.clear()
    bad = frr_like(origin=3)
    read_attributes(bad, 0, len(bad))
    repeated = frr_like() + _attribute(0x40, 1, b"\0")
    read_attributes(repeated, 0, len(repeated))
    assert wire_attributes._layouts == {}


def test_moves_are_read_each_time_and_do_not_fill_the_communities_kept() -> None:
    wire_attributes._rts_alone.clear()
    for vni in (100, 100, 200):
        plain = frr_like(vni)
        path = read_attributes(plain, 0, len(plain))
        assert (path.seq, path.sticky, [str(rt) for rt in path.rts]) == (0, False, [f"65000:{vni}"])
    assert len(wire_attributes._rts_alone) == 2  # one per set of a table: VNI 100's, 200's
    for seq in range(1, 200):  # a churn: each move its own sequence number
        moved = frr_like(100, seq=seq)
        path = read_attributes(moved, 0, len(moved))
        assert (path.seq, [str(rt) for rt in path.rts]) == (seq, ["65000:100"])
    assert len(wire_attributes._rts_alone) == 2
    plain = frr_like(100)
    assert read_attributes(plain, 0, len(plain)).seq == 0  # a kept set carries no sequence
