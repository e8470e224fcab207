"""The heap of both long-running processes of a VTEP: the cyclic garbage collector's
pace, and handing free memory back to the system after churn.

The agent core holds hundreds of thousands of long-lived objects (routes, keys, entries),
and ExaBGP, through our launcher, the advert table; neither creates many reference cycles.
With CPython's default thresholds (700, 10, 10) a burst of routes makes the collector
rescan those heaps again and again: about a third of the core's CPU for 100,000 routes
received, and a quarter of the launcher's for 50,000 local MACs advertised. Collections
stay, just far less often; the garbage they would have freed earlier is bounded by the
first threshold (objects, not bytes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable
from typing import Any

GC_THRESHOLDS = (50_000, 20, 20)


def tune_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


@functools.cache
def _glibc(function: str) -> Any:
    """``function`` of the C library, or None when it has none (not glibc, or older)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), function)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to ask
        return None


def release_free_memory() -> None:
    """Ask glibc to return its free heap pages to the system (``malloc_trim``).

    Python frees a large table into glibc's heap, which keeps the pages for reuse: after
    the core builds its path table anew following churn (``Rib.compact``), RSS stays up
    by the old table's size until this. Cheap (a walk of the free lists), so called
    after each such compaction, not on a timer."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


MIB = 1 << 20


def allocator() -> dict[str, float] | None:
    """glibc's heap over all its arenas, MiB (None: not glibc): what it took from the
    system, what is in use, what is free within it, and the large blocks mapped apart.
    Free memory whose pages a trim (``release_free_memory``) handed back still counts
    as free here, but is no longer resident (not in RSS). Python's own allocator takes
    its arenas from the system apart from this heap."""
    info = _glibc("mallinfo2")  # glibc 2.33 and on
    if info is None:
        return None
    info.restype, info.argtypes = _Mallinfo2, []
    m = info()
    return {
        "heap_mib": round(m.arena / MIB, 1),
        "in_use_mib": round(m.uordblks / MIB, 1),
        "free_mib": round(m.fordblks / MIB, 1),
        "mapped_mib": round(m.hblkhd / MIB, 1),
    }


def python_heap() -> dict[str, Any]:
    """Python's own allocator and collector: blocks allocated (objects and their parts),
    and the collections run per generation (a full one is rare: ``GC_THRESHOLDS``)."""
    return {
        "allocated_blocks": sys.getallocatedblocks(),
        "collections": [generation["collections"] for generation in gc.get_stats()],
    }


def process_memory(pid: int) -> dict[str, float] | None:
    """RSS and peak RSS of process ``pid``, MiB (None: gone, or not readable)."""
    fields = {"VmRSS:": "rss_mib", "VmHWM:": "peak_rss_mib"}
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                words = line.split()  # "VmRSS:\t  12345 kB"
                if words and words[0] in fields:
                    out[fields[words[0]]] = round(int(words[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return out or None


class TrimWhenQuiet:
    """When the heap is handed back in a process whose work comes in bursts (ExaBGP's,
    through our launcher): once a burst is over, ``QUIET`` seconds after its last work.

    UPDATEs go through the speaker as lines of hex and byte strings of up to ~260 KB; glibc
    keeps the pages they freed. Measured in a churn soak: ExaBGP's heap held 1-2 MiB more
    free memory after 10 minutes of MAC moves, RSS for nothing. Not on a timer (an idle
    speaker wakes for nothing) and not while work goes on (the pages would only come back).
    """

    QUIET = 5.0  # seconds without work before the heap is handed back

    def __init__(self, trim: Callable[[], None] = release_free_memory) -> None:
        self._trim = trim
        self._last_work: float | None = None  # None: nothing done since the last trim

    def worked(self, now: float) -> None:
        self._last_work = now

    def due_in(self, now: float) -> float | None:
        """Seconds until a trim is due (0 when it is), or None when none is pending."""
        if self._last_work is None:
            return None
        return max(0.0, self._last_work + self.QUIET - now)

    def trim_if_due(self, now: float) -> bool:
        if self._last_work is None or now < self._last_work + self.QUIET:
            return False
        self._last_work = None
        self._trim()
        return True
