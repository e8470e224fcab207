"""The daemon without root: the fake speaker and the in-memory kernel around the real
engine, dispatcher and control socket. What the daemon adds to the engine is tested here:
one owner for every input (control requests included), refused announces retried, and no
race between a reconcile's dump and the events that arrive meanwhile."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeSpeaker, MemoryKernel

from evpn_agent import control
from evpn_agent.config import parse
from evpn_agent.daemon import dispatcher
from evpn_agent.daemon.dispatcher import (
    FIRST_ROUND_ROUTES,
    MAX_EVENTS_PER_ROUND,
    MAX_ITEMS_PER_ROUND,
    MAX_KERNEL_EVENTS_PER_ROUND,
    Daemon,
    KernelChanged,
)
from evpn_agent.model import (
    NUD_REACHABLE,
    AddFdb,
    AddFlood,
    AdvertChange,
    BridgeDevice,
    FdbEntry,
    FdbUpdated,
    ImetAdvert,
    ImetKey,
    ImetRoute,
    KernelEvent,
    MacAdvert,
    MacKey,
    MacRoute,
    MonitorOverflowed,
    OtherLink,
    RouteAnnounced,
    RouteTarget,
    SessionUp,
    VxlanDevice,
)

ME, RR, REMOTE = "192.0.2.21", "192.0.2.1", "192.0.2.22"
BR, VX, PORT = 10, 11, 12
HOST = "02:00:5e:00:00:21"
RT = (RouteTarget(65000, 100),)
LINKS = (
    BridgeDevice(BR, "br100", "02:00:00:00:00:10", False, True),
    VxlanDevice(VX, "vxlan100", 100, ME, BR, False, True),
    OtherLink(PORT, "h1", BR, "veth", up=True),
)


class Running:
    def __init__(self, daemon: Daemon, speaker: FakeSpeaker, kernel: MemoryKernel, sock: str):
        self.daemon, self.speaker, self.kernel, self.sock = daemon, speaker, kernel, sock

    async def ask(self, command: str, **args: object) -> object:
        return await asyncio.to_thread(control.request, self.sock, command, **args)

    def announced(self, mac: str) -> list[AdvertChange]:
        return [
            c
            for c in self.speaker.changes()
            if isinstance(c.advert, MacAdvert) and c.advert.mac == mac and not c.withdraw
        ]

    def withdrawn(self) -> list[AdvertChange]:
        return [c for c in self.speaker.changes() if c.withdraw]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    sock = str(tmp_path / "agent.sock")
    cfg = parse(
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {sock}\n"
        f"state-dir: {tmp_path / 'state'}\nsweep-delay: 0\nreconcile-interval: 0\n"
    )
    speaker, kernel = FakeSpeaker(), MemoryKernel(LINKS)
    daemon = Daemon(cfg, speaker, kernel)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.started.wait(), 5)
    yield Running(daemon, speaker, kernel, sock)
    speaker.close()
    await asyncio.wait_for(task, 5)


async def test_start_announces_our_vni_inside_a_sync(running: Running) -> None:
    sent = running.speaker.sent
    # first the speaker's account of sessions that may predate us, then our routes
    assert sent[0] == "sessions"
    assert sent[1] == "sync begin" and sent[-1] == "sync end"
    (imet,) = sent[2:-1]
    assert isinstance(imet, AdvertChange) and isinstance(imet.advert, ImetAdvert)
    assert (imet.advert.vni, imet.advert.vtep, str(imet.advert.rd)) == (100, ME, f"{ME}:100")


async def test_remote_routes_reach_the_kernel(running: Running) -> None:
    mac = MacRoute(MacKey(f"{REMOTE}:100", 0, "02:00:5e:00:00:22", None), 100, REMOTE, RT)
    imet = ImetRoute(ImetKey(f"{REMOTE}:100", 0, REMOTE), 100, REMOTE, RT)
    running.speaker.feed(SessionUp(RR), RouteAnnounced(RR, mac), RouteAnnounced(RR, imet))
    await until(lambda: AddFlood(VX, REMOTE) in running.kernel.applied)
    assert AddFdb(VX, "02:00:5e:00:00:22", REMOTE) in running.kernel.applied


async def test_the_owner_goes_on_while_the_kernel_writes(running: Running) -> None:
    gate = running.kernel.gate = threading.Event()
    try:
        mac = MacRoute(MacKey(f"{REMOTE}:100", 0, "02:00:5e:00:00:22", None), 100, REMOTE, RT)
        running.speaker.feed(SessionUp(RR), RouteAnnounced(RR, mac))
        await until(running.kernel.writing.is_set)  # the write is in the (slow) kernel
        running.kernel.learn(PORT, BR, HOST)
        await until(lambda: bool(running.announced(HOST)))  # handled meanwhile
        assert AddFdb(VX, "02:00:5e:00:00:22", REMOTE) not in running.kernel.applied
    finally:
        gate.set()
    await until(lambda: AddFdb(VX, "02:00:5e:00:00:22", REMOTE) in running.kernel.applied)
    counters = await running.ask("show counters")
    assert counters["counters"]["kernel-ops"] == 1  # type: ignore[index]


async def test_writes_to_a_vni_deleted_meanwhile_are_no_kernel_failure(running: Running) -> None:
    """The VNI's VXLAN device is deleted while a write for it is on its way to the kernel:
    the kernel answers ENODEV, which is counted apart (no warning, no retry)."""
    gate = running.kernel.gate = threading.Event()
    try:
        mac = MacRoute(MacKey(f"{REMOTE}:100", 0, "02:00:5e:00:00:22", None), 100, REMOTE, RT)
        running.speaker.feed(SessionUp(RR), RouteAnnounced(RR, mac))
        await until(running.kernel.writing.is_set)
        running.kernel.delete_link(VX)
    finally:
        gate.set()
    answer = await running.ask("show counters")  # answered once the batch settled
    counters = answer["counters"]  # type: ignore[index]
    assert counters.get("kernel-device-gone") == 1, counters
    assert "kernel-failures" not in counters, counters


def _feed_burst(running: Running, lines: int, per_line: int) -> None:
    """``lines`` lines of ``per_line`` new remote MACs each, queued at once."""
    for line in range(lines):
        running.speaker.feed(
            *(
                RouteAnnounced(RR, MacRoute(MacKey(f"{REMOTE}:100", 0, mac, None), 100, REMOTE, RT))
                for n in range(per_line)
                for mac in [f"02:00:{line >> 8:02x}:{line & 255:02x}:{n >> 8:02x}:{n & 255:02x}"]
            )
        )


async def test_a_burst_that_arrives_whole_is_written_in_rounds(running: Running) -> None:
    """Three lines of 1,500 routes each, all waiting at once: written as they are planned,
    in rounds of about MAX_EVENTS_PER_ROUND routes, not as one batch of 4,500 at the end."""
    running.speaker.feed(SessionUp(RR))
    await until(lambda: running.daemon.inbox.empty())
    per_line = 1500
    assert 2 * per_line >= MAX_EVENTS_PER_ROUND > per_line
    _feed_burst(running, 3, per_line)
    await until(lambda: sum(running.kernel.batches) == 3 * per_line)
    assert len(running.kernel.batches) >= 2, running.kernel.batches
    assert max(running.kernel.batches) <= 2 * per_line


async def test_the_first_round_of_a_burst_is_written_early(running: Running) -> None:
    """Three parts of 700 routes queued at once while the owner was idle: the first goes to
    the kernel alone (FIRST_ROUND_ROUTES), which works on it while the owner handles the
    rest; the rest go in a round of their own, not one round of 2,100 after all three."""
    running.speaker.feed(SessionUp(RR))
    await until(lambda: running.daemon.inbox.empty())
    per_line = 700
    assert per_line >= FIRST_ROUND_ROUTES and 3 * per_line >= MAX_EVENTS_PER_ROUND > 2 * per_line
    _feed_burst(running, 3, per_line)
    await until(lambda: sum(running.kernel.batches) == 3 * per_line)
    assert running.kernel.batches == [per_line, 2 * per_line], running.kernel.batches


async def test_control_is_answered_during_a_burst(running: Running) -> None:
    """A burst already queued whole (as after a restart at scale) does not hold up the
    control socket: `show counters` is answered while the burst is still being handled.
    An await of a non-empty queue never suspends, so without the owner yielding the
    request is accepted only once the inbox is empty."""
    running.speaker.feed(SessionUp(RR))
    await until(lambda: running.daemon.inbox.empty())
    lines, per_line = 40, 2000
    _feed_burst(running, lines, per_line)
    await until(lambda: bool(running.kernel.batches), timeout=30)  # the owner is in it
    answer = await running.ask("show counters")
    handled = answer["counters"]["routes-received"]  # type: ignore[index]
    assert handled < lines * per_line, answer
    await until(lambda: sum(running.kernel.batches) == lines * per_line, timeout=60)


async def test_a_rack_of_new_macs_goes_out_in_rounds(running: Running) -> None:
    """Three monitor reads of new local MACs, all waiting at once: sent to the speaker a
    round at a time (ExaBGP and the reflector work on one while the owner plans the next),
    not as one send of them all at the end."""
    per_read = MAX_KERNEL_EVENTS_PER_ROUND
    await until(lambda: running.daemon.inbox.empty())
    before = len(running.speaker.sends)
    for read in range(3):
        events: list[KernelEvent] = []
        for n in range(per_read):
            entry = FdbEntry(PORT, f"02:00:5e:{read:02x}:{n >> 8:02x}:{n & 255:02x}", None,
                             None, BR, 0, NUD_REACHABLE)  # fmt: skip
            running.kernel.fdb[(PORT, entry.mac, None)] = entry
            events.append(FdbUpdated(entry))
        running.daemon.inbox.put_nowait(KernelChanged(events, running.daemon.clock()))
    await until(lambda: sum(running.speaker.sends[before:]) >= 3 * per_read)
    assert len(running.speaker.sends[before:]) >= 3, running.speaker.sends[before:]
    assert max(running.speaker.sends[before:]) <= per_read


async def test_local_mac_is_announced_and_shown(running: Running) -> None:
    running.kernel.learn(PORT, BR, HOST)
    await until(lambda: bool(running.announced(HOST)))
    rows = await running.ask("show mac", vni=100)
    assert rows["100"]["macs"][HOST]["type"] == "local"  # type: ignore[index]
    counters = await running.ask("show counters")
    assert counters["counters"]["bgp-announces"] == 2  # type: ignore[index]
    memory = await running.ask("show memory")
    core = memory["processes"]["core"]  # type: ignore[index]
    assert core["pid"] == os.getpid() and core["rss_mib"] > 0 and core["python"]
    tables = memory["tables"]  # type: ignore[index]
    assert tables["local-macs"]["entries"] == 1 and tables["adverts"]["entries"] == 2
    assert list(tables) == sorted(tables, key=lambda name: -tables[name]["bytes"])


async def test_refused_announce_is_sent_again_and_counted(running: Running) -> None:
    running.kernel.learn(PORT, BR, HOST)
    await until(lambda: bool(running.announced(HOST)))
    change = running.announced(HOST)[0]
    running.kernel.forget(PORT, HOST)
    await until(lambda: bool(running.withdrawn()))
    running.speaker.refuse.add(change)  # the next announce of the same route is refused
    running.kernel.learn(PORT, BR, HOST)
    await until(lambda: len(running.announced(HOST)) == 3, timeout=5)  # refused, then again
    counters = await running.ask("show counters")
    assert counters["counters"]["bgp-refused"] == 1  # type: ignore[index]
    assert counters["counters"]["bgp-retries"] == 1  # type: ignore[index]


async def test_macs_learned_during_reconciles_are_never_withdrawn(running: Running) -> None:
    """A reconcile dumps the kernel; MACs learned while it dumps must not look gone."""
    running.kernel.dump_delay = 0.05
    macs = [f"02:00:5e:00:01:{i:02x}" for i in range(40)]
    for mac in macs:
        reconcile = asyncio.create_task(running.ask("reconcile"))
        await asyncio.sleep(0.01)  # learn while the dump runs
        running.kernel.learn(PORT, BR, mac)
        await reconcile
    await until(lambda: all(running.announced(m) for m in macs))
    assert running.kernel.dumps > len(macs)
    assert running.withdrawn() == []


async def test_events_read_before_a_dump_are_not_applied_after_it(running: Running) -> None:
    """In a burst, kernel events waited ~25 s in the inbox behind ExaBGP's lines; a dump
    triggered meanwhile showed the MACs deleted, and their "learned" events, applied after
    it, announced them again (157 at a time, one monitor buffer). Here: a "learned" event
    waits behind a loss while the MAC is deleted unseen; rounds of MAX_ITEMS_PER_ROUND
    put the dump between them."""
    running.kernel.learn(PORT, BR, HOST)
    await until(lambda: bool(running.announced(HOST)))
    learned = running.kernel.fdb[(PORT, HOST, None)]
    loop = asyncio.get_running_loop()

    def lost() -> KernelChanged:
        return KernelChanged([MonitorOverflowed()], running.daemon.clock())

    def enqueue(item: KernelChanged | None = None) -> None:
        # in order with the speaker's lines, which arrive through call_soon_threadsafe
        if item is None:
            running.speaker.feed()
        else:
            loop.call_soon_threadsafe(running.daemon.inbox.put_nowait, item)

    running.kernel.dump_delay = 0.2  # the owner is busy: what follows piles up
    enqueue(lost())
    await asyncio.sleep(0.05)
    for _ in range(MAX_ITEMS_PER_ROUND - 1):
        enqueue()
    enqueue(lost())  # last of a round: its dump shows the MAC gone
    enqueue(KernelChanged([FdbUpdated(learned)], running.daemon.clock()))  # read earlier
    for _ in range(MAX_ITEMS_PER_ROUND - 1):
        enqueue()
    enqueue(lost())
    del running.kernel.fdb[(PORT, HOST, None)]  # deleted; its event is the one lost

    await until(lambda: not running.daemon.inbox.empty())  # the items are in
    await until(running.daemon.inbox.empty)
    await running.ask("show counters")  # answered in a later round: all items handled
    assert len(running.announced(HOST)) == 1
    assert [c.advert.mac for c in running.withdrawn()] == [HOST]  # type: ignore[union-attr]


async def test_unknown_vni_is_refused_by_name(running: Running) -> None:
    with pytest.raises(control.ControlError, match="VNI 999 is not configured"):
        await running.ask("show vni", vni=999)


async def test_clear_session_resets_a_reflectors_session_and_refuses_others(
    running: Running,
) -> None:
    assert await running.ask("clear session", peer=RR) == {"peer": RR, "was": "not established"}
    assert running.speaker.sent[-1] == f"reset {RR}"
    with pytest.raises(
        control.ControlError, match=f"no BGP peer '192.0.2.99' here; the peers: {RR}"
    ):
        await running.ask("clear session", peer="192.0.2.99")
    assert running.speaker.sent[-1] == f"reset {RR}"  # nothing else reset


@pytest.mark.parametrize(("budget", "paced"), [(0, False), (0.0001, True)])
async def test_periodic_reconciles_keep_to_their_cpu_budget(
    tmp_path: Path, budget: float, paced: bool
) -> None:
    """Every 0.05 s as configured without a budget; with one of 0.0001% of a core, any
    reconcile (at least a microsecond of CPU) puts the next one seconds away."""
    cfg = parse(
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {tmp_path / 'a.sock'}\n"
        f"state-dir: {tmp_path / 'state'}\nsweep-delay: 0\nreconcile-interval: 0.05\n"
        f"reconcile-budget: {budget}\n"
    )
    speaker, kernel = FakeSpeaker(), MemoryKernel(LINKS)
    task = asyncio.create_task(Daemon(cfg, speaker, kernel).run())
    try:
        await until(lambda: kernel.dumps >= 2)  # the start's, then the first periodic one
        dumps = kernel.dumps
        if paced:
            await asyncio.sleep(0.5)  # the window: ten intervals as configured
            assert kernel.dumps - dumps <= 1
        else:
            await until(lambda: kernel.dumps - dumps >= 3)
    finally:
        speaker.close()
        await asyncio.wait_for(task, 5)


async def test_every_reconcile_leaves_its_dump_reusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each periodic reconcile keeps its dump's memory reusable: routes are not decoded
    between the dump's objects or the comparison's keys (planned before decoding goes
    on), and the freed dump goes back to the system (glibc keeps freed heap pages
    otherwise: RSS after the first reconcile stayed up)."""
    released: list[int] = []
    monkeypatch.setattr(
        dispatcher.heap, "release_free_memory", lambda: released.append(kernel.dumps)
    )
    flushes: list[tuple[int, bool]] = []  # (dumps so far, decoding held) at each plan
    flush = Daemon.flush

    def recorded(daemon: Daemon, engine: Any) -> int:
        flushes.append((kernel.dumps, bool(speaker.holds) and speaker.holds[-1]))
        return flush(daemon, engine)

    monkeypatch.setattr(Daemon, "flush", recorded)
    cfg = parse(
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {tmp_path / 'a.sock'}\n"
        f"state-dir: {tmp_path / 'state'}\nsweep-delay: 0\nreconcile-interval: 0.05\n"
        "reconcile-budget: 0\n"
    )
    speaker, kernel = FakeSpeaker(), MemoryKernel(LINKS)
    task = asyncio.create_task(Daemon(cfg, speaker, kernel).run())
    try:
        await until(lambda: kernel.dumps >= 3)  # the start's, then periodic ones
        await until(lambda: 3 in released)  # after the third dump, before the next
        # and the reader's decoding was held around each reconcile's dump, then released
        assert speaker.holds[:4] == [True, False, True, False]
        assert (2, True) in flushes and (3, True) in flushes
    finally:
        speaker.close()
        await asyncio.wait_for(task, 5)
