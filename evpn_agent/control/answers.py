"""What the control socket's read requests answer, from the engine. The daemon's owner
task calls this between two inputs, so every answer is one consistent state."""

from __future__ import annotations

import os
from typing import Any

from evpn_agent import heap
from evpn_agent.control import views
from evpn_agent.core import drift
from evpn_agent.core.engine import Engine
from evpn_agent.latency import Latency

READS = frozenset(
    {"show vni", "show mac", "show neigh", "show peers", "show routes", "show vxlans",
     "show counters"}
)  # fmt: skip


def check_vni(engine: Engine, request: dict[str, Any]) -> int | None:
    vni = request.get("vni")
    if vni is not None and vni not in engine.vnis:
        raise ValueError(f"VNI {vni} is not configured on this VTEP")
    return vni if isinstance(vni, int) else None


def read(engine: Engine, request: dict[str, Any], now: float, latency: dict[str, Latency]) -> Any:
    """The answer to a read request (a command in READS)."""
    command = request.get("command")
    vni = check_vni(engine, request)
    if command == "show vni":
        return views.vnis(engine, vni, now)
    if command == "show mac":
        return views.macs(engine, vni, request.get("mac"))
    if command == "show neigh":
        return views.neighbours(engine, vni)
    if command == "show peers":
        return views.peers(engine, engine.cfg, now)
    if command == "show routes":
        limit, offset = request.get("limit"), request.get("offset", 0)
        if limit is not None and not (isinstance(limit, int) and isinstance(offset, int)):
            raise ValueError("limit and offset are whole numbers")
        return views.routes(engine, request.get("type"), vni, limit=limit, offset=offset)
    if command == "show vxlans":
        return views.vxlans(engine)
    if command == "show counters":
        counters = {
            # every kind of repair, zero included: what a script looks for is always there
            **{drift.counter_name(k, a): 0 for k in drift.KINDS for a in drift.ACTIONS},
            **engine.counters,
            "bgp-announces": engine.adverts.announced,
            "bgp-withdraws": engine.adverts.withdrawn,
        }
        return {
            "counters": dict(sorted(counters.items())),
            "latency": {name: value.summary() for name, value in latency.items()},
        }
    raise ValueError(f"unknown command {command!r}")


def memory(engine: Engine, speaker_pid: int) -> dict[str, Any]:
    """``show memory``: the RSS of this process (the core) and of the speaker, the core's
    heap, and its tables, largest first."""
    core = os.getpid()
    processes: dict[str, Any] = {
        "core": {"pid": core, **(heap.process_memory(core) or {})},
        "speaker": {"pid": speaker_pid, **(heap.process_memory(speaker_pid) or {})},
    }
    processes["core"].update(allocator=heap.allocator(), python=heap.python_heap())
    tables = sorted(engine.table_sizes().items(), key=lambda item: (-item[1].bytes, item[0]))
    return {
        "processes": processes,
        "tables": {name: {"entries": size.entries, "bytes": size.bytes} for name, size in tables},
    }
