"""The kernel as the daemon sees it: a port with a netlink implementation.

A dump taken while the FDB changes is not to be trusted blindly: the kernel resumes an FDB
dump by position, so concurrent deletions make it skip entries that are still there, and
unlike the neighbour tables it does not say so. ``NetlinkKernel.dump`` marks such a dump
incomplete (deletions seen meanwhile, events lost, or events still unread when it ended),
and looks up one by one the local MACs the caller knows and the dump lacks
(``kernel.fdb_probe``), so that for those the snapshot is exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol

from evpn_agent.kernel.fdb_probe import add_missing
from evpn_agent.kernel.monitor import Monitor
from evpn_agent.kernel.snapshot import dump
from evpn_agent.kernel.writer import NetlinkWriter, OpFailure
from evpn_agent.model import KernelEvent, KernelSnapshot, Managed, Op
from evpn_agent.model.keys import BridgeMac


class Kernel(Protocol):
    """What the daemon needs of the kernel (netlink here, in memory in tests)."""

    async def start(self) -> None:
        """Start following changes; called before the first dump."""

    async def dump(self, known: Iterable[BridgeMac] = ()) -> KernelSnapshot:
        """Devices, FDB and neighbours; ``known``: local MACs the caller holds, which the
        snapshot must hold too unless the kernel says they are gone (``fdb_gone``)."""
        ...

    def events(self) -> AsyncIterator[list[KernelEvent]]: ...

    def apply(self, ops: Sequence[Op]) -> list[OpFailure]: ...

    def set_managed(self, managed: Managed) -> None:
        """Where our own writes echo: those events need not be reported."""

    @property
    def events_lost(self) -> bool:
        """Events were lost since the last complete dump (or no complete dump yet)."""

    def close(self) -> None: ...


class NetlinkKernel:
    def __init__(self, rcvbuf: int) -> None:
        self.monitor = Monitor(rcvbuf=rcvbuf)
        self.writer = NetlinkWriter()
        self._complete_at: int | None = None  # overflows counted at the last complete dump

    async def start(self) -> None:
        await self.monitor.start()  # bind before the dump: nothing changes unseen between

    async def dump(self, known: Iterable[BridgeMac] = ()) -> KernelSnapshot:
        monitor = self.monitor
        monitor.catch_up()  # deletions from before the dump are counted before it
        deletions, overflows = monitor.fdb_generation()
        snap = await dump(vxlan_bridge_side=False)  # the engine reads the VXLAN side only
        # The FDB dump has no NLM_F_DUMP_INTR: an entry deleted while the kernel walks
        # the table can make it skip one that did not change. Count the deletions queued
        # meanwhile; what is still unread after that may be one.
        monitor.catch_up()
        changed = monitor.backlog() or monitor.fdb_generation() != (deletions, overflows)
        if changed and snap.complete:
            snap = dataclasses.replace(snap, complete=False)
        if snap.complete:
            self._complete_at = overflows
        return await add_missing(snap, known)

    @property
    def events_lost(self) -> bool:
        return self._complete_at != self.monitor.stats.overflows

    def events(self) -> AsyncIterator[list[KernelEvent]]:
        return self.monitor.events()

    def apply(self, ops: Sequence[Op]) -> list[OpFailure]:
        return self.writer.apply(ops)

    def set_managed(self, managed: Managed) -> None:
        if self.monitor.quiet != managed:
            self.monitor.quiet = managed

    def close(self) -> None:
        self.monitor.close()
        self.writer.close()
