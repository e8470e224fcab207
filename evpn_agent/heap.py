"""The cyclic garbage collector's pace, for both long-running processes of a VTEP.

The agent core holds hundreds of thousands of long-lived objects (routes, keys, entries),
and ExaBGP, through our launcher, the advert table; neither creates many reference cycles.
With CPython's default thresholds (700, 10, 10) a burst of routes makes the collector
rescan those heaps again and again: about a third of the core's CPU for 100,000 routes
received, and a quarter of the launcher's for 50,000 local MACs advertised. Collections
stay, just far less often; the garbage they would have freed earlier is bounded by the
first threshold (objects, not bytes).
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 20)


def tune_collector() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
