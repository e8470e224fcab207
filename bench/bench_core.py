"""Core benchmark: the agent core's receive path alone, CPU only (no namespaces, no BGP).

Run from the repository root (no root needed):

    .venv/bin/python bench/bench_core.py                       # 1,000 and 100 VNIs, 31 VTEPs
    .venv/bin/python bench/bench_core.py --vnis 1000 --vteps 31 --profile /tmp/core.prof

An ``Engine`` gets a kernel snapshot of --vnis VNIs (a bridge and a VXLAN device each), its
reflector's session comes up, and then --vteps other VTEPs' routes arrive as the speaker
would hand them over: for each VTEP, one type 3 and one type 2 (one MAC) per VNI, one route
per line (one route target per VNI: nearly every route has an UPDATE of its own), 32 lines
per round, each round's work planned and acknowledged as the daemon does (``take_work``,
``kernel_applied``). Then each VNI's SVI (the bridge) gets two bindings per local MAC and
its host port learns the MACs (--local-macs per VNI, as many in all at every VNI count),
every ``show`` command is answered once at that size, every key is compared as after a
reconcile's dump, one VNI is added and removed, and the routes are withdrawn.

Every VNI count runs with the same number of routes (--vnis x --vteps for the largest,
the VTEP count scaled for the others), so routes/s is comparable across VNI counts: equal
when no per-route step depends on the VNI count. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.options import setup_logging
from bench.results import code_version
from evpn_agent.config import parse
from evpn_agent.control import answers
from evpn_agent.core import observe as core_observe
from evpn_agent.core.engine import Engine
from evpn_agent.heap import tune_collector
from evpn_agent.latency import Latency
from evpn_agent.model import (
    NUD_REACHABLE,
    BgpEvent,
    BridgeDevice,
    FdbEntry,
    FdbUpdated,
    ImetKey,
    ImetRoute,
    KernelEvent,
    KernelSnapshot,
    LinkRemoved,
    LinkUpdated,
    MacKey,
    MacRoute,
    NeighEntry,
    NeighUpdated,
    OtherLink,
    RouteAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    SessionUp,
    VxlanDevice,
)

log = logging.getLogger("bench.core")

ME = "192.0.2.21"
RR = "192.0.2.1"
FIRST_VNI = 1000
LINES_PER_ROUND = 32  # the daemon's MAX_ITEMS_PER_ROUND
SHOWS: tuple[dict[str, Any], ...] = (
    {"command": "show vni"},
    {"command": "show mac"},
    {"command": "show neigh"},
    {"command": "show peers"},
    {"command": "show routes"},
    {"command": "show vxlans"},
    {"command": "show counters"},
    {"command": "show vni", "vni": FIRST_VNI},
    {"command": "show mac", "vni": FIRST_VNI},
    {"command": "show routes", "vni": FIRST_VNI},
)


def vtep_address(index: int) -> str:
    # 198.51.100.0/24 then 203.0.113.0/24: up to 508 VTEPs on TEST-NET
    net, host = divmod(index, 254)
    return f"{('198.51.100', '203.0.113')[net]}.{host + 1}"


def bridge_of(i: int) -> int:
    return 10 + 3 * i  # its VXLAN device and a host port follow


def local_mac(i: int, n: int) -> str:
    return f"02:c0:{n:02x}:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def local_events(vnis: int, macs: int) -> tuple[list[KernelEvent], list[KernelEvent]]:
    """Bindings (two IPs per MAC on the bridge, the VNI's SVI) and, apart, the MACs
    learned on each VNI's host port."""
    bindings: list[KernelEvent] = []
    learned: list[KernelEvent] = []
    for i in range(vnis):
        bridge = bridge_of(i)
        for n in range(macs):
            mac = local_mac(i, n)
            for host in (1, 2):
                ip = f"10.{n}.{i >> 8 & 0xFF}.{(i & 0xFF) ^ host}"
                bindings.append(NeighUpdated(NeighEntry(bridge, ip, mac, 0, NUD_REACHABLE, None)))
            learned.append(FdbUpdated(FdbEntry(bridge + 2, mac, None, None, bridge, 0,
                                               NUD_REACHABLE)))  # fmt: skip
    return bindings, learned


def engine(vnis: int) -> Engine:
    cfg = parse(f"local-as: 65000\nroute-reflectors: [{RR}]\nsweep-delay: 0\n")
    links: list[Any] = []
    for i in range(vnis):
        vni = FIRST_VNI + i
        bridge, vxlan, port = bridge_of(i), 11 + 3 * i, 12 + 3 * i
        mac = f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
        links.append(BridgeDevice(bridge, f"br{vni}", mac, False, True))
        links.append(VxlanDevice(vxlan, f"vx{vni}", vni, ME, bridge, False, True, None))
        links.append(OtherLink(port, f"h{vni}", bridge, "veth", up=True))
    state = Engine(cfg, router_id=ME, vtep_ip=ME, now=0.0)
    state.load_snapshot(KernelSnapshot(tuple(links), (), ()))
    state.rd_index = {}
    flush(state)
    return state


def routes(vnis: int, vteps: int) -> Iterator[ImetRoute | MacRoute]:
    """Per VTEP, then per VNI: its type 3 and one MAC (as a reflector sends a table)."""
    for v in range(vteps):
        vtep = vtep_address(v)
        for i in range(vnis):
            vni = FIRST_VNI + i
            rts = (RouteTarget(65000, vni),)
            rd = f"{vtep}:{i + 1}"
            yield ImetRoute(ImetKey(rd, 0, vtep), vni, vtep, rts)
            mac = f"02:b0:{v:02x}:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
            yield MacRoute(MacKey(rd, 0, mac, None), vni, vtep, rts)


def flush(state: Engine) -> int:
    """As the daemon's _flush: plan, 'apply' (every op acked), until nothing is pending."""
    ops = 0
    for _ in range(3):
        state.managed()
        work = state.take_work()
        state.kernel_applied(work.ops, [])
        ops += len(work.ops)
        if not state.pending():
            break
    return ops


def feed(state: Engine, lines: list[list[BgpEvent]], now: float) -> int:
    ops = 0
    for start in range(0, len(lines), LINES_PER_ROUND):
        for line in lines[start : start + LINES_PER_ROUND]:
            state.on_bgp(line, now)
        state.tick(now)
        state.next_deadline()
        ops += flush(state)
    return ops


def observe(state: Engine, events: list[KernelEvent], now: float) -> int:
    ops = 0
    for start in range(0, len(events), LINES_PER_ROUND):
        state.on_kernel(events[start : start + LINES_PER_ROUND], now)
        ops += flush(state)
    return ops


def observe_all(state: Engine) -> None:
    """Mark every key for planning, as loading a dump or starting the sweep does."""
    core_observe.mark_everything(state)


def timed(what: Callable[[], Any]) -> tuple[Any, float]:
    """The result and the CPU seconds of this process it took (steadier than wall time on
    a shared machine; the core is single-threaded)."""
    started = time.process_time()
    result = what()
    return result, time.process_time() - started


def show_times(state: Engine, now: float) -> dict[str, Any]:
    latency = {"route-to-kernel": Latency(), "local-mac-to-bgp": Latency()}
    times = {}
    for request in SHOWS:
        answer, took = timed(lambda r=request: answers.read(state, r, now, latency))
        size = len(json.dumps(answer))
        label = request["command"] + (f" vni {request['vni']}" if "vni" in request else "")
        times[label] = {"cpu_s": round(took, 4), "json_bytes": size}
    return times


def run(vnis: int, vteps: int, local_macs: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    state = engine(vnis)
    state.on_bgp([SessionUp(RR)], 1.0)
    flush(state)
    all_routes = list(routes(vnis, vteps))
    announce: list[list[BgpEvent]] = [[RouteAnnounced(RR, r)] for r in all_routes]
    withdraw: list[list[BgpEvent]] = [[RoutesWithdrawn(RR, (r.key,))] for r in all_routes]
    gc.collect()
    if profile is not None:
        profile.enable()
    ops_in, receive_s = timed(lambda: feed(state, announce, 2.0))
    if profile is not None:
        profile.disable()
    bindings, learned = local_events(vnis, local_macs)
    observe(state, bindings, 2.0)
    _, learn_s = timed(lambda: observe(state, learned, 2.0))
    shows = show_times(state, 2.0)
    # what a reconcile's dump and the sweep make the core do: compare every key
    _, compare_s = timed(lambda: (observe_all(state), flush(state)))
    # one VNI more, then gone again, with the whole table in the RIB
    extra = FIRST_VNI + vnis
    bridge, vxlan = bridge_of(vnis), bridge_of(vnis) + 1
    added: list[KernelEvent] = [
        LinkUpdated(BridgeDevice(bridge, f"br{extra}", "02:00:5e:ff:ff:ff", False, True)),
        LinkUpdated(VxlanDevice(vxlan, f"vx{extra}", extra, ME, bridge, False, True, None)),
    ]
    _, vni_add_s = timed(lambda: observe(state, added, 2.0))
    _, vni_del_s = timed(lambda: observe(state, [LinkRemoved(vxlan, f"vx{extra}")], 2.0))
    ops_out, withdraw_s = timed(lambda: feed(state, withdraw, 3.0))
    return {
        "vnis": vnis,
        "vteps": vteps,
        "routes": len(all_routes),
        "receive_cpu_s": round(receive_s, 3),
        "receive_routes_per_s": round(len(all_routes) / receive_s),
        "kernel_ops_in": ops_in,
        "withdraw_cpu_s": round(withdraw_s, 3),
        "withdraw_routes_per_s": round(len(all_routes) / withdraw_s),
        "kernel_ops_out": ops_out,
        "local_macs_learned": len(learned),
        "local_learn_cpu_s": round(learn_s, 3),
        "local_macs_per_s": round(len(learned) / learn_s),
        "show": shows,
        "compare_everything_cpu_s": round(compare_s, 3),
        "vni_added_cpu_s": round(vni_add_s, 4),
        "vni_removed_cpu_s": round(vni_del_s, 4),
        "slowest_show_cpu_s": max(v["cpu_s"] for v in shows.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vnis", type=int, nargs="+", default=[1000, 100])
    parser.add_argument("--vteps", type=int, default=31, help="for the largest VNI count (31)")
    parser.add_argument(
        "--local-macs", type=int, default=1, help="local MACs per VNI at the largest count (1)"
    )
    parser.add_argument("--profile", help="cProfile of each run's receive into FILE.VNIS")
    parser.add_argument("--top", type=int, default=25, help="functions listed from the profile")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    logging.getLogger("evpn_agent").setLevel(logging.WARNING)
    tune_collector()  # as the daemon runs the core
    largest = max(args.vnis)
    output: dict[str, Any] = {"benchmark": "core", "code": code_version(), "runs": []}
    for vnis in args.vnis:
        vteps = max(1, round(args.vteps * largest / vnis))
        profile = cProfile.Profile() if args.profile else None
        log.info("%d VNIs x %d VTEPs", vnis, vteps)
        local_macs = max(1, round(args.local_macs * largest / vnis))
        output["runs"].append(run(vnis, vteps, local_macs, profile))
        if profile is not None:
            profile.dump_stats(f"{args.profile}.{vnis}")
            stats = pstats.Stats(profile).sort_stats("tottime")
            top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
            output["runs"][-1]["profile_top_tottime"] = [
                {
                    "function": f"{Path(file).name}:{line}:{name}",
                    "calls": calls,
                    "tottime_s": round(tottime, 3),
                    "cumtime_s": round(cumtime, 3),
                }
                for (file, line, name), (_, calls, tottime, cumtime, _) in top[: args.top]
            ]
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
