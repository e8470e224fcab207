"""The engine: the one owner of the agent's state. Inputs in (kernel observations, speaker
events, the time), work out (kernel ops and advert changes), and its next deadline.

No I/O happens here. Work is incremental: every change marks keys dirty, and only dirty keys
are planned, so one route costs the same whether the table holds ten routes or a hundred
thousand. ``take_work`` hands out both kinds of work at once, so callers need not know in
which order to ask for them. The state itself is ``state.State``; the modules ``observe``,
``receive``, ``work`` and ``timers`` change it; this class is their entry points.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from evpn_agent.core import observe, receive, timers, work
from evpn_agent.core.state import State
from evpn_agent.core.work import Work, Written
from evpn_agent.model import AdvertKey, BgpEvent, KernelEvent, KernelSnapshot, Managed, Op
from evpn_agent.model.keys import VniMac

__all__ = ["Engine", "Work", "Written"]


class Engine(State):
    # -- inputs --------------------------------------------------------------------------

    def load_snapshot(self, snap: KernelSnapshot) -> None:
        """Start state, or a resync after lost events: rebuild from a full dump."""
        observe.load_snapshot(self, snap)

    def on_kernel(self, events: Iterable[KernelEvent], now: float | None = None) -> bool:
        """Apply monitor events; False means events were lost and a dump is needed."""
        return observe.on_kernel(self, events, now)

    def on_bgp(self, events: Iterable[BgpEvent], now: float) -> None:
        receive.on_bgp(self, events, now)

    def refresh_asked(self, now: float) -> None:
        """The speaker was told to ask every peer for its table again (route refresh)."""
        self.peers.refresh_sent(now)

    def tick(self, now: float) -> bool:
        """Retry refused writes, end freezes, complete quiet tables, expire held routes,
        enable the sweep, compact the path table after churn. True if a large table was
        freed: the process may hand free memory back to the system."""
        return timers.tick(self, now)

    def clear_duplicate(self, vni: int | None, mac: str | None) -> list[VniMac]:
        """Forget duplicate marks (all, one VNI's, or one MAC's); returns what was cleared."""
        keys = [
            k
            for k in list(self.dad.duplicates)
            if (vni is None or k.vni == vni) and (mac is None or k.mac == mac)
        ]
        for key in keys:
            self.dad.clear(key)
            self.dirty.fdb.add(key)
            self.dirty_adverts.add(AdvertKey(key.vni, key.mac, None))
        return keys

    # -- outputs -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``tick`` has something to do, if nothing else happens before."""
        return timers.next_deadline(self)

    def pending(self) -> bool:
        return bool(self.dirty or self.drift.compare or self.dirty_adverts or self.retired)

    def take_work(self) -> Work:
        """Kernel ops and advert changes for everything dirty; dirty sets are emptied."""
        return work.take_work(self)

    def kernel_applied(self, ops: Sequence[Op], failed: Iterable[Op]) -> None:
        """Record acked writes in the mirror; failed ops are planned again after a backoff."""
        work.kernel_applied(self, ops, failed)

    def kernel_submitted(self, ops: Sequence[Op]) -> Written:
        """``ops`` go to the kernel: planning from now on counts them as done."""
        return work.kernel_submitted(self, ops)

    def kernel_settled(
        self, written: Written, failed: Iterable[Op], gone: Iterable[Op] = ()
    ) -> None:
        """The kernel's answer for ``written``: ``failed`` were refused (or their outcome
        is unknown) and are planned again after a backoff, except ``gone``, those of them
        refused because their device no longer exists."""
        work.kernel_settled(self, written, failed, gone)

    def managed(self) -> Managed:
        """Where our entries live: the kernel edge drops the echoes of our writes there."""
        return self.view.managed
