"""Kernel change events from a raw rtnetlink multicast socket (links, FDB, neighbours).

Every FDB entry the writer installs comes back here (bridge entry, VXLAN entry, flag update:
~300k notifications for 100k remote MACs within a second). Those echoes (Managed) are
dropped in the kernel by a socket filter (echo_filter) and, for what passes it, recognised
from the ndmsg header with `struct` and dropped undecoded; the rest is decoded into events.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

from evpn_agent.kernel.bridge_vlan import PortVlans
from evpn_agent.kernel.echo_filter import attach, build_program
from evpn_agent.kernel.links import link_of, port_vlans_of
from evpn_agent.kernel.neighbours import decode_neighbour
from evpn_agent.kernel.netlink import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    NDA_LLADDR,
    NDMSG,
    NLATTR,
    NLMSGHDR,
    NTF_EXT_LEARNED,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTMGRP_LINK,
    RTMGRP_NEIGH,
    align4,
    open_route_socket,
)
from evpn_agent.kernel.snapshot import dump_devices, with_vlans
from evpn_agent.model import (
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    Link,
    LinkRemoved,
    LinkUpdated,
    Managed,
    MonitorOverflowed,
    NeighRemoved,
    NeighUpdated,
)

log = logging.getLogger(__name__)

FILTER_DELAY = 1.0  # seconds between two rebuilds of the kernel filter for added devices
# reads of 256 KiB by one catch_up(): more queued than that leaves a backlog (incomplete)
CATCH_UP_READS = 256

_ZERO_MAC = bytes(6)
LINK_FAMILY_AT = NLMSGHDR.size  # ifinfomsg's first byte
_ATTRS = NLMSGHDR.size + NDMSG.size


@dataclass(slots=True)
class MonitorStats:
    messages: int = 0  # messages that reached userspace
    quiet: int = 0  # of those, dropped as our echo (the kernel filter drops most before)
    overflows: int = 0
    # FDB deletions seen (not our echoes). The kernel resumes an FDB dump by position, so
    # a deletion meanwhile makes it skip entries, and it does not flag that dump as it
    # does neighbour dumps: the agent compares this before and after one.
    fdb_deletions: int = 0
    kernel_filter: bool = False  # whether the in-kernel echo filter is attached


@dataclass(slots=True)
class _Devices:
    """Last known devices and bridge-port VLANs, to merge AF_BRIDGE port messages."""

    links: dict[int, Link] = field(default_factory=dict)
    ports: dict[int, PortVlans] = field(default_factory=dict)


class Monitor:
    """Call start() before dumping, then iterate events().

    ``quiet``: the devices whose entries are ours (model.Managed). Messages about those
    entries are the echo of our own writes and are dropped undecoded, in the kernel by a
    socket filter where it can be attached. Deletions are dropped too, so an entry of ours
    removed by someone else (or flushed with its device) is only noticed by a reconcile. A
    new filter also applies to messages already queued but not yet read.
    """

    def __init__(
        self,
        quiet: Managed | None = None,
        *,
        rcvbuf: int = 64 << 20,
        max_batch: int = 1024,
    ) -> None:
        self._quiet = quiet or Managed()
        self.stats = MonitorStats()
        self._rcvbuf = rcvbuf
        self._max_batch = max_batch
        self._sock: socket.socket | None = None
        self._buf = bytearray(1 << 18)
        self._overflow_pending = False
        self._readable: asyncio.Event | None = None
        self._caught_up: list[KernelEvent] = []  # read by catch_up(), for events() first
        self._filtered = Managed()  # what the kernel filter drops
        self._attached_at = -math.inf
        self._refilter: asyncio.TimerHandle | None = None
        self._devices = _Devices()

    @property
    def quiet(self) -> Managed:
        return self._quiet

    @quiet.setter
    def quiet(self, quiet: Managed) -> None:
        """Replace the echo filter (e.g. when managed devices come and go).

        Building the kernel filter takes ~40 ms at 2,000 devices, and VNIs created or
        deleted one by one change the set many times a second. When devices were only
        added, or only deleted (no event can come from a device that is gone; ifindexes
        are allocated cyclically, not reused at once), the filter follows at most once per
        FILTER_DELAY; meanwhile the echoes of new devices are dropped here, in user space.
        A device that still exists but is no longer managed leaves the filter at once:
        its events must not stay hidden."""
        self._quiet = quiet
        if self._sock is None:
            return
        filtered, links = self._filtered, self._devices.links
        left = (filtered.vxlans - quiet.vxlans) | (filtered.svis - quiet.svis)
        can_wait = not any(ifindex in links for ifindex in left)
        wait = self._attached_at + FILTER_DELAY - time.monotonic()
        if can_wait and wait > 0:
            if self._refilter is None:
                with contextlib.suppress(RuntimeError):  # no loop running: at once, below
                    loop = asyncio.get_running_loop()
                    self._refilter = loop.call_later(wait, self._refilter_now)
                    return
            else:
                return
        self._attach_filter(self._sock)

    def _refilter_now(self) -> None:
        self._refilter = None
        if self._sock is not None and self._filtered != self._quiet:
            self._attach_filter(self._sock)

    async def start(self) -> None:
        """Subscribe to link and neighbour changes; from now on nothing is missed."""
        sock = open_route_socket(self._rcvbuf, RTMGRP_LINK | RTMGRP_NEIGH)
        sock.setblocking(False)
        self._attach_filter(sock)
        self._sock = sock
        await self._load_devices()

    def _attach_filter(self, sock: socket.socket) -> None:
        # The kernel-side filter is an optimisation; _is_quiet() below stays authoritative.
        if self._refilter is not None:
            self._refilter.cancel()
            self._refilter = None
        program = build_program(self._quiet.vxlans, self._quiet.svis)
        self.stats.kernel_filter = attach(sock, program)
        self._filtered = self._quiet
        self._attached_at = time.monotonic()

    def close(self) -> None:
        if self._refilter is not None:
            self._refilter.cancel()
            self._refilter = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Monitor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def events(self) -> AsyncIterator[list[KernelEvent]]:
        """Batches of events, in kernel order, as they arrive (never an empty batch).

        A message is decoded (and counted) in the same step that reads it off the socket,
        so :meth:`backlog` on the socket tells exactly what has not been seen yet.
        """
        sock = self._sock
        if sock is None:
            raise RuntimeError("Monitor.start() first")
        loop = asyncio.get_running_loop()
        readable = self._readable = asyncio.Event()
        loop.add_reader(sock.fileno(), readable.set)
        try:
            while True:
                batch, self._caught_up = self._caught_up, []
                readable.clear()
                drained = self._read(sock, batch, self._max_batch)
                overflowed, self._overflow_pending = self._overflow_pending, False
                if overflowed:
                    batch.append(MonitorOverflowed())
                if batch:
                    # Handed over before any await: the daemon applies every event read
                    # so far before it dumps, and must not get one of them after the dump.
                    yield batch
                if overflowed:
                    await self._load_devices()
                if drained:
                    await readable.wait()
                else:
                    await asyncio.sleep(0)  # more is queued: let other tasks run first
        finally:
            loop.remove_reader(sock.fileno())

    def _lost(self) -> None:
        self.stats.overflows += 1
        self._overflow_pending = True
        if self._readable is not None:
            self._readable.set()  # wake events() to report it
        log.warning("netlink monitor overflowed: events lost, a dump is needed")

    def catch_up(self) -> None:
        """Read what waits on the socket now; :meth:`events` hands it over first, in order.

        A dump's caller compares :meth:`fdb_generation` before and after it, and an unread
        message may be an FDB deletion: reading the queue counts them. Before, any unread
        message made the dump count as incomplete, and at 1,000 VNIs the bridges' own
        neighbour discovery left one queued after nearly every dump: each start dumped
        the kernel two or three times."""
        if self._sock is None:
            return
        self._read(self._sock, self._caught_up, CATCH_UP_READS)
        if self._caught_up and self._readable is not None:
            self._readable.set()  # wake events() to hand them over

    def _read(self, sock: socket.socket, out: list[KernelEvent], reads: int) -> bool:
        """Up to ``reads`` datagrams off the socket, their events into ``out``; True when
        the socket is drained. A lost event (ENOBUFS) is reported by events()."""
        buf = self._buf
        try:
            for _ in range(reads):
                self._feed(buf, sock.recv_into(buf), out)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self._lost()
        return False

    def backlog(self) -> bool:
        """Whether messages wait unread on the socket now (or were lost meanwhile)."""
        if self._sock is None:
            return False
        try:
            return bool(self._sock.recv(NLMSGHDR.size, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            self._lost()  # reading the error cleared it: events() reports it next
            return True

    def fdb_generation(self) -> tuple[int, int]:
        """Changes when FDB entries are deleted or events are lost: equal values before
        and after an FDB dump mean it skipped nothing."""
        return self.stats.fdb_deletions, self.stats.overflows

    async def _load_devices(self) -> None:
        links, ports = await dump_devices()
        self._devices = _Devices({link.ifindex: link for link in links}, ports)

    def feed(self, data: bytes | bytearray) -> list[KernelEvent]:
        """Events for raw netlink messages (sans-I/O entry point, used by tests)."""
        out: list[KernelEvent] = []
        self._feed(bytearray(data), len(data), out)
        return out

    def _feed(self, buf: bytearray, received: int, out: list[KernelEvent]) -> None:
        offset = 0
        while offset + NLMSGHDR.size <= received:
            length, msg_type, _flags, _seq, _pid = NLMSGHDR.unpack_from(buf, offset)
            if length < NLMSGHDR.size:
                break
            self.stats.messages += 1
            if msg_type in (RTM_NEWNEIGH, RTM_DELNEIGH):
                if self._is_quiet(buf, offset, length):
                    self.stats.quiet += 1
                else:
                    if msg_type == RTM_DELNEIGH and buf[offset + NLMSGHDR.size] == AF_BRIDGE:
                        self.stats.fdb_deletions += 1
                    self._on_neighbour(msg_type, buf, offset, out)
            elif msg_type in (RTM_NEWLINK, RTM_DELLINK):
                try:
                    self._on_link(msg_type, bytes(buf[offset : offset + length]), out)
                except Exception:  # a message we cannot decode must not stop the monitor
                    log.exception("undecodable link message (type %d) skipped", msg_type)
            offset += align4(length)

    def _is_quiet(self, buf: bytearray, offset: int, length: int) -> bool:
        family, ifindex, _state, flags, _type = NDMSG.unpack_from(buf, offset + NLMSGHDR.size)
        if family == AF_BRIDGE:
            if ifindex not in self.quiet.vxlans:
                return False
            return bool(flags & NTF_EXT_LEARNED) or _has_zero_mac(buf, offset, length)
        if family in (AF_INET, AF_INET6):
            return bool(flags & NTF_EXT_LEARNED) and ifindex in self.quiet.svis
        return False

    @staticmethod
    def _on_neighbour(msg_type: int, buf: bytearray, offset: int, out: list[KernelEvent]) -> None:
        entry = decode_neighbour(buf, offset)
        if entry is None:
            return
        if isinstance(entry, FdbEntry):
            out.append(FdbUpdated(entry) if msg_type == RTM_NEWNEIGH else FdbRemoved(entry))
        else:
            out.append(NeighUpdated(entry) if msg_type == RTM_NEWNEIGH else NeighRemoved(entry))

    def _on_link(self, msg_type: int, data: bytes, out: list[KernelEvent]) -> None:
        devices = self._devices
        if data[LINK_FAMILY_AT] == AF_BRIDGE:
            port = port_vlans_of(data)
            ifindex = port.ifindex
            # Bridge port news (VLANs, STP state...), not the device itself: an AF_BRIDGE
            # RTM_DELLINK means the port left the bridge.
            if msg_type == RTM_NEWLINK:
                devices.ports[ifindex] = port
            else:
                devices.ports.pop(ifindex, None)
            known = devices.links.get(ifindex)
            if known is not None:
                self._update_link(known, out)
            return
        # the device itself: decoded from the bytes (a burst of new VNIs is thousands)
        link = link_of(data)
        if msg_type == RTM_DELLINK:
            devices.links.pop(link.ifindex, None)
            devices.ports.pop(link.ifindex, None)
            out.append(LinkRemoved(link.ifindex, link.name))
            return
        self._update_link(link, out)

    def _update_link(self, link: Link, out: list[KernelEvent]) -> None:
        # The kernel re-sends unchanged devices for changes we do not model (MTU, carrier
        # of other devices...): report only changes of the value.
        (merged,) = with_vlans([link], self._devices.ports)
        if self._devices.links.get(merged.ifindex) != merged:
            self._devices.links[merged.ifindex] = merged
            out.append(LinkUpdated(merged))


def _has_zero_mac(buf: bytearray, offset: int, length: int) -> bool:
    pos = offset + _ATTRS
    end = offset + length
    while pos + NLATTR.size <= end:
        alen, atype = NLATTR.unpack_from(buf, pos)
        if alen < NLATTR.size:
            return False
        if atype == NDA_LLADDR:
            return buf[pos + 4 : pos + alen] == _ZERO_MAC
        pos += align4(alen)
    return False
