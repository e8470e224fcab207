"""Decoded UPDATEs as records (speaker.wire_records): what the launcher encodes, the core
rebuilds exactly, from every kind of event the wire decoder yields; anything else is refused
as one malformed line."""

from __future__ import annotations

import base64
import io
import ipaddress
import marshal
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evpn_agent.model import (
    AdvertChange,
    BgpEvent,
    EndOfRib,
    ImetAdvert,
    ImetKey,
    ImetRoute,
    LineRejected,
    MacAdvert,
    MacKey,
    MacRoute,
    RouteAnnounced,
    RouteDistinguisher,
    RouteRejected,
    RoutesAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    one_per_route,
)
from evpn_agent.speaker.channel import ExabgpChannel
from evpn_agent.speaker.wire_decode import decode_message, decode_update
from evpn_agent.speaker.wire_encode import encode_changes
from evpn_agent.speaker.wire_records import BadRecords, decode_events, encode_events

PEER = "192.0.2.1"
ME = "192.0.2.21"
MAC_ROUTE = (  # one type 2 of 192.0.2.11, VNI 100, RT 65000:100 (tests/unit/test_wire_codec)
    "000000484001010040020040050400000064c010080002fde800000064800e2c00194604c000020b0002"
    "210001c000020b000200000000000000000000000000003002005e00000100000064"
)

rts = st.lists(
    st.one_of(
        st.builds(RouteTarget, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
        st.builds(RouteTarget, st.integers(0x10000, 0xFFFFFFFF), st.integers(0, 0xFFFF)),
        st.builds(
            RouteTarget,
            st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
            st.integers(0, 0xFFFF),
        ),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
texts = st.text(min_size=1, max_size=30)
ips = st.one_of(st.none(), st.ip_addresses().map(str))
mac_keys = st.builds(MacKey, texts, st.integers(0, 2**32 - 1), texts, ips)
imet_keys = st.builds(ImetKey, texts, st.integers(0, 2**32 - 1), st.ip_addresses().map(str))
routes = st.one_of(
    st.builds(MacRoute, mac_keys, st.integers(1, 2**24 - 1), texts, rts,
              st.integers(0, 2**32 - 1), st.booleans()),
    st.builds(ImetRoute, imet_keys, st.integers(1, 2**24 - 1), texts, rts),
)  # fmt: skip
events = st.lists(
    st.one_of(
        st.builds(RouteAnnounced, st.just(PEER), routes),
        st.builds(
            RoutesAnnounced, st.just(PEER), st.lists(routes, min_size=1, max_size=5).map(tuple)
        ),
        st.builds(
            RoutesWithdrawn,
            st.just(PEER),
            st.lists(st.one_of(mac_keys, imet_keys), min_size=1, max_size=5).map(tuple),
        ),
        st.builds(RouteRejected, st.just(PEER), texts, st.text(max_size=200)),
        st.builds(EndOfRib, st.just(PEER), st.booleans()),
    ),
    max_size=20,
)


@settings(max_examples=300)
@given(events)
def test_every_event_comes_back_as_it_went(sent: list[BgpEvent]) -> None:
    payload = encode_events(sent)
    assert "\n" not in payload and " " not in payload  # one field of one line
    assert decode_events(payload.encode(), PEER) == runs_as_one(sent)


def runs_as_one(events: list[BgpEvent]) -> list[BgpEvent]:
    """``events`` with each run of withdraws, and each of announces, as one event, as the
    core takes them."""
    merged: list[BgpEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, RouteAnnounced):
            event = RoutesAnnounced(PEER, (event.route,))
        if isinstance(event, RoutesWithdrawn) and isinstance(last, RoutesWithdrawn):
            merged[-1] = RoutesWithdrawn(PEER, last.keys + event.keys)
        elif isinstance(event, RoutesAnnounced) and isinstance(last, RoutesAnnounced):
            merged[-1] = RoutesAnnounced(PEER, last.routes + event.routes)
        else:
            merged.append(event)
    return merged


def test_a_lines_run_of_announces_is_one_event_in_its_place_among_the_others() -> None:
    rts = (RouteTarget(65000, 100),)
    a, b, c = (
        MacRoute(MacKey("192.0.2.11:1", 0, f"02:00:5e:00:00:{n:02x}", None), 100,
                 "192.0.2.11", rts)
        for n in range(3)
    )  # fmt: skip
    imet = ImetRoute(ImetKey("192.0.2.11:1", 0, "192.0.2.11"), 100, "192.0.2.11", rts)
    sent: list[BgpEvent] = [
        RouteAnnounced(PEER, a),
        RouteAnnounced(PEER, imet),  # the next UPDATE's
        RoutesWithdrawn(PEER, (a.key,)),
        RouteAnnounced(PEER, b),
        RouteRejected(PEER, "malformed-attribute", "x"),
        RouteAnnounced(PEER, c),
    ]
    got = decode_events(encode_events(sent).encode(), PEER)
    assert got == [
        RoutesAnnounced(PEER, (a, imet)),
        RoutesWithdrawn(PEER, (a.key,)),
        RoutesAnnounced(PEER, (b,)),
        RouteRejected(PEER, "malformed-attribute", "x"),
        RoutesAnnounced(PEER, (c,)),
    ]
    assert one_per_route(got) == sent


def test_a_lines_run_of_withdraws_is_one_event() -> None:
    gone = [MacKey("192.0.2.11:1", 0, f"02:00:5e:00:00:{n:02x}", None) for n in range(3)]
    imet = ImetKey("192.0.2.11:1", 0, "192.0.2.11")
    sent: list[BgpEvent] = [
        RoutesWithdrawn(PEER, (gone[0],)),
        RoutesWithdrawn(PEER, (gone[1], imet)),  # the next UPDATE's
        EndOfRib(PEER, False),
        RoutesWithdrawn(PEER, (gone[2],)),
    ]
    assert decode_events(encode_events(sent).encode(), PEER) == [
        RoutesWithdrawn(PEER, (gone[0], gone[1], imet)),
        EndOfRib(PEER, False),
        RoutesWithdrawn(PEER, (gone[2],)),
    ]


def test_the_events_of_real_updates_come_back_and_share_their_route_targets() -> None:
    body = bytes.fromhex(MAC_ROUTE)
    eor = bytes.fromhex("0000000680" + "0f03001946")
    decoded = one_per_route(decode_update(body, PEER, ME) + decode_update(eor, PEER, ME))
    first = one_per_route(decode_events(encode_events(decoded).encode(), PEER))
    second = one_per_route(decode_events(encode_events(decoded).encode(), PEER))
    assert first == decoded and isinstance(first[-1], EndOfRib)
    # one tuple per RT list across lines, as the wire decoder's: the RIB finds it by identity
    assert isinstance(first[0], RouteAnnounced) and isinstance(second[0], RouteAnnounced)
    assert first[0].route.rts is second[0].route.rts
    assert isinstance(decoded[0], RouteAnnounced) and first[0].route.rts is decoded[0].route.rts


def payload(version: Any, rts_list: Any, rows: Any) -> bytes:
    return base64.b64encode(marshal.dumps((version, rts_list, rows)))


RT = [bytes.fromhex("0002fde800000064")]  # 65000:100, as its extended community


def mac(vni: object = 100, sticky: object = False) -> tuple[object, ...]:
    return (0, "rd", 0, "02:00:5e:00:00:01", None, vni, "192.0.2.11", 0, 0, sticky)


@pytest.mark.parametrize(
    "bad",
    [
        b"not base64!",
        base64.b64encode(b"not marshal"),
        base64.b64encode(marshal.dumps([1, 2])),  # not three fields
        payload(2, [], []),  # another version
        payload(1, [], [mac()]),  # no RT list 0
        payload(1, RT, [mac(vni="100")]),  # text, not a number
        payload(1, RT, [mac(sticky=1)]),  # a number, not true or false
        payload(1, [b"\x00\x02\xfd\xe8"], []),  # not a route target: not 8 bytes
        payload(1, [[0, 2, 253, 232, 0, 0, 0, 100]], []),  # a list, not bytes
        payload(1, [], [(9, "what")]),  # an unknown record
        payload(1, [], [(3, "rd", 0)]),  # a short record
        payload(1, [], [(4, b"reason", "detail")]),  # bytes, not text
    ],
)
def test_a_malformed_payload_is_refused(bad: bytes) -> None:
    with pytest.raises(BadRecords):
        decode_events(bad, PEER)


def test_the_channel_reads_a_wire_events_line_with_its_stamp_and_refuses_a_broken_one() -> None:
    decoded = one_per_route(decode_update(bytes.fromhex(MAC_ROUTE), PEER, ME))
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    line = f"wire-events {PEER} 1700000000.250000 {encode_events(decoded)}\n".encode()
    events, stamp = ch.decode(line, ME)
    assert (one_per_route(events), stamp) == (decoded, 1700000000.25)
    assert ch.decode(f"wire-events {PEER} 1.0 {encode_events([])}\n".encode(), ME) == ([], None)
    for broken in (
        f"wire-events {PEER} soon {encode_events(decoded)}\n",  # no time
        f"wire-events {PEER} 1.0\n",  # no payload
        f"wire-events {PEER} 1.0 AAAA\n",  # not records
    ):
        events, stamp = ch.decode(broken.encode(), ME)
        [rejected] = events
        assert isinstance(rejected, LineRejected) and stamp is None
        assert rejected.reason == "malformed-line"


def test_the_launcher_drops_our_own_routes_by_the_neighbors_router_id() -> None:
    from evpn_agent.speaker.compat import _events_line

    own = MAC_ROUTE.replace("00000048", "0000004f", 1) + "800904c0000215"  # ORIGINATOR_ID: us
    bodies = [bytes.fromhex(MAC_ROUTE), bytes.fromhex(own)]
    theirs = one_per_route(decode_update(bodies[0], PEER, ME))

    def sent(neighbor: dict[str, object]) -> list[BgpEvent]:
        _, peer, stamp, records = _events_line(neighbor, bodies, 1700000000.25).split()
        assert (peer, stamp) == (PEER, "1700000000.250000")
        return one_per_route(decode_events(records.encode(), peer))

    address = ipaddress.IPv4Address(PEER)
    assert sent({"peer-address": address, "router-id": ipaddress.IPv4Address(ME)}) == theirs
    # without a router id, nothing is ours
    assert sent({"peer-address": address}) == theirs * 2


def test_records_while_the_core_is_behind_and_bytes_while_it_keeps_up_read_the_same() -> None:
    from evpn_agent.speaker.compat import _line

    neighbor = {"peer-address": ipaddress.IPv4Address(PEER), "router-id": None}
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    for count, behind in ((1, False), (8, False), (1, True), (24, True)):
        bodies = [bytes.fromhex(MAC_ROUTE)] * count
        line = _line(neighbor, bodies, 1700000000.25, behind)
        assert line.split()[0] == ("wire-events" if behind else "wire-update")
        expected = one_per_route(decode_update(bodies[0], PEER, ME)) * count
        events, stamp = ch.decode(f"{line}\n".encode(), ME)
        assert (one_per_route(events), stamp) == (expected, 1700000000.25)


class _Popen:
    def __init__(self, stdin: object) -> None:
        self.stdin = stdin


def test_what_the_core_has_not_read_is_what_its_pipe_holds() -> None:
    from evpn_agent.speaker.compat import BEHIND, core_unread

    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        os.set_blocking(write_end, False)
        processes = type("Processes", (), {"_process": {"agent": _Popen(writer)}})()
        assert core_unread(processes, ["agent"]) == 0
        os.write(write_end, bytes(BEHIND - 1))
        assert core_unread(processes, ["agent"]) == BEHIND - 1
        os.write(write_end, b"\n")
        assert core_unread(processes, ["agent"]) == BEHIND
        reader.read(BEHIND)  # the core caught up
        assert core_unread(processes, ["agent"]) == 0
        # a process gone (or never a pipe) has nothing unread
        assert core_unread(processes, ["gone"]) == 0
        other = type("Processes", (), {"_process": {"agent": _Popen(io.BytesIO())}})()
        assert core_unread(other, ["agent"]) == 0


def test_every_route_of_a_vni_holds_one_int_for_it_whichever_way_it_came() -> None:
    """An int above 256 is a new object each time one is made: each route decoded from
    its own UPDATE held its own VNI, 32 bytes a route (2 MiB more in the core after a churn
    moved 64,000 MACs). The decoder and the records give every route of a VNI one int."""
    vni = 4464
    rd = RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), vni)
    rts = (RouteTarget(65000, vni),)
    adverts = [
        MacAdvert(rd, vni, f"02:00:5e:00:01:{i:02x}", None, "192.0.2.11", rts) for i in range(3)
    ]
    adverts.append(ImetAdvert(rd, vni, "192.0.2.11", rts))
    events: list[BgpEvent] = []
    for advert in adverts:  # each in its own UPDATE, as at 1,000 VNIs
        [update] = encode_changes([AdvertChange(advert)]).messages
        events += one_per_route(decode_message(update, PEER, ME))
    events += one_per_route(decode_events(encode_events(events).encode(), PEER))
    events += one_per_route(decode_events(encode_events(events[:4]).encode(), PEER))
    routes = [e.route for e in events if isinstance(e, RouteAnnounced)]
    assert len(routes) == 12 and all(r.vni == vni for r in routes)
    assert len({id(r.vni) for r in routes}) == 1
