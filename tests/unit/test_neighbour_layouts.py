"""The neighbour decoder's layouts: a message read in one unpack, by the layout its shape
recorded, reads exactly as the attribute walk reads it, for every one-byte change of it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from evpn_agent.kernel import neighbours
from evpn_agent.kernel.neighbours import decode_neighbour

AF_INET, AF_BRIDGE, AF_INET6 = 2, 7, 10
NEWNEIGH = 28
NDA_DST, NDA_LLADDR, NDA_CACHEINFO, NDA_PROBES, NDA_VLAN = 1, 2, 3, 4, 5
NDA_MASTER, NDA_PROTOCOL, NDA_FLAGS_EXT = 9, 12, 15


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def message(family: int, ifindex: int, state: int, flags: int, attrs: bytes) -> bytes:
    body = struct.pack("=BxxxiHBB", family, ifindex, state, flags, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), NEWNEIGH, 0, 0, 0) + body


MAC = bytes.fromhex("02aa00000001")
CACHE = nla(NDA_CACHEINFO, bytes(16))
# As the kernel sends them (captured on this machine's 6.1 kernel), and with the other
# attributes the decoder reads.
SHAPES = {
    "bridge, learned on a port": message(
        AF_BRIDGE, 4, 0x40, 0,
        nla(NDA_LLADDR, MAC) + nla(NDA_MASTER, struct.pack("=I", 2))
        + nla(NDA_FLAGS_EXT, bytes(4)) + CACHE,
    ),
    "vxlan, remote": message(
        AF_BRIDGE, 5, 0x80, 0x12,
        nla(NDA_LLADDR, MAC) + nla(NDA_DST, bytes([192, 0, 2, 9]))
        + nla(NDA_VLAN, struct.pack("=H", 10)) + nla(NDA_MASTER, struct.pack("=I", 3)) + CACHE,
    ),
    "vxlan, IPv6 VTEP": message(
        AF_BRIDGE, 5, 0x80, 0x02,
        nla(NDA_LLADDR, bytes(6)) + nla(NDA_DST, bytes.fromhex("20010db8" + "00" * 11 + "07"))
        + CACHE,
    ),
    "IPv4 neighbour": message(
        AF_INET, 6, 0x02, 0x10,
        nla(NDA_DST, bytes([203, 0, 113, 4])) + nla(NDA_LLADDR, MAC) + CACHE
        + nla(NDA_PROBES, bytes(4)) + nla(NDA_PROTOCOL, b"\xba"),
    ),
    "IPv6 neighbour, no MAC": message(
        AF_INET6, 6, 0x01, 0, nla(NDA_DST, bytes.fromhex("20010db8" + "00" * 11 + "04")) + CACHE
    ),
}  # fmt: skip


@pytest.fixture(autouse=True)
def no_layouts() -> Iterator[None]:
    neighbours._layouts.clear()
    yield
    neighbours._layouts.clear()


def walked(data: bytes) -> Any:
    try:
        return neighbours._walk(data, 0, len(data))
    except Exception as exc:  # the same failure both ways is agreement
        return type(exc)


def by_layout(learned_from: bytes, data: bytes) -> Any:
    neighbours._layouts.clear()
    decode_neighbour(learned_from)
    try:
        return decode_neighbour(data)
    except Exception as exc:
        return type(exc)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_message_of_a_known_shape_is_read_in_one_unpack(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = SHAPES[shape]
    first = decode_neighbour(data)
    assert len(data) in neighbours._layouts

    def no_walk(*args: object) -> None:
        raise AssertionError("walked a message of a known layout")

    monkeypatch.setattr(neighbours, "_walk", no_walk)
    assert decode_neighbour(data) == first
    assert decode_neighbour(bytes(8) + data, 8) == first  # at an offset in a larger buffer


@pytest.mark.parametrize("shape", SHAPES)
def test_every_one_byte_change_reads_the_same_by_layout_as_by_walk(shape: str) -> None:
    data = SHAPES[shape]
    for at in range(4, len(data)):  # the length field (0-3) selects the layout
        for value in (0, 1, 2, 4, 5, 9, 0x80, 0xBA, 0xFF):
            changed = bytearray(data)
            changed[at] = value
            assert by_layout(data, bytes(changed)) == walked(bytes(changed)), (at, value)


@pytest.mark.parametrize(
    "attrs",
    [
        nla(NDA_LLADDR, MAC) + nla(NDA_LLADDR, bytes(6)),  # repeated: the walk takes the last
        nla(NDA_LLADDR, MAC) + nla(NDA_VLAN, b"\x0a"),  # a VLAN too short to read in place
        nla(NDA_LLADDR, MAC) + nla(NDA_DST, b"\xc0\x00\x02"),  # no IP address
        nla(NDA_LLADDR, MAC) + b"\x02\x00",  # trailing bytes
    ],
)
def test_an_odd_message_leaves_no_layout(attrs: bytes) -> None:
    data = message(AF_BRIDGE, 4, 0x40, 0, attrs)
    walked(data)
    assert neighbours._layouts == {}


def test_other_families_leave_no_layout() -> None:
    assert decode_neighbour(message(28, 4, 0, 0, nla(NDA_LLADDR, MAC))) is None
    assert neighbours._layouts == {}


def test_the_layouts_stay_bounded() -> None:
    for pad in range(neighbours._MAX_LAYOUTS + 10):
        decode_neighbour(message(AF_BRIDGE, 4, 0x40, 0, nla(NDA_LLADDR, MAC) + nla(20, bytes(pad))))
    assert 0 < len(neighbours._layouts) <= neighbours._MAX_LAYOUTS
