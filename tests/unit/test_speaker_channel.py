"""The API channel: every answer from ExaBGP is tied to the command it answers, and a route
refresh (answered late, from ExaBGP's asynchronous queue) cannot shift that pairing."""

from __future__ import annotations

import base64
import fcntl
import io
import ipaddress
import os
import sys
import termios

import pytest

from evpn_agent.model import (
    AdvertChange,
    AdvertRefused,
    ImetAdvert,
    LineRejected,
    MacAdvert,
    RouteDistinguisher,
    RoutesWithdrawn,
    RouteTarget,
)
from evpn_agent.speaker import Decoded, Line, encode, grammar
from evpn_agent.speaker import channel as channel_module
from evpn_agent.speaker.channel import ExabgpChannel
from lab.fabric.wait import wait_until

ME = "192.0.2.21"


def change(vni: int) -> AdvertChange:
    rd = RouteDistinguisher.parse(f"{ME}:{vni}")
    return AdvertChange(ImetAdvert(rd, vni, ME, (RouteTarget(65000, vni),)))


def written(out: io.BytesIO) -> list[str]:
    """The lines written, batch payloads shown as their JSON."""
    lines = out.getvalue().decode().splitlines()
    head = f"{grammar.BATCH} "
    return [
        head + base64.b64decode(line[len(head) :]).decode() if line.startswith(head) else line
        for line in lines
    ]


def test_an_error_is_the_refusal_of_the_command_it_answers() -> None:
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    sent = [change(1), change(2), change(3)]
    for one in sent:
        ch.send([one])
    events = [ev for ack in (b"done\n", b"error\n", b"done\n") for ev in ch.decode(ack, ME)[0]]
    assert events == [AdvertRefused(sent[1])]
    assert ch.decode(b"error\n", ME) == ([], None)  # nothing outstanding: no one to blame


def test_changes_go_as_batch_lines_and_an_error_refuses_its_whole_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(encode, "BATCH_SIZE", 2)
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    sent = [change(vni) for vni in range(1, 6)]
    ch.send(sent)
    lines = written(out)
    assert len(lines) == 3 and all(line.startswith("announce evpn batch ") for line in lines)
    assert [len(grammar.parse_batch(line.split(" ", 3)[3])[0]) for line in lines] == [2, 2, 1]
    events = [ev for ack in (b"done\n", b"error\n", b"done\n") for ev in ch.decode(ack, ME)[0]]
    assert events == [AdvertRefused(sent[2]), AdvertRefused(sent[3])]


def test_a_refresh_waits_for_earlier_answers_and_holds_later_commands() -> None:
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    ch.send([change(1)])
    ch.ask_refresh()
    assert written(out)[-1].startswith("announce evpn batch")  # refresh not yet written
    ch.decode(b"done\n", ME)  # change 1 answered: now the refresh goes
    assert written(out)[-1] == "announce route-refresh l2vpn evpn"
    ch.send([change(2)])  # held: its answer could come before the refresh's
    assert written(out)[-1] == "announce route-refresh l2vpn evpn"
    ch.decode(b"done\n", ME)  # the refresh's answer releases it
    assert '"192.0.2.21:2"' in written(out)[-1]
    assert ch.decode(b"error\n", ME)[0] == [AdvertRefused(change(2))]


def test_an_unanswered_refresh_holds_commands_only_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    ch.ask_refresh()
    monkeypatch.setattr(channel_module, "REFRESH_WAIT", 0.0)
    ch.send([change(5)])
    assert '"192.0.2.21:5"' in written(out)[-1]


def test_a_session_reset_is_exabgps_teardown_and_its_answer_is_its_own() -> None:
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    ch.reset_session("192.0.2.1")
    ch.send([change(1)])
    assert written(out)[0] == "neighbor 192.0.2.1 teardown 4"  # Cease, administrative reset
    assert ch.decode(b"done\n", ME) == ([], None)  # the reset's answer
    assert ch.decode(b"error\n", ME)[0] == [AdvertRefused(change(1))]  # not the reset's


def test_update_lines_carry_exabgps_timestamp() -> None:
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    line = (
        b'{"exabgp": "5.0.0", "time": 1700000000.5, "type": "state", '
        b'"neighbor": {"address": {"peer": "192.0.2.1"}, "state": "up"}}\n'
    )
    events, stamp = ch.decode(line, ME)
    assert stamp == 1700000000.5 and len(events) == 1


# ---------------------------------------------------------------- UPDATEs as bytes

PEER = "192.0.2.1"
MAC_ROUTE = (  # one type 2 of 192.0.2.11, VNI 100, RT 65000:100 (tests/unit/test_wire_codec)
    "000000484001010040020040050400000064c010080002fde800000064800e2c00194604c000020b0002"
    "210001c000020b000200000000000000000000000000003002005e00000100000064"
)


def wire_line(body_hex: str, stamp: str = "1700000000.250000") -> bytes:
    return f"wire-update {PEER} {stamp} {body_hex}\n".encode()


def test_a_wire_update_is_decoded_in_one_batch_with_its_stamp() -> None:
    from evpn_agent.model import MacRoute, RoutesAnnounced
    from evpn_agent.speaker.wire_decode import decode_update

    body = bytes.fromhex(MAC_ROUTE)
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    events, stamp = ch.decode(wire_line(MAC_ROUTE), ME)
    assert events == decode_update(body, PEER, ME)
    [event] = events
    assert isinstance(event, RoutesAnnounced) and event.peer == PEER
    [route] = event.routes
    assert isinstance(route, MacRoute) and (route.vni, route.vtep) == (100, "192.0.2.11")
    assert route.key.mac == "02:00:5e:00:00:01"
    assert stamp == 1700000000.25


def test_a_wire_line_of_several_updates_gives_their_events_in_order() -> None:
    from evpn_agent.model import EndOfRib
    from evpn_agent.speaker.wire_decode import decode_update
    from evpn_agent.speaker.wire_encode import encode_changes

    eor = "0000000680" + "0f03001946"
    rd = RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), 1)
    gone = MacAdvert(rd, 100, "02:00:5e:00:00:09", None, "192.0.2.11", (RouteTarget(65000, 100),))
    [message] = encode_changes([AdvertChange(gone, withdraw=True)], 4096).messages
    withdraw = message[19:].hex()
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    events, stamp = ch.decode(wire_line(f"{MAC_ROUTE} {withdraw} {eor}"), ME)
    bodies = (MAC_ROUTE, withdraw, eor)
    expected = [e for b in bodies for e in decode_update(bytes.fromhex(b), PEER, ME)]
    assert events == expected and len(events) == 3 and events[-1] == EndOfRib(PEER)
    assert isinstance(events[1], RoutesWithdrawn) and events[1].keys[0].mac == "02:00:5e:00:00:09"
    assert stamp == 1700000000.25


def test_a_wire_end_of_rib_and_own_routes() -> None:
    from evpn_agent.model import EndOfRib

    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    assert ch.decode(wire_line("0000000680" + "0f03001946"), ME)[0] == [EndOfRib(PEER)]
    # the same route, originated by us (ORIGINATOR_ID = our router id): dropped, no stamp
    own = MAC_ROUTE.replace("00000048", "0000004f", 1) + "800904c0000215"
    assert ch.decode(wire_line(own), ME) == ([], None)


@pytest.mark.parametrize(
    "line",
    [
        b"wire-update 192.0.2.1 1700000000.0 0000zz\n",  # not hex
        b"wire-update 192.0.2.1 1700000000.0\n",  # no body
        b"wire-update 192.0.2.1 soon 00000000\n",  # no time
        b"wire-update 192.0.2.1 1.0 00000000 extra\n",  # a second body that is no hex
    ],
)
def test_a_broken_wire_line_is_rejected_not_raised(line: bytes) -> None:
    from evpn_agent.model import LineRejected

    events, stamp = ExabgpChannel(io.BytesIO(), io.BytesIO()).decode(line, ME)
    assert [type(e) for e in events] == [LineRejected] and stamp is None
    assert events[0].reason == "malformed-line"  # type: ignore[attr-defined]


def test_a_malformed_wire_update_is_counted_as_today() -> None:
    from evpn_agent.model import RouteRejected

    events, _ = ExabgpChannel(io.BytesIO(), io.BytesIO()).decode(wire_line(MAC_ROUTE[:-6]), ME)
    assert [(type(e), e.reason) for e in events] == [(RouteRejected, "malformed-update")]  # type: ignore[attr-defined]


def test_the_reader_delivers_every_line_in_order_a_read_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines split across reads arrive whole, in order; the last one may lack its newline."""
    monkeypatch.setattr(channel_module, "READ_SIZE", 7)  # reads end inside lines
    lines = [b"done\n", b"wire-update 192.0.2.1 1.5 0000000e\n", b"\n", b"error\n", b"last"]
    delivered: list[list[Line] | None] = []
    ExabgpChannel(io.BytesIO(b"".join(lines)), io.BytesIO())._read(delivered.append)
    assert delivered[-1] is None
    got = [line for batch in delivered[:-1] for line in (batch or [])]
    assert got == lines
    assert all(delivered[:-1])  # never an empty delivery
    assert len(delivered) - 1 < len(lines) + 5  # by reads, not by bytes


def test_a_channel_closed_under_the_reader_ends_it_as_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed file (a shutdown, a test's BytesIO) ends the reader thread with the end
    of the channel and a warning, not with an exception on the thread."""
    stdin = io.BytesIO(b"done\n")
    stdin.close()
    delivered: list[list[Line] | None] = []
    ExabgpChannel(stdin, io.BytesIO())._read(delivered.append)
    assert delivered == [None]
    assert "the channel from ExaBGP broke" in caplog.text


def test_a_read_brings_many_lines_in_one_delivery() -> None:
    data = b"".join(f"line {n}\n".encode() for n in range(1000))
    delivered: list[list[Line] | None] = []
    ExabgpChannel(io.BytesIO(data), io.BytesIO())._read(delivered.append)
    assert len(delivered) == 2 and delivered[1] is None
    assert delivered[0] == [f"line {n}\n".encode() for n in range(1000)]


def test_once_asked_the_reader_decodes_updates_and_the_owner_gets_the_same() -> None:
    """After decode_ahead, received UPDATEs arrive decoded (the reader thread did the work),
    in order among the other lines, with the events and stamp the owner would have made."""
    own = MAC_ROUTE.replace("00000048", "0000004f", 1) + "800904c0000215"  # ours: dropped
    lines = [b"done\n", wire_line(MAC_ROUTE), b"error\n", wire_line(own), b"wire-update x\n"]
    expected = [ExabgpChannel(io.BytesIO(), io.BytesIO()).decode(line, ME) for line in lines[1:4]]
    ch = ExabgpChannel(io.BytesIO(b"".join(lines)), io.BytesIO())
    ch._pending.extend(["a", "b"])  # two commands, for the two answers
    ch.decode_ahead(ME)
    delivered: list[list[Line] | None] = []
    ch._read(delivered.append)
    got = [line for batch in delivered[:-1] for line in (batch or [])]
    assert [type(line) for line in got] == [bytes, Decoded, bytes, Decoded, Decoded]
    assert got[0] == b"done\n" and got[2] == b"error\n"
    decoded = [ch.decode(line, ME) for line in got]
    assert decoded[1] == expected[0] and decoded[3] == expected[2] == ([], None)
    assert decoded[1][1] == 1700000000.25
    [rejected] = decoded[4][0]
    assert isinstance(rejected, LineRejected) and rejected.reason == "malformed-line"


def test_a_decoded_line_of_large_updates_comes_in_parts_between_updates() -> None:
    """A line holds up to ~3,400 routes; decoded ahead, it reaches the owner in parts of
    about PART_ROUTES (split between an UPDATE's runs, never inside one), so that the
    owner can close a round, and the kernel start, before the whole line is handled. The
    parts hold the line's events in order, the first counts its bytes, the last its stamp."""
    from evpn_agent.model import MacAdvert, RoutesAnnounced, one_per_route
    from evpn_agent.speaker.channel import PART_ROUTES
    from evpn_agent.speaker.wire_encode import encode_changes

    rd = RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), 1)
    per_update = 300  # each UPDATE one run: a part closes once it holds PART_ROUTES or more
    assert per_update < PART_ROUTES <= 2 * per_update
    bodies = []
    for vni in (100, 101, 102, 103, 104):
        macs = [f"02:00:5e:{vni - 100:02x}:{n >> 8:02x}:{n & 255:02x}" for n in range(per_update)]
        changes = [
            AdvertChange(MacAdvert(rd, vni, mac, None, "192.0.2.11", (RouteTarget(65000, vni),)))
            for mac in macs
        ]
        [message] = encode_changes(changes, 65535).messages
        bodies.append(message[19:].hex())
    line = f"wire-update {PEER} 1700000000.250000 {' '.join(bodies)}".encode()
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    whole, stamp = ch.decode(line + b"\n", ME)
    ch.decode_ahead(ME)
    parts = ch._lines([line])
    assert all(isinstance(part, Decoded) for part in parts)
    assert [[len(e.routes) for e in p.events] for p in parts] == [[300, 300], [300, 300], [300]]
    assert all(isinstance(e, RoutesAnnounced) for p in parts for e in p.events)
    assert [e for p in parts for e in p.events] == whole
    assert [p.size for p in parts] == [len(line) + 1, 0, 0]
    assert [p.stamp for p in parts] == [None, None, stamp] and stamp == 1700000000.25
    assert len(one_per_route(whole)) == 5 * per_update
    # a small line stays whole
    [single] = ch._lines([wire_line(MAC_ROUTE).rstrip(b"\n")])
    assert isinstance(single, Decoded) and single.size == len(wire_line(MAC_ROUTE))


def test_while_decoding_is_held_routes_arrive_undecoded_and_decode_the_same() -> None:
    """During a kernel dump the reader delivers UPDATEs as lines; the owner's decode of
    them is what the reader would have made. Released, the reader decodes again."""
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    ch.decode_ahead(ME)
    expected = ch.decode(wire_line(MAC_ROUTE), ME)
    ch.hold_decoding(True)
    [held] = ch._lines([wire_line(MAC_ROUTE).rstrip(b"\n")])
    assert isinstance(held, bytes)
    ch._unread += len(held)  # as the reader counts what it delivers
    assert ch.decode(held, ME) == expected
    ch.hold_decoding(False)
    [decoded] = ch._lines([wire_line(MAC_ROUTE).rstrip(b"\n")])
    assert isinstance(decoded, Decoded)


def test_routes_with_the_same_route_targets_share_one_tuple() -> None:
    """The core sorts routes into VNIs by their RT tuple: one per RT set, not per UPDATE."""
    from evpn_agent.model import RouteAnnounced, one_per_route
    from evpn_agent.speaker.wire_decode import decode_update

    body = bytes.fromhex(MAC_ROUTE)
    [first] = one_per_route(decode_update(body, PEER, ME))
    [second] = one_per_route(decode_update(bytes(body), PEER, ME))
    assert isinstance(first, RouteAnnounced) and isinstance(second, RouteAnnounced)
    assert first.route.rts == (RouteTarget(65000, 100),)
    assert first.route.rts is second.route.rts


def _unread(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)


def test_the_reader_leaves_a_backlog_in_the_pipe_while_the_owner_is_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the engine runs, the reader stops reading while the owner has more than
    AHEAD_BYTES of lines to decode: the backlog stays in the pipe, where the launcher sees
    it. Before the engine runs it reads everything (ExaBGP must not wait on a kernel dump)."""
    monkeypatch.setattr(channel_module, "AHEAD_WAIT", 60.0)  # only the owner frees it here
    ahead = 16  # lines of 5 bytes
    monkeypatch.setattr(channel_module, "AHEAD_BYTES", 5 * ahead)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as stdin:
        ch = ExabgpChannel(stdin, io.BytesIO())
        delivered: list[Line] = []
        ch.start(lambda lines: delivered.extend(lines or []))
        os.write(write_end, b"done\n" * (ahead + 4))  # before the engine: all read
        wait_until(lambda: len(delivered) == ahead + 4)
        ch.decode_ahead(ME)
        os.write(write_end, b"done\n" * 2)  # the owner is behind now: read, then a wait
        wait_until(lambda: len(delivered) == ahead + 6)
        os.write(write_end, b"done\n" * 3)
        wait_until(lambda: _unread(write_end) == 15)  # written, and left in the pipe
        for line in delivered[: ahead + 6 - ahead]:  # the owner catches up: ahead left
            ch.decode(line, ME)
        wait_until(lambda: len(delivered) == ahead + 9)  # the reader read on
        assert _unread(write_end) == 0
        os.close(write_end)
