"""Kernel writes in a thread of their own, one batch in flight at a time.

The kernel does its share of a write (FDB and neighbour updates, their notifications) inside
the writer's syscall, where Python's GIL is released. Run there, a burst's writes overlap the
owner's decoding, RIB updates and planning of the next round, where they used to wait in
series: at 100,000 routes they were about 40% of the owner's time.

The engine records a batch in its mirror when it is handed over (``kernel_submitted``), so the
next round does not plan the same writes again, and settles it when the kernel has answered
(``kernel_settled``): refused writes are put back and retried. A second batch waits for the
first to settle, so the mirror never has more than one batch's guesses in it, and nothing
but this thread writes while a batch is in flight.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from evpn_agent.core.engine import Engine, Written
from evpn_agent.kernel import OpFailure
from evpn_agent.model import Op

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    written: Written
    future: Future[list[OpFailure]]
    stamps: list[float] = field(default_factory=list)  # speaker timestamps of its routes


@dataclass(frozen=True, slots=True)
class Settled:
    failures: list[OpFailure]
    stamps: list[float]  # speaker timestamps of the routes the batch carried
    at: float  # wall clock when the answer was taken


class Writes:
    """``apply`` is the kernel's (synchronous) write; ``wake`` is called from the writer
    thread when a batch is done, so the owner settles it without polling."""

    def __init__(
        self, apply: Callable[[Sequence[Op]], list[OpFailure]], wake: Callable[[], None]
    ) -> None:
        self._apply = apply
        self._wake = wake
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-writes")
        self._batch: _Batch | None = None

    def submit(self, engine: Engine, ops: Sequence[Op]) -> None:
        """Hand ``ops`` to the writer; the batch before must be settled."""
        assert self._batch is None, "one batch in flight at a time"
        written = engine.kernel_submitted(ops)
        future = self._pool.submit(self._apply, ops)
        self._batch = _Batch(written, future)
        future.add_done_callback(self._done)

    def _done(self, _future: Future[list[OpFailure]]) -> None:
        self._wake()

    def hold(self, stamps: list[float]) -> bool:
        """Attach route timestamps to the batch in flight (their latency ends when it is
        written); False when none is in flight."""
        if self._batch is None:
            return False
        self._batch.stamps.extend(stamps)
        return True

    def settle(self, engine: Engine, *, wait: bool = True) -> Settled | None:
        """Take the kernel's answer for the batch in flight (without ``wait``, only if it
        is there already) and give it to the engine."""
        batch = self._batch
        if batch is None or (not wait and not batch.future.done()):
            return None
        self._batch = None
        try:
            failures = batch.future.result()
        except Exception as exc:  # a bug in the writer: nothing is known of these writes
            log.exception("the kernel writer failed")
            message = f"writer failed, outcome unknown: {exc}"
            failures = [OpFailure(op, errno.EIO, message) for op in batch.written.ops]
        # A write to a device deleted meanwhile (ENODEV: a VNI removed during a burst) is
        # expected: its removal event follows.
        gone = [f.op for f in failures if f.errno == errno.ENODEV]
        for failure in [f for f in failures if f.errno != errno.ENODEV][:5]:
            log.warning("kernel refused %s: %s", failure.op, failure.message)
        if gone:
            log.info(
                "%d kernel writes were for devices deleted meanwhile, e.g. %s", len(gone), gone[0]
            )
        engine.kernel_settled(batch.written, [f.op for f in failures], gone)
        return Settled(failures, batch.stamps, time.time())

    def close(self) -> None:
        """Wait for the batch in flight to reach the kernel, then stop the thread."""
        self._pool.shutdown(wait=True)
