"""The receive fast path's gate (speaker/wire_check) against ExaBGP 5.0.15's decoder.

What the gate lets through skips ExaBGP's decoder, so: whatever ExaBGP would answer with a
NOTIFICATION, a treat-as-withdraw or a discarded attribute must be refused (it then takes
ExaBGP's own path), and what passes must give the agent the same events as today's path.
The UPDATEs route reflectors really send (the FRR captures) must pass. No root, no network.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_codec import (
    BASE,
    MAC_A,
    RD,
    RT_100,
    TREAT_AS_WITHDRAW,
    VTEP,
    VXLAN,
    _negotiated,
    attr,
    attribute_first,
    captured,
    communities,
    exabgp_events,
    imet_nlri,
    mac_nlri,
    message,
    mp_reach,
    mp_unreach,
    ours,
    outcome,
    pmsi,
    rebuilt,
    updates,
)

from evpn_agent.speaker import launcher, wire_check
from evpn_agent.speaker.wire_check import wire_ok


@pytest.fixture(autouse=True, scope="module")
def _exabgp() -> Iterator[None]:
    """ExaBGP's logger (its decoder logs) and the launcher's IPv6 teaching, undone after."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI
    from exabgp.environment import getenv
    from exabgp.logger import log
    from exabgp.protocol.family import AFI, SAFI, Family

    log.init(getenv())
    key = (AFI.l2vpn, SAFI.evpn)
    saved = Family.size[key], PMSI._pmsi_known[6]
    launcher.teach_ipv6_underlay()
    yield
    Family.size[key], PMSI._pmsi_known[6] = saved


def exabgp_verdict(update: bytes) -> str:
    """What ExaBGP's decoder makes of an UPDATE: "ok", "withdraw" (treat-as-withdraw),
    "discard" (an attribute dropped), "notify" (it ends the session) or "error"."""
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.notification import Notify
    from exabgp.bgp.message.update import Update
    from exabgp.bgp.message.update.attribute import Attribute

    try:
        decoded: Any = Update.unpack_message(update[19:], Direction.IN, _negotiated())
    except Notify:
        return "notify"
    except Exception:  # the reactor answers these with a NOTIFICATION 1/0
        return "error"
    attributes = getattr(decoded, "attributes", {})
    if Attribute.CODE.INTERNAL_TREAT_AS_WITHDRAW in attributes:
        return "withdraw"
    if Attribute.CODE.INTERNAL_DISCARD in attributes:
        return "discard"
    return "ok"


def gate(update: bytes) -> bool:
    return wire_ok(update[19:])


def check(update: bytes) -> None:
    """The gate's contract for one UPDATE."""
    if gate(update):
        assert exabgp_verdict(update) == "ok"
        assert outcome(ours(update)) == outcome(exabgp_events(update))


# ---------------------------------------------------------------- what passes

TYPE2 = mac_nlri(RD, MAC_A, 100)
TYPE2_IP = mac_nlri(RD, MAC_A, 100, bytes([198, 51, 100, 7]))
TYPE3 = imet_nlri(RD, VTEP)
V6 = bytes.fromhex("20010db8000000000000000000000021")
COMMON = BASE + communities(RT_100, VXLAN)
PASSING = {
    "a type 2": message(COMMON + mp_reach(VTEP, TYPE2)),
    "a type 2 with an IP and two labels": message(
        COMMON + mp_reach(VTEP, TYPE2_IP[:1] + bytes([TYPE2_IP[1] + 3]) + TYPE2_IP[2:] + b"\0\0\1")
    ),
    "a type 3 with PMSI": message(COMMON + pmsi(100, VTEP) + mp_reach(VTEP, TYPE3)),
    "IPv6 next hop and tunnel": message(
        COMMON + pmsi(100, V6) + mp_reach(V6, imet_nlri(RD, V6) + TYPE2)
    ),
    "reflected (originator, cluster list, MED)": message(
        COMMON
        + attr(0x80, 4, bytes(4))
        + attr(0x80, 9, VTEP)
        + attr(0x80, 10, bytes([192, 0, 2, 1]) * 2)
        + mp_reach(VTEP, TYPE2 * 3)
    ),
    "withdraws": message(mp_unreach(TYPE2 + TYPE3)),
    "withdraws and announces": message(COMMON + mp_unreach(TYPE3) + mp_reach(VTEP, TYPE2)),
    "End-of-RIB": message(mp_unreach(b"")),
    "extended lengths": message(
        attr(0x50, 1, b"\0") + attr(0xD0, 16, RT_100) + attr(0x90, 14, mp_reach(VTEP, TYPE2)[3:])
    ),
    "unused flag bits": message(attr(0x47, 1, b"\0") + communities(RT_100) + mp_reach(VTEP, TYPE2)),
    "no route target (the agent refuses it)": message(BASE + mp_reach(VTEP, TYPE2)),
    "a martian next hop (the agent refuses it)": message(COMMON + mp_reach(bytes(4), TYPE2)),
}


@pytest.mark.parametrize("name", sorted(PASSING))
def test_what_reflectors_send_passes(name: str) -> None:
    update = PASSING[name]
    assert gate(update)
    check(update)


def test_every_captured_frr_update_passes() -> None:
    rebuilt_updates = [u for u in map(rebuilt, captured()) if u is not None]
    assert len(rebuilt_updates) >= 10
    for update in rebuilt_updates:
        assert gate(update), update.hex()
        check(update)


# ---------------------------------------------------------------- what goes to ExaBGP


def _nh_length(length: int) -> bytes:
    value = b"\x00\x19\x46" + bytes([length]) + VTEP + b"\x00" + TYPE2
    return attr(0x80, 14, value)


def _body(withdrawn_length: int, attributes: bytes, tail: bytes = b"") -> bytes:
    body = struct.pack("!H", withdrawn_length) + struct.pack("!H", len(attributes)) + attributes
    body += tail
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


GOOD = COMMON + mp_reach(VTEP, TYPE2)
REFUSED = {
    # framing: ExaBGP answers NOTIFICATION 1/2 or 3/1
    "empty body": b"\xff" * 16 + struct.pack("!HB", 19 + 2, 2) + b"\0\0",
    "withdrawn length past the end": _body(200, GOOD),
    "attribute length past the end": _body(0, GOOD)[:-1],
    "attribute length short of the end (IPv4 NLRI follow)": _body(0, GOOD, b"\x18\xc6\x33\x64"),
    "IPv4 withdrawn routes": message(GOOD, withdrawn=b"\x18\xc6\x33\x64"),
    "attribute value past the attribute list": message(GOOD[:-1]),
    "attribute header cut": message(GOOD + b"\x40\x01"),
    "extended attribute header cut": message(GOOD + b"\x50\x01\x00"),
    "MP_REACH repeated": message(GOOD + mp_reach(VTEP, TYPE2)),
    "MP_UNREACH repeated": message(mp_unreach(TYPE2) + mp_unreach(TYPE3)),
    "MP_REACH not optional": message(COMMON + mp_reach(VTEP, TYPE2, flags=0x40)),
    "MP_UNREACH transitive": message(mp_unreach(TYPE2, flags=0xC0)),
    # MP_REACH/MP_UNREACH: ExaBGP answers NOTIFICATION 3/9
    "MP_REACH of 4 bytes": message(COMMON + attr(0x80, 14, b"\x00\x19\x46\x04")),
    "MP_REACH next hop of 5 bytes": message(COMMON + _nh_length(5)),
    "MP_REACH next hop past the attribute": message(COMMON + _nh_length(200)),
    "MP_REACH next hop of 32 bytes": message(COMMON + mp_reach(V6 + V6, TYPE2)),
    "MP_REACH without NLRI": message(COMMON + mp_reach(VTEP, b"")),
    "MP_UNREACH of 2 bytes": message(attr(0x80, 15, b"\x00\x19")),
    "IPv4 unicast family": message(COMMON + attr(0x80, 15, b"\x00\x01\x01")),
    # EVPN NLRIs: ExaBGP answers NOTIFICATION 3/5 or 3/10
    "NLRI header cut": message(COMMON + mp_reach(VTEP, TYPE2 + b"\x02")),
    "NLRI truncated by 3 bytes": message(COMMON + mp_reach(VTEP, TYPE2[:-3])),
    "withdrawn NLRI truncated": message(mp_unreach(TYPE3[:-1])),
    "MAC length 47": message(COMMON + mp_reach(VTEP, TYPE2[:24] + b"\x2f" + TYPE2[25:])),
    "IP length 33": message(COMMON + mp_reach(VTEP, TYPE2[:31] + b"\x21" + TYPE2[32:])),
    "type 2 too short": message(COMMON + mp_reach(VTEP, b"\x02\x1d" + bytes(29))),
    "type 2 length against its IP": message(
        COMMON + mp_reach(VTEP, bytes([2, TYPE2_IP[1] - 1]) + TYPE2_IP[2:-1])
    ),
    "type 3 IP length 24": message(COMMON + mp_reach(VTEP, TYPE3[:14] + b"\x18" + TYPE3[15:])),
    "type 3 too short": message(COMMON + mp_reach(VTEP, b"\x03\x0c" + bytes(12))),
    # what ExaBGP decodes and the agent refuses, as today: through its JSON
    "type 5": message(COMMON + mp_reach(VTEP, b"\x05\x22" + bytes(34))),
    "an undefined type 42": message(COMMON + mp_reach(VTEP, b"\x2a\x03abc")),
    "a type 3 with another tunnel type": message(
        COMMON + pmsi(100, VTEP, kind=3) + mp_reach(VTEP, TYPE3)
    ),
    "a PMSI tunnel of 5 bytes": message(COMMON + pmsi(100, VTEP + b"\0") + mp_reach(VTEP, TYPE3)),
    "a PMSI without tunnel": message(COMMON + pmsi(100, b"") + mp_reach(VTEP, TYPE3)),
    "an unknown attribute": message(GOOD + attr(0xC0, 200, b"x")),
    "communities": message(GOOD + attr(0xC0, 8, bytes(4))),
    "an AS path": message(
        attr(0x40, 1, b"\0") + attr(0x40, 2, b"\x02\x01\x00\x00\xfd\xe8") + GOOD[4:]
    ),
    "a partial bit": message(attr(0xE0, 16, RT_100) + BASE + mp_reach(VTEP, TYPE2)),
    "ORIGIN 3": message(attr(0x40, 1, b"\x03") + GOOD[4:]),
    "ORIGINATOR_ID of 5 bytes": message(GOOD + attr(0x80, 9, VTEP + b"\0")),
    "CLUSTER_LIST of 3 bytes": message(GOOD + attr(0x80, 10, VTEP[:3])),
    "MED of 2 bytes": message(GOOD + attr(0x80, 4, b"\0\0")),
    "no MP attribute (IPv4 End-of-RIB)": message(b""),
    "only ORIGIN": message(attr(0x40, 1, b"\0")),
    **{
        f"treat-as-withdraw {i}": attribute_first(message(GOOD), bad)
        for i, bad in enumerate(TREAT_AS_WITHDRAW)
    },
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_exabgp_must_see_is_refused(name: str) -> None:
    assert not gate(REFUSED[name])


MALFORMED = [
    n
    for n in sorted(REFUSED)
    if n.startswith(("MP_", "NLRI", "MAC", "IP ", "type ")) and n != "type 5"
]


@pytest.mark.parametrize("name", MALFORMED)
def test_the_malformed_ones_are_notifications_in_exabgp(name: str) -> None:
    # so the fallback keeps today's NOTIFICATION (the hostile-peer tests see it on the wire)
    assert exabgp_verdict(REFUSED[name]) in ("notify", "error")


def test_treat_as_withdraw_goes_to_exabgp() -> None:
    for bad in TREAT_AS_WITHDRAW:
        update = attribute_first(message(GOOD), bad)
        assert exabgp_verdict(update) == "withdraw"
        assert not gate(update)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates())
def test_generated_updates_keep_the_contract(update: bytes) -> None:
    check(update)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates(), st.data())
def test_corrupted_updates_keep_the_contract(update: bytes, data: st.DataObject) -> None:
    body = bytearray(update[19:])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    corrupted = b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + bytes(body)
    check(corrupted)


def test_truncation_at_every_offset_keeps_the_contract() -> None:
    for update in PASSING.values():
        for cut in range(19, len(update)):
            body = update[19:cut]
            check(b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body)


# ---------------------------------------------------------------- remembered shapes


def _changed(body: bytes, at: int, value: int) -> bytes:
    changed = bytearray(body)
    changed[at] = value
    return bytes(changed)


def test_a_remembered_shape_answers_as_the_walk_for_every_byte_changed() -> None:
    """Once a body passed, a body of its length passes on the bytes the walk read: every
    one-byte change of every passing body must get the walk's own answer."""
    for name, update in PASSING.items():
        body = update[19:]
        for at in range(len(body)):
            for value in {0, 1, 2, 4, 16, 0x40, 0x80, 0xC0, 0xFF, body[at] ^ 1, body[at] ^ 0x10}:
                _forget_shapes()
                assert wire_ok(body) and wire_ok(body) and len(body) in wire_check._shapes, name
                changed = _changed(body, at, value)
                assert wire_ok(changed) == wire_check._walk(changed), (name, at, value)


def _forget_shapes() -> None:
    wire_check._shapes.clear()
    wire_check._walked_once.clear()


def test_a_shape_is_kept_on_the_second_body_of_its_length(monkeypatch: Any) -> None:
    """Noting a walk's reads costs several walks: a length seen once (a batch's tail) is
    walked, not remembered; the second body of that length is."""
    body = PASSING["a type 2"][19:]
    _forget_shapes()
    remembered: list[bytes] = []
    real = wire_check._remember
    monkeypatch.setattr(wire_check, "_remember", lambda b: (remembered.append(b), real(b)))
    assert wire_ok(body)
    assert not remembered and len(body) not in wire_check._shapes
    other_mac = _changed(body, len(body) - 8, 0x42)
    assert wire_ok(other_mac)
    assert remembered == [other_mac] and len(body) in wire_check._shapes
    assert wire_ok(body) and remembered == [other_mac]  # the shape answers: no walk


def test_the_lengths_walked_once_stay_bounded(monkeypatch: Any) -> None:
    _forget_shapes()
    monkeypatch.setattr(wire_check, "_WALKED_KEPT", 4)
    for count in range(1, 12):
        cluster = attr(0x80, 10, bytes([192, 0, 2, 1]) * count)
        assert gate(message(COMMON + cluster + mp_reach(VTEP, TYPE2)))
        assert 0 < len(wire_check._walked_once) <= 4
    assert not wire_check._shapes


def test_a_body_of_a_remembered_shape_passes_without_a_walk(monkeypatch: Any) -> None:
    body = PASSING["a type 2"][19:]
    _forget_shapes()
    assert wire_ok(body) and wire_ok(body)
    other_mac = _changed(body, len(body) - 8, 0x42)  # a byte of the MAC: not read
    assert other_mac != body and wire_check._walk(other_mac)

    def no_walk(_body: object) -> bool:
        raise AssertionError("walked")

    monkeypatch.setattr(wire_check, "_walk", no_walk)
    assert wire_ok(other_mac)


def test_refused_bodies_leave_no_shape_and_the_shapes_stay_bounded(monkeypatch: Any) -> None:
    _forget_shapes()
    for update in REFUSED.values():
        assert not gate(update) and not gate(update)
    assert not wire_check._shapes and not wire_check._walked_once
    monkeypatch.setattr(wire_check, "_SHAPES_KEPT", 8)
    for count in range(1, 30):  # a cluster list of 1 to 29 reflectors: 29 lengths
        cluster = attr(0x80, 10, bytes([192, 0, 2, 1]) * count)
        update = message(COMMON + cluster + mp_reach(VTEP, TYPE2))
        assert gate(update) and gate(update)
        assert 0 < len(wire_check._shapes) <= 8
