"""Two reflectors' tables read one after the other, not side by side (compat._waits_its_turn).

No root: sessions are stand-ins for ExaBGP's Protocol and Peer with real socket pairs, so
that what is queued on a session's socket is what FIONREAD says.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from evpn_agent.speaker import compat

KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"
EOR = bytes.fromhex("0000 0006 800f03 001946")
RR1, RR2 = "192.0.2.1", "192.0.2.2"  # the order every VTEP reads them in when up together


class _Reactor:
    def __init__(self) -> None:
        self._peers: dict[str, Any] = {}


class _Session:
    """A Protocol as _waits_its_turn sees it: its peer (reactor, hold timer) and socket."""

    def __init__(self, reactor: _Reactor, name: str, holdtime: int = 90) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.connection = type("Connection", (), {"io": self.ours})()
        self.neighbor = {"peer-address": name}
        timer = type("ReceiveTimer", (), {"holdtime": holdtime})()
        self.peer = type(
            "Peer",
            (),
            {
                "reactor": reactor,
                "recv_timer": timer,
                "proto": self,
                "fsm": compat.exa.FSM.ESTABLISHED,
            },
        )()
        reactor._peers[name] = self.peer

    def queue(self, data: bytes = KEEPALIVE) -> None:
        self.theirs.sendall(data)

    def drain(self) -> None:
        while True:
            try:
                self.ours.recv(1 << 16)
            except BlockingIOError:
                return

    def close(self) -> None:
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def sessions() -> Iterator[tuple[_Session, _Session]]:
    reactor = _Reactor()
    first, second = _Session(reactor, RR1), _Session(reactor, RR2)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_sessions_up_together_go_in_the_order_of_their_reflectors() -> None:
    """The same order on every VTEP: FRR sends VTEPs that come up at once their tables as
    one update subgroup, paced by its slowest reader."""
    reactor = _Reactor()
    low, high = _Session(reactor, "192.0.2.9"), _Session(reactor, "192.0.2.10")
    v6 = _Session(reactor, "2001:db8::1")
    try:
        compat._waits_its_turn(high, 100.0)
        compat._waits_its_turn(v6, 100.0)
        compat._waits_its_turn(low, 100.0 + compat.TOGETHER / 2)  # up later, but together
        low.queue()
        assert compat._waits_its_turn(high, 100.6)  # .9 before .10: as numbers
        assert compat._waits_its_turn(v6, 100.6)  # IPv4 before IPv6
        assert not compat._waits_its_turn(low, 100.6)
        low.drain()
        high.queue()
        assert compat._waits_its_turn(v6, 100.7)
    finally:
        for session in (low, high, v6):
            session.close()


def test_a_session_up_well_after_another_waits_for_it_whatever_its_address() -> None:
    """The table already coming keeps coming: a later session would first resend what
    the kernel already has."""
    reactor = _Reactor()
    early, late = _Session(reactor, RR2), _Session(reactor, RR1)
    try:
        compat._waits_its_turn(early, 100.0)
        compat._waits_its_turn(late, 100.0 + compat.TOGETHER + 0.5)
        early.queue()
        assert compat._waits_its_turn(late, 102.0)
        late.queue()
        assert not compat._waits_its_turn(early, 102.0)
    finally:
        early.close()
        late.close()


def _both_up(first: _Session, second: _Session) -> None:
    """Both sessions come up together, ``first`` the one to read first."""
    compat._waits_its_turn(first, 100.0)
    compat._waits_its_turn(second, 100.1)


def _second_waits(first: _Session, second: _Session) -> None:
    """Both up, and the first sending: the second waits its turn (from 100.2)."""
    _both_up(first, second)
    first.queue()
    assert compat._waits_its_turn(second, 100.2)


def test_a_later_table_waits_while_the_first_has_bytes_queued(
    sessions: tuple[_Session, _Session],
) -> None:
    first, second = sessions
    assert not compat._waits_its_turn(first, 100.0)  # came up first
    assert not compat._waits_its_turn(second, 100.1)  # the first has nothing queued
    first.queue()
    assert compat._waits_its_turn(second, 100.2)
    assert not compat._waits_its_turn(first, 100.2)  # the first never waits for the second
    first.drain()
    assert not compat._waits_its_turn(second, 100.3)  # work-conserving: read when idle


def test_a_later_table_waits_while_the_first_is_sending(
    sessions: tuple[_Session, _Session],
) -> None:
    """Between two of the first's reads its socket may be empty for a moment: that is not
    the reflector gone quiet."""
    first, second = sessions
    _both_up(first, second)
    compat._table_read(first, [KEEPALIVE], 100.2)  # (any bytes: only its End-of-RIB counts)
    assert compat._waits_its_turn(second, 100.2 + compat.TURN_QUIET / 2)
    assert not compat._waits_its_turn(second, 100.21 + compat.TURN_QUIET)


def test_after_the_first_tables_end_of_rib_nobody_waits(
    sessions: tuple[_Session, _Session],
) -> None:
    first, second = sessions
    _second_waits(first, second)
    compat._table_read(first, [EOR], 100.3)
    assert not compat._waits_its_turn(second, 100.3)


def test_a_session_whose_table_is_loaded_never_waits(
    sessions: tuple[_Session, _Session],
) -> None:
    """A reflector back while the other is up: the other's UPDATEs are changes (a MAC
    moved), not a second copy, and never wait behind the table coming back."""
    first, second = sessions
    _both_up(first, second)
    compat._table_read(second, [EOR], 100.15)
    first.queue()
    assert not compat._waits_its_turn(second, 100.2)


def test_nobody_waits_once_the_tables_had_their_time(
    sessions: tuple[_Session, _Session],
) -> None:
    """A reflector that sends no End-of-RIB: its table counts as loaded LOADING s on."""
    first, second = sessions
    _second_waits(first, second)
    assert not compat._waits_its_turn(second, 100.1 + compat.LOADING + 1)


@pytest.mark.parametrize(("holdtime", "limit"), [(90, compat.TURN_WAIT), (3, 0.75), (0, 2.0)])
def test_a_wait_is_bounded_by_turn_wait_and_the_hold_time(holdtime: int, limit: float) -> None:
    """Its hold timer runs on what is read: after the bound one read, then it waits again."""
    reactor = _Reactor()
    first, second = _Session(reactor, RR1), _Session(reactor, RR2, holdtime)
    try:
        compat._waits_its_turn(first, 100.0)
        compat._waits_its_turn(second, 100.0001)
        first.queue()
        assert compat._waits_its_turn(second, 101.0)  # waits from 101.0
        assert compat._waits_its_turn(second, 101.0 + limit - 0.01)
        assert not compat._waits_its_turn(second, 101.0 + limit)  # one read
        assert compat._waits_its_turn(second, 101.0 + limit + 0.01)  # waits anew
    finally:
        first.close()
        second.close()


def test_a_session_coming_up_never_waits(sessions: tuple[_Session, _Session]) -> None:
    """In OPENCONFIRM ExaBGP's read_keepalive takes the message read_message ends on for
    the KEEPALIVE: a NOP alone there would be a NOTIFICATION (5, 2)."""
    first, second = sessions
    compat._waits_its_turn(first, 100.0)
    second.peer.fsm = compat.exa.FSM.OPENCONFIRM
    first.queue()
    assert not compat._waits_its_turn(second, 100.1)
    second.peer.fsm = compat.exa.FSM.ESTABLISHED
    assert compat._waits_its_turn(second, 100.2)


def test_a_closed_first_session_holds_nobody_back(sessions: tuple[_Session, _Session]) -> None:
    first, second = sessions
    _both_up(first, second)
    first.queue()
    first.connection.io = None  # ExaBGP's Connection once closed
    assert not compat._waits_its_turn(second, 100.2)
    first.peer.proto = None  # the peer between two sessions
    assert not compat._waits_its_turn(second, 100.3)


def test_only_the_evpn_end_of_rib_ends_a_table() -> None:
    eor = bytes.fromhex("0000 0006 800f03 001946")
    eor_extended = bytes.fromhex("0000 0007 900f0003 001946")
    assert compat.end_of_rib(eor) and compat.end_of_rib(eor_extended)
    assert len(eor_extended) <= compat.EOR_SIZE
    ipv4_unicast = bytes.fromhex("0000 0006 800f03 000101")
    withdraw = bytes.fromhex("0000 0008 800f05 001946 0200")
    assert not compat.end_of_rib(ipv4_unicast)
    assert not compat.end_of_rib(withdraw)
    assert not compat.end_of_rib(b"\x00\x00\x00\x00")  # IPv4's End-of-RIB


def test_the_wait_is_told_when_the_table_is_loaded(
    sessions: tuple[_Session, _Session], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = sessions
    compat._waits_its_turn(first, 100.0)
    compat._waits_its_turn(second, 100.01)
    first.queue()
    for now in (101.0, 101.5, 102.0):
        assert compat._waits_its_turn(second, now)
    first.drain()
    assert not compat._waits_its_turn(second, 102.3)
    with caplog.at_level("INFO", logger=compat.__name__):
        compat._table_read(first, [EOR], 102.5)  # never waited: says nothing
        compat._table_read(second, [EOR], 104.0)
    [record] = caplog.records
    assert record.getMessage() == (
        "table from 192.0.2.2 loaded in 4.0 s, 1.3 s of it waiting 1 times for another's"
    )


def test_a_waiting_session_reads_nothing_off_its_socket(
    sessions: tuple[_Session, _Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the replaced read_message: one NOP (ExaBGP's peer loop goes on: keepalives
    out, hold timer checked) and the message stays where it was."""
    first, second = sessions
    reads: list[str] = []

    class Reader:
        io = second.ours

        def reader(self) -> Iterator[Any]:
            reads.append("read")
            yield 0, 0, b"", b"", None

    second_protocol: Any = second
    second_protocol.connection = Reader()
    second_protocol.negotiated = object()
    monkeypatch.setattr(compat, "_wire_processes", lambda protocol: ["agent"])
    monkeypatch.setattr(compat, "_evpn_only", lambda negotiated: True)
    monkeypatch.setattr(compat, "_exabgp_read_message", [lambda protocol: iter(())])
    compat._waits_its_turn(first, time.time() - 1.0)  # first up, a second ago
    first.queue()
    second.queue()
    assert list(compat._read_message(second)) == [compat.exa.protocol_NOP]
    assert reads == []
    assert second.ours.recv(64) == KEEPALIVE
    first.drain()
    assert list(compat._read_message(second)) == [compat.exa.protocol_NOP]
    assert reads == ["read"]
