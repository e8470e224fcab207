"""Latency benchmark: a MAC learned on one VTEP, until it is in another VTEP's kernel.

Run as root from the repository root:

    .venv/bin/python bench/bench_latency.py                     # 30 trials per origin
    .venv/bin/python bench/bench_latency.py --trials 100 --no-frr-baseline

Fabric (own uniquely named namespaces, removed even on failure): an FRR route reflector,
two evpn-agent VTEPs (a1, a2) and, unless --no-frr-baseline, two FRR VTEPs (f1, f2), all
with VNI 100; a host behind a1 and one behind f1.

A trial: the host behind the origin VTEP (a1 or f1) sends one broadcast frame from a fresh
source MAC (raw socket). Watcher children listening to rtnetlink in every VTEP namespace
timestamp (time.time(), comparable across namespaces):
  t_send  the frame leaves the host;
  t0      the origin's bridge learns the MAC on the host's port (RTM_NEWNEIGH);
  t1      the MAC is on the destination's VXLAN device (RTM_NEWNEIGH, NTF_SELF).
Origin a1 feeds the paths agent->agent (a2) and agent->frr (f2); origin f1 feeds
frr->frr (f2) and frr->agent (a2). Origins alternate; the next trial starts once every
destination has the MAC (or after --timeout), plus a random 0..--jitter-ms pause so trials
do not lock onto FRR's batching timers.

Afterwards the agents' own latency summaries (`evpn-agent show counters`): a1's
local-mac-to-bgp, a2's route-to-kernel (and the other two for completeness).

Prints one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.child import Child
from bench.cpu_sampler import CpuSampler
from bench.harness import bench_fabric
from bench.options import trial_arguments
from bench.quiet import wait_machine_quiet
from bench.results import code_version, summary_ms
from lab.fabric import (
    AgentProcess,
    Box,
    Host,
    missing_requirements,
    wait_until,
)

log = logging.getLogger("bench.latency")

VNI = 100
MAC_PREFIX = "02:b3"
TARGET_MEDIAN_MS = 60.0  # agent -> agent, MAC learned to remote kernel
TARGET_AGENT_MS = 5.0  # each of the agent's own latencies (p50)


@dataclass
class Origin:
    name: str  # "agent" or "frr"
    box: Box
    host: Host
    sender: Child
    code: int  # goes into the trial MACs


def trial_mac(origin: Origin, index: int) -> str:
    return f"{MAC_PREFIX}:{origin.code:02x}:" + ":".join(
        f"{b:02x}" for b in index.to_bytes(3, "big")
    )


def flood_vteps(box: Box) -> set[str]:
    out = box.netns.bridge("-j", "fdb", "show", "dev", box.vnis[VNI].vxlan)
    return {
        entry["dst"]
        for entry in json.loads(out or "[]")
        if entry.get("mac") == "00:00:00:00:00:00" and "dst" in entry
    }


def wait_converged(vteps: list[Box], timeout: float) -> None:
    """Every VTEP floods to every other one: type 3 routes went everywhere."""
    for box in vteps:
        others = {b.address for b in vteps if b is not box}
        wait_until(
            lambda box=box, others=others: others <= flood_vteps(box),
            timeout,
            f"{box.name}'s flood list to hold {sorted(others)}",
            interval=0.1,
        )


def learned(line: dict[str, Any], mac: str, port: str) -> bool:
    return line.get("event") == "new" and line.get("mac") == mac and line.get("dev") == port


def installed(line: dict[str, Any], mac: str, device: str) -> bool:
    return (
        line.get("event") == "new"
        and line.get("mac") == mac
        and line.get("dev") == device
        and bool(line.get("self"))
    )


def run_trials(
    args: argparse.Namespace,
    origins: list[Origin],
    destinations: dict[str, tuple[Box, Child]],
    watchers: dict[str, Child],
    sniffer: Child,
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    """Per path: lists of seconds per measure; and per path, trials that timed out."""
    samples: dict[str, dict[str, list[float]]] = {}
    missed: dict[str, int] = {}
    rng = random.Random(args.seed)
    for index in range(args.warmup + args.trials):
        for origin in origins:
            mac = trial_mac(origin, index)
            marks = {name: len(child.snapshot()) for name, child in watchers.items()}
            sniff_mark = len(sniffer.snapshot())
            send_mark = len(origin.sender.snapshot())
            origin.sender.write(mac)
            sent = origin.sender.wait_for(
                lambda x, mac=mac: x.get("event") == "sent" and x.get("mac") == mac,
                args.timeout,
                send_mark,
            )
            port = f"h-{origin.host.name}"
            t0_line = watchers[origin.box.name].wait_for(
                lambda x, mac=mac, port=port: learned(x, mac, port),
                args.timeout,
                marks[origin.box.name],
            )
            results: dict[str, tuple[Box, float | None]] = {}
            for dest_kind, (dest, watcher) in destinations.items():
                if dest is origin.box:
                    continue
                line = watcher.wait_for(
                    lambda x, mac=mac, dev=dest.vnis[VNI].vxlan: installed(x, mac, dev),
                    args.timeout,
                    marks[dest.name],
                )
                results[dest_kind] = (dest, None if line is None else line["t"])
            if index < args.warmup:
                continue
            # the route crossing the RR: in from the origin, out to each destination
            rr_in = sniffer.wait_for(
                lambda x, mac=mac, src=origin.box.address: (
                    mac in x.get("macs", ()) and x.get("src") == src
                ),
                0.2,
                sniff_mark,
            )
            for dest_kind, (dest, t1) in results.items():
                path = f"{origin.name}->{dest_kind}"
                bucket = samples.setdefault(path, {})
                if t1 is None or t0_line is None or sent is None:
                    missed[path] = missed.get(path, 0) + 1
                    log.warning("trial %d %s: MAC %s missing (timeout)", index, path, mac)
                    continue
                t0 = t0_line["t"]
                bucket.setdefault("learn_to_remote", []).append(t1 - t0)
                bucket.setdefault("send_to_remote", []).append(t1 - sent["t"])
                bucket.setdefault("send_to_learn", []).append(t0 - sent["t"])
                rr_out = sniffer.wait_for(
                    lambda x, mac=mac, dst=dest.address: (
                        mac in x.get("macs", ()) and x.get("dst") == dst
                    ),
                    0.2,
                    sniff_mark,
                )
                if rr_in is not None and rr_out is not None:
                    bucket.setdefault("learned_to_rr_in", []).append(rr_in["t"] - t0)
                    bucket.setdefault("rr_in_to_rr_out", []).append(rr_out["t"] - rr_in["t"])
                    bucket.setdefault("rr_out_to_remote_kernel", []).append(t1 - rr_out["t"])
            if args.jitter_ms > 0:
                time.sleep(rng.uniform(0, args.jitter_ms) / 1000)  # decorrelation, not waiting
        if (index + 1) % 10 == 0:
            log.info("%d/%d trials", index + 1, args.warmup + args.trials)
    return samples, missed


def tracked_pids(
    rr: Box, vteps: list[Box], agents: dict[str, AgentProcess], children: list[Child]
) -> dict[str, int]:
    """Every process of this fabric and this benchmark: the rest is other jobs."""
    pids = {"bench": os.getpid()}
    for box in (rr, *vteps):
        if box.frr is not None:
            for daemon in ("bgpd", "zebra"):
                if (pid := box.frr.pid(daemon)) is not None:
                    pids[f"{box.name}_{daemon}"] = pid
    for name, agent in agents.items():
        pids[f"{name}_exabgp"] = agent.pid
        if (core := agent.core_pid()) is not None:
            pids[f"{name}_core"] = core
    for index, child in enumerate(children):
        pids[f"child{index}"] = child.process.pid
    return pids


def agent_latency(agent: AgentProcess) -> dict[str, Any]:
    data = json.loads(agent.cli("show", "counters", "--json"))
    latency: dict[str, Any] = data["latency"]
    return latency


def main() -> int:
    args = trial_arguments(__doc__.split("\n\n")[0], "trials per origin (30)")
    missing = missing_requirements()
    if missing:
        log.error("cannot build a fabric here: %s", ", ".join(missing))
        return 1
    output: dict[str, Any] = {
        "benchmark": "latency",
        "trials": args.trials,
        "code": code_version(),
    }
    children: list[Child] = []
    with bench_fabric("blat", children) as fab:
        rr = fab.add_route_reflector("rr", 1)
        a1 = fab.add_agent_vtep("a1", 21)
        a2 = fab.add_agent_vtep("a2", 22)
        vteps = [a1, a2]
        if not args.no_frr_baseline:
            f1 = fab.add_frr_vtep("f1", 11, rrs=[rr])
            f2 = fab.add_frr_vtep("f2", 12, rrs=[rr])
            vteps += [f1, f2]
        for box in vteps:
            box.add_vni(VNI)
        agents = {box.name: fab.start_agent(box, rrs=[rr]) for box in (a1, a2)}
        hosts = {"a1": fab.add_host("ha", a1, VNI, "198.51.100.1/24")}
        if not args.no_frr_baseline:
            hosts["f1"] = fab.add_host("hf", f1, VNI, "198.51.100.2/24")
        for box in vteps:
            fab.wait_established(rr, box.address, timeout=60)
        wait_converged(vteps, 60)
        watchers = {}
        for box in vteps:
            watchers[box.name] = Child(box.netns.name, "watch-neigh", "--mac-prefix", MAC_PREFIX)
            children.append(watchers[box.name])
        sniffer = Child(rr.netns.name, "sniff-bgp", "--device", "eth0", "--mac-prefix", MAC_PREFIX)
        children.append(sniffer)
        origins = []
        for code, (kind, box_name) in enumerate((("agent", "a1"), ("frr", "f1")), start=1):
            if box_name not in hosts:
                continue
            host = hosts[box_name]
            sender = Child(host.netns.name, "send-frames", "--device", "eth0", stdin=True)
            children.append(sender)
            origins.append(Origin(kind, host.box, host, sender, code))
        for child in children:
            child.wait_ready()
        destinations = {"agent": (a2, watchers["a2"])}
        if not args.no_frr_baseline:
            destinations["frr"] = (f2, watchers["f2"])
        output["machine_busy_cores_before"] = wait_machine_quiet(timeout=args.quiet_timeout)
        before = {name: agent_latency(agent) for name, agent in agents.items()}
        sampler = CpuSampler(tracked_pids(rr, vteps, agents, children))
        started = time.time()
        try:
            samples, missed = run_trials(args, origins, destinations, watchers, sniffer)
        finally:
            sampler.stop()
        window = sampler.between(started, time.time())
        output["trials_wall_s"] = window.get("window_s")
        output["cpu_during_trials"] = {
            "others_core_share": window.get("others_core_share"),
            "machine_busy_cores": window.get("machine_busy_cores"),
            "busiest_other_processes_cpu_s": sampler.top_others(),
        }
        paths: dict[str, Any] = {}
        for path in sorted(samples.keys() | missed.keys()):
            bucket = samples.get(path, {})
            paths[path] = {
                "mac_learned_to_remote_kernel": summary_ms(bucket.get("learn_to_remote", [])),
                "frame_sent_to_remote_kernel": summary_ms(bucket.get("send_to_remote", [])),
                "frame_sent_to_learned": summary_ms(bucket.get("send_to_learn", [])),
                "split": {
                    "learned_to_update_at_rr": summary_ms(bucket.get("learned_to_rr_in", [])),
                    "rr_in_to_rr_out": summary_ms(bucket.get("rr_in_to_rr_out", [])),
                    "rr_out_to_remote_kernel": summary_ms(
                        bucket.get("rr_out_to_remote_kernel", [])
                    ),
                },
                "missed": missed.get(path, 0),
            }
        output["paths"] = paths
        output["agent_latency"] = {
            name: {
                "local-mac-to-bgp": lat["local-mac-to-bgp"],
                "route-to-kernel": lat["route-to-kernel"],
            }
            for name, lat in ((n, agent_latency(a)) for n, a in agents.items())
        }
        # samples from the start-up (initial table) sit in the same window: say how many
        output["agent_latency_samples_before_trials"] = {
            name: {kind: summary.get("count", 0) for kind, summary in lat.items()}
            for name, lat in before.items()
        }
        output["targets"] = targets(output)
    print(json.dumps(output, indent=2))
    return 0


def targets(output: dict[str, Any]) -> dict[str, Any]:
    aa = output["paths"].get("agent->agent", {}).get("mac_learned_to_remote_kernel", {})
    median = aa.get("median_ms")
    lat = output["agent_latency"]
    a1_bgp = lat["a1"]["local-mac-to-bgp"].get("p50_ms")
    a2_kernel = lat["a2"]["route-to-kernel"].get("p50_ms")
    return {
        f"agent_to_agent_median_within_{TARGET_MEDIAN_MS:g}ms": (
            median is not None and median <= TARGET_MEDIAN_MS
        ),
        f"a1_local_mac_to_bgp_p50_within_{TARGET_AGENT_MS:g}ms": (
            a1_bgp is not None and a1_bgp <= TARGET_AGENT_MS
        ),
        f"a2_route_to_kernel_p50_within_{TARGET_AGENT_MS:g}ms": (
            a2_kernel is not None and a2_kernel <= TARGET_AGENT_MS
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
