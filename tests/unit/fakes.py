"""Fakes of the daemon's two ports, for root-free tests of the daemon: a speaker that
records what it is told and delivers prepared events, and a kernel held in memory."""

from __future__ import annotations

import asyncio
import errno
import itertools
import threading
from collections.abc import AsyncIterator, Iterable, Sequence

from evpn_agent.kernel.writer import OpFailure
from evpn_agent.model import (
    NTF_EXT_LEARNED,
    NTF_MASTER,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_REACHABLE,
    ZERO_MAC,
    AddFdb,
    AddFlood,
    AddNeigh,
    AdvertChange,
    BgpEvent,
    DelFdb,
    DelFlood,
    DelNeigh,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    KernelSnapshot,
    Link,
    LinkRemoved,
    Managed,
    NeighEntry,
    Op,
)
from evpn_agent.model.keys import BridgeMac
from evpn_agent.speaker import Deliver, Line


class FakeSpeaker:
    def __init__(self) -> None:
        self.deliver: Deliver | None = None
        self.sent: list[AdvertChange | str] = []  # changes, and "sync begin" etc.
        self.sends: list[int] = []  # changes per send() call with any
        self.refuse: set[AdvertChange] = set()  # announces to answer with a refusal
        self._prepared: dict[bytes, list[BgpEvent]] = {}
        self._tokens = itertools.count()
        self.router_id: str | None = None  # set by decode_ahead
        self.holds: list[bool] = []  # hold_decoding's calls

    def start(self, deliver: Deliver) -> None:
        self.deliver = deliver

    def feed(self, *events: BgpEvent) -> None:
        """Deliver ``events`` as one line, as the real speaker's reader thread would."""
        token = f"line {next(self._tokens)}".encode()
        self._prepared[token] = list(events)
        assert self.deliver is not None
        self.deliver([token])

    def close(self) -> None:
        assert self.deliver is not None
        self.deliver(None)

    def decode(self, line: Line, router_id: str) -> tuple[list[BgpEvent], float | None]:
        assert isinstance(line, bytes)
        return self._prepared.pop(line), None

    def decode_ahead(self, router_id: str) -> None:
        self.router_id = router_id

    def hold_decoding(self, held: bool) -> None:
        self.holds.append(held)

    def send(self, changes: Sequence[AdvertChange]) -> None:
        from evpn_agent.model import AdvertRefused

        self.sent.extend(changes)
        if changes:
            self.sends.append(len(changes))
        refused = [AdvertRefused(c) for c in changes if c in self.refuse]
        self.refuse -= {r.change for r in refused}
        if refused:
            self.feed(*refused)

    def begin_sync(self) -> None:
        self.sent.append("sync begin")

    def end_sync(self) -> None:
        self.sent.append("sync end")

    def ask_refresh(self) -> None:
        self.sent.append("refresh")

    def ask_sessions(self) -> None:
        self.sent.append("sessions")

    def reset_session(self, peer: str) -> None:
        self.sent.append(f"reset {peer}")

    def changes(self) -> list[AdvertChange]:
        return [c for c in self.sent if isinstance(c, AdvertChange)]


class MemoryKernel:
    """Links and FDB/neighbour tables in memory; ops change them as the kernel would."""

    def __init__(self, links: Sequence[Link]) -> None:
        self.links = list(links)
        self.fdb: dict[tuple[int, str, str | None], FdbEntry] = {}  # (ifindex, mac, dst)
        self.neigh: dict[tuple[int, str], NeighEntry] = {}
        self.applied: list[Op] = []
        self.refuse: set[Op] = set()
        self.managed = Managed()
        self.dump_delay = 0.0
        self.dumps = 0
        # The daemon writes from a thread of its own; the test's world changes on the loop.
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None  # set: writes wait for it (a slow kernel)
        self.writing = threading.Event()  # a write has reached the kernel
        self.batches: list[int] = []  # ops per write, in order
        self._remote: dict[tuple[int, str], list[str]] = {}  # (ifindex, mac) -> dst written
        self._events: asyncio.Queue[list[KernelEvent]] = asyncio.Queue()

    async def start(self) -> None:
        return None

    async def dump(self, known: Iterable[BridgeMac] = ()) -> KernelSnapshot:
        # Exact whatever changes (nothing is skipped): no local MAC needs a lookup.
        self.dumps += 1
        with self.lock:
            snap = KernelSnapshot(
                tuple(self.links), tuple(self.fdb.values()), tuple(self.neigh.values())
            )
        if self.dump_delay:
            await asyncio.sleep(self.dump_delay)  # what happens meanwhile is not in it
        return snap

    async def _iterate(self) -> AsyncIterator[list[KernelEvent]]:
        while True:
            yield await self._events.get()

    def events(self) -> AsyncIterator[list[KernelEvent]]:
        return self._iterate()

    @property
    def events_lost(self) -> bool:
        return False

    def set_managed(self, managed: Managed) -> None:
        self.managed = managed

    def close(self) -> None:
        return None

    # -- what the world does ---------------------------------------------------------------

    def learn(self, port: int, bridge: int, mac: str) -> None:
        """The bridge learns ``mac`` on ``port``: the entry, and its event."""
        entry = FdbEntry(port, mac, None, None, bridge, 0, NUD_REACHABLE)
        with self.lock:
            self.fdb[(port, mac, None)] = entry
        self._events.put_nowait([FdbUpdated(entry)])

    def delete_link(self, ifindex: int) -> None:
        """Someone deletes a device (its entries go with it): the device, and its event."""
        with self.lock:
            (link,) = [link for link in self.links if link.ifindex == ifindex]
            self.links.remove(link)
            for key in [key for key in self.fdb if key[0] == ifindex]:
                del self.fdb[key]
        self._events.put_nowait([LinkRemoved(ifindex, link.name)])

    def forget(self, port: int, mac: str) -> None:
        with self.lock:
            entry = self.fdb.pop((port, mac, None))
        self._events.put_nowait([FdbRemoved(entry)])

    # -- what the agent does ---------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[OpFailure]:
        failures = []
        self.batches.append(len(ops))
        self.writing.set()
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            present = {link.ifindex for link in self.links}
            for op in ops:
                if op in self.refuse:
                    failures.append(OpFailure(op, 22, "refused by the test"))
                    continue
                if op.ifindex not in present:
                    failures.append(OpFailure(op, errno.ENODEV, "unknown ifindex"))
                    continue
                self.applied.append(op)
                self._write(op)
        return failures

    def _write(self, op: Op) -> None:
        own = NTF_SELF | NTF_EXT_LEARNED
        if isinstance(op, AddFdb | DelFdb):
            # the entries our writes made for this MAC (an index: bursts of thousands)
            for dst in self._remote.pop((op.ifindex, op.mac), ()):
                self.fdb.pop((op.ifindex, op.mac, dst), None)
        if isinstance(op, AddFdb):
            self.fdb[(op.ifindex, op.mac, op.dst)] = FdbEntry(
                op.ifindex, op.mac, op.vlan, op.dst, None, own | NTF_MASTER, NUD_REACHABLE
            )
            self._remote[(op.ifindex, op.mac)] = [op.dst]
        elif isinstance(op, AddFlood):
            self.fdb[(op.ifindex, ZERO_MAC, op.dst)] = FdbEntry(
                op.ifindex, ZERO_MAC, None, op.dst, None, NTF_SELF, NUD_NOARP | NUD_PERMANENT
            )
        elif isinstance(op, DelFlood):
            self.fdb.pop((op.ifindex, ZERO_MAC, op.dst), None)
        elif isinstance(op, AddNeigh):
            self.neigh[(op.ifindex, op.ip)] = NeighEntry(
                op.ifindex, op.ip, op.mac, NTF_EXT_LEARNED, NUD_NOARP, None
            )
        elif isinstance(op, DelNeigh):
            self.neigh.pop((op.ifindex, op.ip), None)
