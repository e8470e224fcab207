"""The idle sleep patched into ExaBGP's reactor (compat.sleep_when_idle): an established,
quiet reactor sleeps until its next keepalive, and wakes at once on I/O or a signal.

No root needed: ExaBGP's own wait (Reactor._wait_for_io) runs on a stand-in reactor with a
real poll object, session timers from ExaBGP's own classes.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from evpn_agent.speaker import compat, launcher, selftest

MS_SLEEP = 10  # ExaBGP's default sleep per pass


@pytest.fixture(autouse=True)
def _restore_exabgp() -> Iterator[None]:
    reactor, ka = compat.exa.Reactor, compat.exa.KA
    wait, init = reactor.__dict__["_wait_for_io"], ka.__dict__["__init__"]
    need_ka = compat.exa.SendTimer.__dict__["need_ka"]
    compat.sleep_when_idle()
    yield
    reactor._wait_for_io, ka.__init__ = wait, init
    compat.exa.SendTimer.need_ka = need_ka


class Reactor:
    """What ExaBGP's _wait_for_io and the idle check read of a reactor."""

    _peers: dict[str, Any]
    asynchronous: Any
    signal: Any

    def __init__(self, **peer_state: Any) -> None:
        now = float(int(time.time()))
        stand_in, self.keepalive, self.outgoing = selftest._idle_reactor(now, **peer_state)
        self.__dict__.update(stand_in.__dict__)
        self._poller = select.poll()
        self.listener = None
        self.spins = 0

    def _prevent_spin(self) -> bool:
        self.spins += 1
        return False

    def _termination(self, reason: str, code: int) -> None:
        raise AssertionError(reason)

    def wait(self, sleeptime: int = MS_SLEEP) -> tuple[list[int], float]:
        started = time.monotonic()
        fds = list(compat.exa.Reactor._wait_for_io(self, sleeptime))
        return fds, time.monotonic() - started


def keepalive_due_in(reactor: Reactor, seconds: float) -> None:
    timer = reactor.keepalive.send_timer
    timer.last_sent = time.time() + seconds - timer.keepalive


def later(seconds: float, action: Any) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_an_idle_reactor_sleeps_until_its_keepalive_is_due() -> None:
    reactor = Reactor()
    keepalive_due_in(reactor, -0.6)  # 30 s keepalives: sent at the latest 1 s late
    fds, took = reactor.wait()
    assert fds == []
    assert 0.3 <= took < 1.0


def test_an_idle_reactor_sleeps_at_most_until_the_hold_timer() -> None:
    reactor = Reactor()
    reactor._peers["peer"].recv_timer.last_read = (
        int(time.time()) - 90
    )  # expires at the next whole second
    started = time.time()
    wait = compat.idle_timeout(reactor, started)
    assert wait is not None and wait <= 1.0


def test_io_wakes_an_idle_reactor_at_once() -> None:
    reactor = Reactor()
    read, write = os.pipe()
    try:
        reactor._poller.register(read, select.POLLIN)
        later(0.2, lambda: os.write(write, b"x"))
        fds, took = reactor.wait()
        assert fds == [read]
        assert took < 0.5  # not the 30 s keepalive
    finally:
        os.close(read)
        os.close(write)


def test_a_signal_wakes_an_idle_reactor_at_once() -> None:
    reactor = Reactor()
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: seen.append(number))
    try:
        later(0.2, lambda: os.kill(os.getpid(), signal.SIGUSR2))
        fds, took = reactor.wait()
        assert seen == [signal.SIGUSR2]
        assert fds == []  # the wake-up pipe is ours, not ExaBGP's
        assert took < 0.5
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize(
    "state",
    [
        {"fsm": "connect"},
        {"proto": None},
        {"_teardown": 6},
        {"recv_timer": None},
    ],
)
def test_a_reactor_not_idle_keeps_exabgps_short_sleep(state: dict[str, Any]) -> None:
    if state.get("fsm") == "connect":
        state = {"fsm": compat.exa.FSM.CONNECT}
    reactor = Reactor(**state)
    _fds, took = reactor.wait()
    assert took < 0.2


def test_work_in_the_reactor_keeps_exabgps_short_sleep() -> None:
    reactor = Reactor()
    with selftest._exabgp_logger():
        compat.queue(reactor.outgoing, launcher._build_line(selftest.SAMPLE_ANNOUNCE))
    assert compat.idle_timeout(reactor, time.time()) is None
    reactor = Reactor()
    reactor.asynchronous.ready = lambda: False
    assert compat.idle_timeout(reactor, time.time()) is None
    reactor = Reactor()
    reactor.signal.received = -1
    assert compat.idle_timeout(reactor, time.time()) is None


def test_no_sleep_asked_means_none() -> None:
    reactor = Reactor()
    _fds, took = reactor.wait(0)
    assert took < 0.1


def test_a_listening_socket_wakes_an_idle_reactor_and_stays_exabgps() -> None:
    import socket

    reactor = Reactor()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    reactor.listener = type("Listener", (), {"_sockets": {server: None}})()
    try:
        port = server.getsockname()[1]
        client = socket.socket()
        later(0.2, lambda: client.connect(("127.0.0.1", port)))
        fds, took = reactor.wait()
        assert fds == []  # the listener accepts on the next pass, not through the workers
        assert took < 0.5
        assert reactor._poller.poll(0) == []  # unregistered again
        client.close()
    finally:
        server.close()


def test_a_keepalive_due_within_a_second_goes_with_the_wake_up_at_hand() -> None:
    timer = compat.exa.SendTimer(lambda: "test", compat.exa.HoldTime(9))  # every 3 s
    now = int(time.time())
    timer.last_sent = now - 1  # due in 2 s
    assert not timer.need_ka()
    timer.last_sent = now - 2  # due in 1 s
    assert timer.need_ka()
    assert timer.last_sent >= now
    assert not timer.need_ka()  # the next one 2 to 4 s later, not at once


def test_keepalives_of_a_second_are_never_early() -> None:
    timer = compat.exa.SendTimer(lambda: "test", compat.exa.HoldTime(3))  # every 1 s
    timer.last_sent = int(time.time()) + 5  # (in the future: never due while the test runs)
    assert not timer.need_ka()
    timer.last_sent -= 6
    assert timer.need_ka()


def test_a_failing_idle_check_keeps_exabgps_short_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(reactor: Any, now: float) -> float:
        raise AttributeError("'Peer' object has no attribute '_teardown'")

    monkeypatch.setattr(compat, "idle_timeout", broken)
    monkeypatch.setattr(compat, "_idle_failed", [])
    reactor = Reactor()
    _fds, took = reactor.wait()  # no exception into ExaBGP's loop
    assert took < 0.2
    assert len(compat._idle_failed) == 1


def test_a_closed_session_socket_leaves_the_poller_instead_of_waking_every_pass() -> None:
    # ExaBGP registers a session's socket and never unregisters it: once closed, poll()
    # reports it (POLLNVAL) at once on every pass, and ExaBGP's spin guard sleeps instead
    reactor = Reactor()
    keepalive_due_in(reactor, -0.6)
    ours, theirs = socket.socketpair()
    events = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLNVAL | select.POLLERR
    reactor._poller.register(ours.fileno(), events)
    ours.close()
    theirs.close()
    fds, took = reactor.wait()
    assert fds == [] and reactor.spins == 0
    fds, took = reactor.wait()  # the closed socket is gone: an idle sleep again
    assert fds == [] and reactor.spins == 0
    assert 0.3 <= took < 1.0


def test_an_idle_reactor_wakes_once_to_hand_the_heap_back_after_updates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[float] = []
    heap = compat.TrimWhenQuiet(lambda: trims.append(time.monotonic()))
    monkeypatch.setattr(heap, "QUIET", 0.3)
    monkeypatch.setattr(compat, "heap_trim", heap)
    reactor = Reactor()  # idle, keepalive ~30 s away
    heap.worked(time.time())  # an UPDATE went through
    fds, took = reactor.wait()
    assert fds == []
    assert 0.2 <= took < 2.0  # woke for the trim, not the keepalive
    assert trims == []  # due at the next pass
    reactor.wait(0)  # the next pass of the reactor (no sleep asked)
    assert len(trims) == 1
    previous = signal.signal(signal.SIGUSR2, lambda number, frame: None)
    try:
        later(0.6, lambda: os.kill(os.getpid(), signal.SIGUSR2))
        fds, took = reactor.wait()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert len(trims) == 1  # nothing more to hand back: slept until the signal
    assert took >= 0.5
