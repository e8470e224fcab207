"""Benchmark NetlinkWriter (and optionally pyroute2) installing remote MACs into a VXLAN device.

Run as root from the repo root:  .venv/bin/python bench/bench_netlink.py [--entries N]
It creates its own network namespace (bridge + VXLAN device), re-executes itself inside it,
prints one JSON object on stdout and deletes the namespace, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evpn_agent.kernel.monitor import Monitor
from evpn_agent.kernel.snapshot import dump
from evpn_agent.kernel.writer import NetlinkWriter
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    DelFdb,
    DelNeigh,
    Managed,
    MonitorOverflowed,
    Op,
)

VTEPS = [f"198.51.100.{i}" for i in range(1, 11)]


def mac(i: int) -> str:
    return "02:" + ":".join(f"{b:02x}" for b in i.to_bytes(5, "big"))


def timed(writer: NetlinkWriter, ops: Sequence[Op]) -> dict[str, float | int]:
    started = time.perf_counter()
    failures = writer.apply(ops)
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} failures, first: {failures[0]}")
    return {"entries": len(ops), "seconds": round(seconds, 4), "rate": round(len(ops) / seconds)}


async def pyroute2_add(vx: int, count: int) -> dict[str, float | int]:
    from pyroute2 import AsyncIPRoute

    async with AsyncIPRoute() as ipr:
        started = time.perf_counter()
        for i in range(count):
            await ipr.neigh(
                "replace",
                family=socket.AF_BRIDGE,
                ifindex=vx,
                lladdr=mac(10_000_000 + i),
                dst=VTEPS[i % len(VTEPS)],
                flags=0x16,  # NTF_MASTER | NTF_SELF | NTF_EXT_LEARNED
                state=0x02,  # NUD_REACHABLE
            )
        seconds = time.perf_counter() - started
    return {"entries": count, "seconds": round(seconds, 4), "rate": round(count / seconds)}


async def add_with_monitor(vx: int, count: int, chunk_bytes: int) -> dict[str, float | int]:
    """AddFdb while a Monitor (kernel echo filter on) is bound, as in the agent."""
    ops: list[Op] = [AddFdb(vx, mac(20_000_000 + i), VTEPS[0]) for i in range(count)]
    monitor = Monitor(Managed(vxlans=frozenset({vx})))
    await monitor.start()
    try:
        with NetlinkWriter(chunk_bytes=chunk_bytes) as writer:
            result = timed(writer, ops)
        try:  # whatever reached userspace: the echoes must not have overflowed the socket
            batch = await asyncio.wait_for(anext(monitor.events()), 0.2)
        except TimeoutError:
            batch = []
        result["overflowed"] = int(any(isinstance(e, MonitorOverflowed) for e in batch))
        result["kernel_filter"] = int(monitor.stats.kernel_filter)
    finally:
        monitor.close()
    return result


async def timed_dump() -> dict[str, float | int]:
    """snapshot.dump() of the whole table and one walk of its FDB entries, and the longest
    event-loop stall it caused."""
    stall = 0.0

    async def ticker() -> None:
        nonlocal stall
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    snapshot = await dump()
    entries = sum(1 for _ in snapshot.fdb)  # a dump's entries are decoded as walked
    seconds = time.perf_counter() - started
    tick.cancel()
    return {
        "fdb_entries": entries,
        "seconds": round(seconds, 4),
        "max_loop_stall_ms": round(stall * 1000, 1),
    }


def inside(args: argparse.Namespace) -> None:
    vx = socket.if_nametoindex("vx100")
    br = socket.if_nametoindex("br0")
    n = args.entries
    result: dict[str, object] = {"chunk_bytes": args.chunk_bytes}
    with NetlinkWriter(chunk_bytes=args.chunk_bytes) as writer:
        writer.apply([AddFlood(vx, v) for v in VTEPS])
        add = [AddFdb(vx, mac(i), VTEPS[i % len(VTEPS)]) for i in range(n)]
        result["add_fdb"] = timed(writer, add)
        result["replace_fdb"] = timed(writer, add)  # same entries again: idempotent replace
        result["dump"] = asyncio.run(timed_dump())
        result["del_fdb"] = timed(writer, [DelFdb(vx, mac(i)) for i in range(n)])
        neigh_n = min(n, 60_000)  # 203.0.113.0/24 is too small: use 2001:db8:: for volume
        neigh: list[Op] = [AddNeigh(br, f"2001:db8::{i:x}", mac(i)) for i in range(neigh_n)]
        result["add_neigh"] = timed(writer, neigh)
        result["del_neigh"] = timed(
            writer, [DelNeigh(br, f"2001:db8::{i:x}") for i in range(neigh_n)]
        )
    result["add_fdb_monitor_bound"] = asyncio.run(add_with_monitor(vx, n, args.chunk_bytes))
    if args.pyroute2:
        result["pyroute2_add_fdb"] = asyncio.run(pyroute2_add(vx, args.pyroute2))
    print(json.dumps(result))


def run(cmd: str) -> None:
    subprocess.run(cmd.split(), check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--chunk-bytes", type=int, default=8192)
    parser.add_argument("--pyroute2", type=int, default=0, help="also time N pyroute2 requests")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args)
        return
    ns = f"evb-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    run(f"ip netns add {ns}")
    try:
        for cmd in (
            "ip link add br0 type bridge",
            "ip link add vx100 type vxlan id 100 local 192.0.2.1 dstport 4789 nolearning",
            "ip link set vx100 master br0",
            "ip link set br0 up",
            "ip link set vx100 up",
            "bridge link set dev vx100 learning off",
        ):
            run(f"ip netns exec {ns} {cmd}")
        subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, __file__, "--inside", *sys.argv[1:]],
            check=True,
        )
    finally:
        run(f"ip netns del {ns}")


if __name__ == "__main__":
    main()
