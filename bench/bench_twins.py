"""Two reflectors' tables through the launcher's records and the core: CPU only, no root.

    .venv/bin/python bench/bench_twins.py                 # 64 VTEPs x 1,000 VNIs, 3 trials
    .venv/bin/python bench/bench_twins.py --vteps 16 --trials 5

What a VTEP booting into a fabric that is up receives, without the network, the kernel or
the other processes that make the scale bench's figures noisy: --vteps other VTEPs' type 3
and type 2 (one MAC) per VNI, one route per UPDATE (one route target per VNI), as an FRR
route reflector sends them (ORIGINATOR_ID, CLUSTER_LIST), from two reflectors whose copies
differ only in their cluster id. Each reflector's UPDATEs go in lines of --line, the
second reflector --lag lines behind the first; each line is what the launcher hands the
core while it is behind (``wire-events``: decoded in ExaBGP's process, as records). Timed
apart, per trial: the launcher's side (decode and records, ``compat._events_line``) and
the core's (the channel's reading of the lines, ``Engine.on_bgp``, the kernel plan of every
4 lines, acknowledged as applied). A change to either side shows here as a CPU figure that
holds from run to run (within ~5%), where the scale bench's cold start alone moves by 10%.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import io
import ipaddress
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import FIRST_VNI, ME, engine, flush
from bench.options import setup_logging
from bench.results import code_version
from evpn_agent.heap import tune_collector
from evpn_agent.model import (
    AdvertChange,
    ImetAdvert,
    MacAdvert,
    RouteDistinguisher,
    RouteTarget,
    SessionUp,
)
from evpn_agent.speaker.channel import ExabgpChannel
from evpn_agent.speaker.compat import _events_line
from evpn_agent.speaker.wire_check import wire_ok
from evpn_agent.speaker.wire_encode import encode_changes
from evpn_agent.speaker.wire_format import HEADER_SIZE

log = logging.getLogger("bench.twins")

REFLECTORS = ("192.0.2.1", "192.0.2.2")
LINES_PER_PLAN = 4


def table(vteps: int, vnis: int) -> list[tuple[str, bytes]]:
    """(originating VTEP, UPDATE body) per route, as that VTEP's agent would send it."""
    out = []
    for v in range(vteps):
        vtep = str(ipaddress.IPv4Address("198.51.100.1") + v)
        for i in range(vnis):
            vni = FIRST_VNI + i
            rd = RouteDistinguisher(ipaddress.IPv4Address(vtep), i + 1)
            rts = (RouteTarget(65000, vni),)
            mac = f"02:b0:{v:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            for advert in (
                ImetAdvert(rd, vni, vtep, rts),
                MacAdvert(rd, vni, mac, None, vtep, rts),
            ):
                [message] = encode_changes([AdvertChange(advert)]).messages
                out.append((vtep, message[HEADER_SIZE:]))
    return out


def reflected(originator: str, body: bytes, cluster_id: int) -> bytes:
    """``body`` as a reflector with ``cluster_id`` passes it on (RFC 4456 attributes)."""
    length = int.from_bytes(body[2:4])
    attributes = body[4 : 4 + length]
    attributes += bytes([0x80, 9, 4]) + ipaddress.IPv4Address(originator).packed
    attributes += bytes([0x80, 10, 4, 10, 0, 0, cluster_id])
    return b"\x00\x00" + len(attributes).to_bytes(2) + attributes


def lines_in_order(
    routes: list[tuple[str, bytes]], line: int, lag: int
) -> list[tuple[int, list[bytes]]]:
    """(reflector index, the UPDATE bodies of one line), the second reflector ``lag`` behind."""
    per = []
    for k in range(len(REFLECTORS)):
        bodies = [reflected(vtep, body, k + 1) for vtep, body in routes]
        per.append([bodies[i : i + line] for i in range(0, len(bodies), line)])
    order: list[tuple[int, list[bytes]]] = []
    for i in range(len(per[0]) + lag):
        if i < len(per[0]):
            order.append((0, per[0][i]))
        if i >= lag:
            order.append((1, per[1][i - lag]))
    return order


def trial(order: list[tuple[int, list[bytes]]], vnis: int) -> dict[str, Any]:
    neighbors = [
        {"peer-address": ipaddress.IPv4Address(rr), "router-id": ipaddress.IPv4Address(ME)}
        for rr in REFLECTORS
    ]
    gc.collect()
    start = time.process_time()
    texts = [
        (_events_line(neighbors[k], bodies, 1.0) + "\n").encode()
        for k, bodies in order
        if all(wire_ok(body) for body in bodies)  # the launcher's gate, before its decode
    ]
    launcher_s = time.process_time() - start

    state = engine(vnis)
    state.on_bgp([SessionUp(rr) for rr in REFLECTORS], 1.0)
    channel = ExabgpChannel(io.BytesIO(), io.BytesIO())
    events = 0
    gc.collect()
    start = time.process_time()
    for n, text in enumerate(texts, 1):
        decoded, _stamp = channel.decode(text, ME)
        events += len(decoded)
        state.on_bgp(decoded, 2.0)
        if n % LINES_PER_PLAN == 0:
            flush(state)
    flush(state)
    core_s = time.process_time() - start
    paths = len(state.rib.paths)
    return {
        "launcher_cpu_s": round(launcher_s, 3),
        "core_cpu_s": round(core_s, 3),
        "events": events,
        "paths": paths,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vteps", type=int, default=64, help="other VTEPs (64)")
    parser.add_argument("--vnis", type=int, default=1000, help="VNIs (1000)")
    parser.add_argument("--line", type=int, default=200, help="UPDATEs per line (200)")
    parser.add_argument("--lag", type=int, default=1, help="second reflector's lag, lines (1)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    logging.getLogger("evpn_agent").setLevel(logging.WARNING)
    tune_collector()  # as both processes run
    start = time.monotonic()
    order = lines_in_order(table(args.vteps, args.vnis), args.line, args.lag)
    log.info("%d lines built in %.1fs", len(order), time.monotonic() - start)
    trials = [trial(order, args.vnis) for _ in range(args.trials)]
    expected = 2 * 2 * args.vteps * args.vnis
    if any(t["paths"] != expected for t in trials):
        log.error("the core holds %s paths, not %d", [t["paths"] for t in trials], expected)
        return 1
    output = {
        "benchmark": "twins",
        "code": code_version(),
        "size": {
            "vteps": args.vteps,
            "vnis": args.vnis,
            "route_copies": expected,
            "line": args.line,
            "lag": args.lag,
        },
        "trials": trials,
        "median": {
            key: statistics.median(t[key] for t in trials)
            for key in ("launcher_cpu_s", "core_cpu_s")
        },
    }
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
