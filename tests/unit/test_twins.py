"""The other reflector's copy of an UPDATE decoded once (speaker/twins), for records.

Its contract: whatever the memo hands back encodes to exactly the records a decode of the
body would give; a body is a twin only if it differs from one decoded in nothing but the
CLUSTER_LIST value; what it holds is bounded and goes when a burst is over. No root.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from test_wire_check import PASSING
from test_wire_codec import (
    BASE,
    MAC_A,
    RD,
    RT_100,
    VTEP,
    VXLAN,
    attr,
    communities,
    mac_nlri,
    mp_reach,
)
from test_wire_codec import message as update_of

from evpn_agent.speaker import compat, wire_check
from evpn_agent.speaker.twins import TwinDecodes
from evpn_agent.speaker.wire_decode import decode_update
from evpn_agent.speaker.wire_records import encode_events

RR1, RR2, ME = "192.0.2.1", "192.0.2.2", "192.0.2.21"
ORIGINATOR = attr(0x80, 9, VTEP)


def body(cluster_id: int, mac: bytes = MAC_A, *, cluster: bool = True) -> bytes:
    """A type 2 as a reflector with ``cluster_id`` passes it on, with or without a
    CLUSTER_LIST; gated, as the launcher gates every UPDATE before it decodes one."""
    cluster_list = attr(0x80, 10, bytes([10, 0, 0, cluster_id])) if cluster else b""
    attributes = BASE + ORIGINATOR + cluster_list + communities(RT_100, VXLAN)
    data = update_of(attributes + mp_reach(VTEP, mac_nlri(RD, mac, 100)))[19:]
    assert wire_check.wire_ok(data)
    return data


@pytest.fixture(autouse=True)
def _fresh_shapes() -> Iterator[None]:
    wire_check._shapes.clear()
    yield
    wire_check._shapes.clear()


def records(events: list[object]) -> str:
    return encode_events(events)  # type: ignore[arg-type]


def test_the_other_reflectors_copy_is_decoded_once_and_gives_the_same_records() -> None:
    twins = TwinDecodes()
    first, second = body(1), body(2)
    assert first != second
    assert records(twins.decode(first, RR1, ME)) == records(decode_update(first, RR1, ME))
    assert twins.hits == 0
    got = twins.decode(second, RR2, ME)
    assert twins.hits == 1
    assert records(got) == records(decode_update(second, RR2, ME))
    assert got  # a route, not nothing


@pytest.mark.parametrize("name", sorted(PASSING))
def test_every_byte_changed_gives_what_a_decode_gives(name: str) -> None:
    """The contract over every one-byte change of every UPDATE the gate passes (those
    with a cluster list among them): hit or not, the records are a decode's."""
    first = PASSING[name][19:]
    assert wire_check.wire_ok(first)
    for at in range(len(first)):
        for value in (0, 1, 0x80, first[at] ^ 1, first[at] ^ 0x40):
            changed = bytearray(first)
            changed[at] = value
            twins = TwinDecodes()
            twins.decode(first, RR1, ME)
            got = twins.decode(bytes(changed), RR2, ME)
            assert records(got) == records(decode_update(bytes(changed), RR2, ME)), (at, value)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: body(2, bytes.fromhex("02005e000002")), id="another MAC"),
        pytest.param(lambda: body(1, cluster=False), id="no cluster list"),
    ],
)
def test_a_body_that_differs_elsewhere_is_no_twin(other: object) -> None:
    twins = TwinDecodes()
    twins.decode(body(1), RR1, ME)
    data = other()  # type: ignore[operator]
    assert records(twins.decode(data, RR2, ME)) == records(decode_update(data, RR2, ME))
    assert twins.hits == 0


def test_a_twin_decoded_for_another_router_id_is_decoded_again() -> None:
    """Our own routes are dropped by the router id: the events depend on it."""
    twins = TwinDecodes()
    twins.decode(body(1), RR1, ME)
    own = str(ipaddress.IPv4Address(VTEP))  # the originator: this is our own route now
    assert twins.decode(body(2), RR2, own) == decode_update(body(2), RR2, own) == []
    assert twins.hits == 0


def test_a_key_cut_for_another_shape_is_not_kept() -> None:
    """The key is cut where the last shape of the body's length had its cluster list; a
    body of that length but another layout must not be kept under it."""
    twins = TwinDecodes()
    plain = body(1)
    key = wire_check.twin_key(plain)
    assert key is not None and wire_check.key_holds(plain, key)
    moved = bytearray(plain)
    moved[key[1] - 2] = 9  # the cluster list's type code: the layout differs
    assert not wire_check.key_holds(bytes(moved), key)
    twins.decode(bytes(moved), RR1, ME)
    assert not twins._new and not twins._old


def test_what_is_held_is_bounded_and_goes_after_a_burst() -> None:
    twins = TwinDecodes(held_bytes=3 * len(body(1)))
    macs = [bytes.fromhex(f"02005e0001{i:02x}") for i in range(10)]
    for mac in macs:
        twins.decode(body(1, mac), RR1, ME)
    held = len(twins._new) + len(twins._old)
    assert 3 <= held <= 6  # two generations of three
    twins.decode(body(2, macs[-1]), RR2, ME)  # the newest: still held
    twins.decode(body(2, macs[0]), RR2, ME)  # the oldest: dropped
    assert twins.hits == 1
    twins.clear()
    assert not twins._new and not twins._old


def test_the_launcher_encodes_the_second_copy_as_a_decode_would() -> None:
    neighbor = {
        "peer-address": ipaddress.IPv4Address(RR2),
        "router-id": ipaddress.IPv4Address(ME),
    }
    compat.twin_decodes.clear()
    compat._events_line({**neighbor, "peer-address": ipaddress.IPv4Address(RR1)}, [body(1)], 1.0)
    hits = compat.twin_decodes.hits
    line = compat._events_line(neighbor, [body(2)], 1.0)
    assert compat.twin_decodes.hits == hits + 1
    assert line == f"wire-events {RR2} 1.000000 {records(decode_update(body(2), RR2, ME))}"
    compat._after_a_burst()  # what the heap trim runs once a burst is over
    assert not compat.twin_decodes._new and not compat.twin_decodes._old
