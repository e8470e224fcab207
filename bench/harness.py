"""The fabric of one benchmark run, and what happens to it when the run ends."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from bench.child import Child
from lab.fabric import Fabric


@contextlib.contextmanager
def bench_fabric(prefix: str, children: Sequence[Child] = ()) -> Iterator[Fabric]:
    """The fabric of one benchmark run, each box's daemons in a CPU group of their own (as
    systemd runs each service: see lab.fabric.cpu_groups). If the run fails, every daemon's
    log tail goes to stderr; at the end the child programs (watchers, senders) stop, then
    the fabric goes."""
    with Fabric(prefix, cpu_groups=True) as fab:
        try:
            yield fab
        except BaseException:
            logging.getLogger("bench").error("benchmark failed; logs:\n%s", fab.logs())
            raise
        finally:
            for child in children:
                child.stop()
