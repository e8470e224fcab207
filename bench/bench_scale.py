"""Scale lab: N agent VTEPs, an FRR VTEP and E emulated VTEPs with V VNIs each, behind two
FRR route reflectors; agent and FRR figures side by side in one run.

Run as root from the repository root:

    .venv/bin/python bench/bench_scale.py --quick --out /tmp/scale    # a few minutes
    .venv/bin/python bench/bench_scale.py --out /tmp/scale  # 8 agents, 64 emulated, 1,000 VNIs

Fabric (own uniquely named namespaces, removed even on failure):
  - route reflectors rr1, rr2 (192.0.2.1, .2), FRR;
  - a generator (192.0.2.3, our speaker + tests/speaker_peer.py) announcing, for each of
    E emulated VTEPs (192.0.2.100..), a type 3 and --macs type 2 per VNI; the RRs send it
    nothing back (see scale_fabric.rr_config);
  - agent VTEPs a1..aN (192.0.2.21..) and the FRR VTEP f1 (192.0.2.60), V bridges + VXLAN
    devices each (``ip -batch``), a count-vtep probe in each namespace (bench/probes).

Phases (each figure per VTEP, agents and FRR alike):
  cold start    all VTEP daemons start together -> own type 3s at the RR (pfxRcd) and every
                flood entry and remote MAC in the kernel
  idle          --idle-seconds of nothing: CPU seconds and wake-ups per process group
  restart       a1's ``evpn-agent run`` stopped and started; the same for f1's FRR
  cold alone    a1 stopped, its kernel's FDB flushed, started: one VTEP's cold start with
                the fabric up and quiet (then the same for f1); --alone-trials times in
                turn, figures the medians
  vni add/del   one VNI more on a1 (and one on f1), then removed
  rr loss       rr2 stopped for --rr-window s: nothing may leave any kernel; then back
  churn soak    --churn-rate MAC moves/s across the emulated VTEPs for --soak-seconds;
                RSS before/after, then every kernel checked against the routes

Prints one JSON object on stdout (also --out DIR/result.json, with PNG plots of entries,
RSS and CPU over time when matplotlib is installed). Logs go to stderr. Exit status 0 when
the run completed (figures judged in "checks"), 1 when it failed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.child import Child
from bench.frr_readings import evpn_summary
from bench.harness import bench_fabric
from bench.options import setup_logging
from bench.procstats import cpu_seconds, system_busy_seconds
from bench.profiling import py_spy, stop_py_spy
from bench.quiet import wait_idle, wait_machine_quiet
from bench.results import code_version
from bench.scale_fabric import (
    add_route_reflectors,
    add_vnis,
    compare,
    del_vnis,
    flush_fdb,
    kernel_state,
    restart_frr,
    with_timers,
)
from bench.scale_generator import Churn, EmulatedFabric
from bench.scale_plots import write_plots
from bench.scale_sampler import GroupSampler, group_stats, per_process
from evpn_agent import control
from evpn_agent.config import load as load_config
from evpn_agent.core.rib import COMPACT_MIN
from lab.fabric import (
    AgentProcess,
    Box,
    CommandError,
    Fabric,
    PeerScript,
    children,
    missing_requirements,
    render_vtep_config,
    wait_until,
)

log = logging.getLogger("bench.scale")

GENERATOR_OCTET = 3
FIRST_AGENT_OCTET = 21
FRR_OCTET = 60
# VNI add and removal take 0.1-1 s, read from the RR every 0.2 s: the median of three.
VNI_TRIALS = 3
# a cold start alone's figures, each the median of the trials with --alone-trials
ALONE_FIGURES = (
    "all_s",
    "kernel_complete_s",
    "type3_at_rr_s",
    "cpu_s",
    "peak_rss_mib",
    "rrs_cpu_s",
)


@dataclass
class Vtep:
    """One real VTEP of the lab and its watcher."""

    name: str
    kind: str  # "agent" or "frr"
    box: Box
    probe: Child
    vnis: list[int]
    agent: AgentProcess | None = None
    started: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)

    def pids(self) -> list[int]:
        if self.agent is not None:
            if not self.agent.running():
                return []
            return [self.agent.pid, *children(self.agent.pid)]
        assert self.box.frr is not None
        return [pid for d in ("bgpd", "zebra") if (pid := self.box.frr.pid(d)) is not None]

    def counts(self) -> dict[str, int]:
        """The probe's latest flood/MAC counts and cumulative adds/removes."""
        for line in reversed(self.probe.snapshot()):
            if line.get("event") == "state":
                return {k: line[k] for k in ("flood", "macs", "added", "removed")}
        return {"flood": 0, "macs": 0, "added": 0, "removed": 0}


class Lab:
    def __init__(self, fab: Fabric, args: argparse.Namespace) -> None:
        self.fab, self.args = fab, args
        self.vnis = list(range(args.vni_base, args.vni_base + args.vnis))
        self.extra_vni = {"agent": args.vni_base + args.vnis, "frr": args.vni_base + args.vnis + 1}
        self.model = EmulatedFabric(args.emulated, self.vnis, args.macs)
        self.generator_box = fab.add_box("gen", GENERATOR_OCTET)
        self.rrs = add_route_reflectors(fab, self.generator_box.address, args.hold_time)
        self.vteps: list[Vtep] = []
        self.t0 = 0.0
        self.phases: list[tuple[str, float]] = []
        self.compactions_at_rr2_up: dict[str, int] = {}
        self.agent_code: Path | None = None  # another checkout's agent (bench_alone.py)

    # -- the emulated VTEPs

    def start_generator(self) -> dict[str, Any]:
        self.generator: PeerScript = self.fab.start_peer_script(
            self.generator_box, peers=self.rrs, hold_time=30
        )
        for rr in self.rrs:
            self.fab.wait_established(rr, self.generator_box.address, timeout=60)
        lines = self.model.initial(self.extra_vni.values())
        started = time.monotonic()
        for at in range(0, len(lines), 20_000):
            self.generator.send(*lines[at : at + 20_000], timeout=120)
        for rr in self.rrs:
            wait_until(
                functools.partial(self.holds, rr, self.generator_box.address, len(lines)),
                self.args.deadline,
                f"{rr.name} to hold the generator's {len(lines)} routes",
                interval=0.5,
            )
        took = time.monotonic() - started
        idle = wait_idle([self.generator.speaker.pid, *children(self.generator.speaker.pid)])
        log.info("RRs hold the %d emulated routes after %.1fs", len(lines), took)
        return {
            "routes": len(lines),
            "rrs_hold_all_s": round(took, 2),
            "idle_wait_s": round(idle, 2),
        }

    def holds(self, rr: Box, peer: str, routes: int | None) -> bool:
        """rr has ``routes`` or more from ``peer``; None: its session with ``peer`` is down."""
        received = self.rr_received(rr, peer)
        return received < 0 if routes is None else received >= routes

    @staticmethod
    def rr_received(rr: Box, peer: str) -> int:
        try:
            entry = evpn_summary(rr).get(peer, {})
        except (CommandError, ValueError):
            return -1
        return int(entry.get("pfxRcd", 0)) if entry.get("state") == "Established" else -1

    # -- real VTEPs

    def add_vteps(self) -> dict[str, Any]:
        started = time.monotonic()
        boxes = [("agent", f"a{i + 1}", FIRST_AGENT_OCTET + i) for i in range(self.args.agents)]
        if not self.args.no_frr:
            boxes.append(("frr", "f1", FRR_OCTET))
        for kind, name, octet in boxes:
            box = self.fab.add_box(name, octet)
            add_vnis(box, self.vnis)
            probe = Child(box.netns.name, "count-vtep", "--every-s", "0.1")
            probe.wait_ready()
            self.vteps.append(Vtep(name, kind, box, probe, list(self.vnis)))
        took = time.monotonic() - started
        log.info("%d VTEP boxes with %d VNIs each in %.1fs", len(boxes), len(self.vnis), took)
        return {"boxes": len(boxes), "seconds": round(took, 1)}

    def start(self, vtep: Vtep) -> None:
        vtep.started = time.time()
        if vtep.kind == "agent":
            vtep.agent = self.fab.start_agent(
                vtep.box,
                rrs=self.rrs,
                hold_time=self.args.hold_time,
                wait=False,
                code=self.agent_code,
            )
        elif vtep.box.frr is None:
            config = with_timers(
                render_vtep_config(
                    router_id=vtep.box.address,
                    route_reflectors=[rr.address for rr in self.rrs],
                    log_file=vtep.box.directory / "frr" / "bgpd.log",
                    hostname=vtep.name,
                ),
                self.args.hold_time,
            )
            self.fab.start_frr(vtep.box, config)
        else:
            restart_frr(vtep.box)

    def stop(self, vtep: Vtep) -> None:
        if vtep.agent is not None:
            vtep.agent.stop()
        elif vtep.box.frr is not None:
            vtep.box.frr.stop()

    def targets(self, vtep: Vtep) -> tuple[int, int]:
        """(flood entries, remote MACs) the VTEP must hold: the fabric's VNIs are on every
        real VTEP, an added VNI only on it and the emulated VTEPs."""
        real = len(self.vteps) - 1
        shared = set(self.vnis)
        flood = sum(self.args.emulated + (real if vni in shared else 0) for vni in vtep.vnis)
        return flood, len(vtep.vnis) * self.args.emulated * self.args.macs

    def converged(self, vtep: Vtep) -> bool:
        flood, macs = self.targets(vtep)
        counts = vtep.counts()
        return counts["flood"] == flood and counts["macs"] == macs

    def wait_converged(
        self, vteps: list[Vtep], since: dict[str, float], advertised: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per VTEP: seconds from ``since`` until its kernel is complete and until rr1 holds
        ``advertised`` routes from it (its type 3s); None for what missed the deadline."""
        out: dict[str, dict[str, Any]] = {v.name: {} for v in vteps}
        deadline = time.monotonic() + self.args.deadline
        rr = self.rrs[0]
        next_rr = 0.0
        while time.monotonic() < deadline:
            now = time.time()
            for v in vteps:
                if "kernel_complete_s" not in out[v.name] and self.converged(v):
                    stamp = next(
                        (x["t"] for x in reversed(v.probe.snapshot()) if x.get("event") == "state"),
                        now,
                    )
                    # complete all along (nothing lost): 0
                    out[v.name]["kernel_complete_s"] = round(max(0.0, stamp - since[v.name]), 3)
            if advertised is not None and time.monotonic() >= next_rr:
                next_rr = time.monotonic() + 0.2
                try:
                    peers = evpn_summary(rr)
                except (CommandError, ValueError):
                    peers = {}
                for v in vteps:
                    entry = peers.get(v.box.address, {})
                    if (
                        "type3_at_rr_s" not in out[v.name]
                        and entry.get("state") == "Established"
                        and int(entry.get("pfxRcd", 0)) == advertised
                    ):
                        out[v.name]["type3_at_rr_s"] = round(time.time() - since[v.name], 3)
            wanted = {"kernel_complete_s"} | (
                {"type3_at_rr_s"} if advertised is not None else set()
            )
            if all(wanted <= out[v.name].keys() for v in vteps):
                break
            time.sleep(0.05)
        for v in vteps:
            row = out[v.name]
            for key in ("kernel_complete_s", "type3_at_rr_s"):
                if advertised is None and key == "type3_at_rr_s":
                    continue
                row.setdefault(key, None)
            known = [x for x in row.values() if x is not None]
            row["complete"] = len(known) == len(row)
            row["all_s"] = max(known) if row["complete"] else None
            row["counts"] = v.counts()
            row["targets"] = dict(zip(("flood", "macs"), self.targets(v), strict=True))
        return out

    def mark(self, name: str) -> None:
        self.phases.append((name, time.time() - self.t0))
        log.info("phase: %s", name)

    # -- phases

    def cold_start(self) -> dict[str, Any]:
        wait_machine_quiet(timeout=self.args.quiet_timeout)
        self.t0 = time.time()
        self.mark("cold start")
        self.sampler = GroupSampler({v.name: v.pids for v in self.vteps})
        for v in self.vteps:
            self.start(v)
        for v in self.vteps:
            if v.agent is not None:
                v.agent.wait_ready(timeout=self.args.deadline)
        times = self.wait_converged(
            self.vteps, {v.name: v.started for v in self.vteps}, advertised=len(self.vnis)
        )
        for v in self.vteps:
            stats = group_stats(v.pids())
            times[v.name].update(
                rss_mib=stats["rss_mib"], peak_rss_mib=stats["hwm_mib"], cpu_s=stats["cpu_s"]
            )
        return times

    def settle(self) -> float:
        """Until the VTEPs' processes are quiet: 5% of a core per VTEP (an idle ExaBGP
        alone uses ~3%: its reactor polls), over 2 s; returns the wait."""
        pids = [p for v in self.vteps for p in v.pids()]
        started = time.monotonic()
        deadline = started + self.args.deadline
        before = cpu_seconds(pids)
        while time.monotonic() < deadline:
            time.sleep(2.0)
            now = cpu_seconds(pids)
            if now - before <= 0.05 * 2.0 * len(self.vteps):
                break
            before = now
        return round(time.monotonic() - started, 1)

    def idle(self) -> dict[str, Any]:
        reconciled = self.wait_first_reconciles()
        settle = self.settle()
        self.mark("idle")
        before = {v.name: group_stats(v.pids()) for v in self.vteps}
        busy0, started = system_busy_seconds(), time.monotonic()
        time.sleep(self.args.idle_seconds)  # the measurement window itself, not a wait
        span = time.monotonic() - started
        busy = (system_busy_seconds() - busy0) / span
        out: dict[str, Any] = {"window_s": round(span, 1), "settle_s": round(settle, 1)}
        out["first_reconcile_wait_s"] = reconciled
        out["machine_busy_cores"] = round(busy, 2)
        for v in self.vteps:
            after = group_stats(v.pids())
            out[v.name] = {
                "cpu_s": round(after["cpu_s"] - before[v.name]["cpu_s"], 2),
                "core_pct": round(100 * (after["cpu_s"] - before[v.name]["cpu_s"]) / span, 3),
                "wakeups_per_s": round((after["wakeups"] - before[v.name]["wakeups"]) / span, 1),
                "steady_rss_mib": after["rss_mib"],
                "per_process": per_process(before[v.name], after),
            }
        return out

    def wait_first_reconciles(self) -> float:
        """Until every agent's first periodic reconcile (its reconcile-interval, 60 s by
        default, after its core started) has compared its kernel; returns the wait. The
        idle window then opens after it whatever the cold start took: it held that
        reconcile after a 43-47 s cold start and not after a 49 s one, and the agent's
        idle share read 0.18-0.20% or 0.04%."""
        started = time.monotonic()
        for v in self.vteps:
            if v.agent is None:
                continue
            interval = load_config(v.agent.config).reconcile_interval
            if not interval:  # this agent never reconciles
                continue
            first_reconcile = v.started + interval / 2  # not the dump at its start
            wait_until(
                functools.partial(kernel_checked, v.agent, self.vnis[0], first_reconcile),
                self.args.deadline,
                f"{v.name}'s first reconcile",
                retry_on=(control.ControlError,),
            )
        return round(time.monotonic() - started, 1)

    def take_down(self, v: Vtep) -> None:
        """Stop a VTEP's daemons and wait until rr1 no longer holds its routes."""
        self.stop(v)
        wait_until(
            functools.partial(self.holds, self.rrs[0], v.box.address, None),
            30,
            f"rr1 to see {v.name} go",
        )

    def restart(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for v in self._one_of_each():
            self.mark(f"restart {v.name}")
            removed0 = v.counts()["removed"]
            stopped = time.time()
            self.take_down(v)
            self.start(v)
            profilers = []
            if v.agent is not None:
                v.agent.wait_ready(timeout=self.args.deadline)
                profilers = self._profile(v, "restart")  # until its table is complete
            cpu0 = group_stats(v.pids())
            row = self.wait_converged([v], {v.name: v.started}, advertised=len(v.vnis))[v.name]
            if v.agent is not None:
                # The agent keeps the kernel's entries across a restart, so its kernel is
                # complete at once; its restart ends when it holds every reflector's whole
                # table again (FRR's, when its kernel is full again).
                wait_until(
                    functools.partial(table_complete, v.agent),
                    self.args.deadline,
                    f"{v.name}'s table complete",
                    retry_on=(control.ControlError,),
                )
                row["table_complete_s"] = round(time.time() - v.started, 3)
                row["all_s"] = max(row.get("all_s") or 0.0, row["table_complete_s"])
            for profiler in profilers:
                stop_py_spy(profiler)
            # from the moment the agent answered (FRR started) until done
            row["per_process"] = per_process(cpu0, group_stats(v.pids()))
            row["kernel_entries_removed_while_down"] = v.counts()["removed"] - removed0
            row["stop_s"] = round(v.started - stopped, 2)
            out[v.name] = row
        return out

    def cold_start_alone(self) -> dict[str, Any]:
        """One VTEP's cold start with the fabric up and quiet: a1 stopped and its kernel
        entries flushed (a VTEP booting), then started; the same for f1 (FRR removes its
        entries when it stops). The cold start phase starts every VTEP at once: 8 agents
        and one FRR VTEP share 2 cores and the reflectors, and the first figure says as
        much about who the reflectors serve first as about either VTEP.

        With --alone-trials N, a1 and f1 in turn N times: each figure is the median of a
        VTEP's trials (one trial moved by ~10% from run to run), the trials beside it."""
        trials: dict[str, list[dict[str, Any]]] = {}
        for trial in range(self.args.alone_trials):
            for v in self._one_of_each():
                trials.setdefault(v.name, []).append(self._cold_start_alone(v, trial))
        out: dict[str, Any] = {}
        for name, rows in trials.items():
            out[name] = {
                **rows[0],
                **{key: _median([r[key] for r in rows]) for key in ALONE_FIGURES},
                "complete": all(r["complete"] for r in rows),
                "trials": [{key: r[key] for key in ALONE_FIGURES} for r in rows],
            }
        return out

    def _cold_start_alone(self, v: Vtep, trial: int) -> dict[str, Any]:
        self.settle()  # nobody still busy with the last restart
        self.mark(f"cold start alone {v.name}" + (f" #{trial + 1}" if trial else ""))
        self.take_down(v)
        flush_fdb(v.box, v.vnis)

        def kernel_empty() -> bool:
            return not any(v.counts()[k] for k in ("flood", "macs"))

        wait_until(kernel_empty, 30, f"{v.name}'s kernel empty")
        rrs_before = group_stats(self.rr_pids())["cpu_s"]
        self.start(v)
        profilers = []
        if v.agent is not None:
            v.agent.wait_ready(timeout=self.args.deadline)
            if not trial:
                profilers = self._profile(v, "cold-start-alone")  # until its kernel is full
        converged = self.wait_converged([v], {v.name: v.started}, advertised=len(v.vnis))
        row: dict[str, Any] = converged[v.name]
        for profiler in profilers:
            stop_py_spy(profiler)
        stats = group_stats(v.pids())
        # what serving this VTEP cost the reflectors (both feed it the whole table)
        rrs_cpu = group_stats(self.rr_pids())["cpu_s"] - rrs_before
        row.update(cpu_s=stats["cpu_s"], peak_rss_mib=stats["hwm_mib"], rrs_cpu_s=round(rrs_cpu, 2))
        return row

    def _profile(self, v: Vtep, phase: str) -> list[subprocess.Popen[bytes] | None]:
        """With --profile: py-spy on each of the agent's processes, into PHASE-NAME-PID."""
        if not self.args.profile:
            return []
        self.args.profile.mkdir(parents=True, exist_ok=True)
        return [
            py_spy(pid, self.args.profile / f"{phase}-{v.name}-{pid}.raw.txt") for pid in v.pids()
        ]

    def rr_pids(self) -> list[int]:
        return [pid for rr in self.rrs if rr.frr is not None and (pid := rr.frr.pid("bgpd"))]

    def _one_of_each(self) -> list[Vtep]:
        found: dict[str, Vtep] = {}
        for v in self.vteps:
            found.setdefault(v.kind, v)
        return list(found.values())

    def vni_add_remove(self) -> dict[str, Any]:
        """Each kind of VTEP adds a VNI and removes it, VNI_TRIALS times: medians. A
        removal is also timed where the VTEP's part ends, its type 3 withdraw leaving the
        box (a BGP sniffer on its eth0): the reflector's poll sees it ~0.1 s on for either
        VTEP, which is the poll's own time."""
        out: dict[str, Any] = {}
        self.settle()  # nobody still busy with the restarts
        for v in self._one_of_each():
            vni = self.extra_vni[v.kind]
            adds, dels, sent = [], [], []
            sniffer = Child(v.box.netns.name, "sniff-bgp", "--withdraws")
            try:
                sniffer.wait_ready()
                for _ in range(VNI_TRIALS):
                    adds.append(self._vni_step(v, vni, add=True))
                    mark = len(sniffer.snapshot())
                    dels.append(self._vni_step(v, vni, add=False))
                    withdraw = sniffer.wait_for(
                        lambda x, me=v.box.address: (
                            x.get("event") == "withdraw" and x.get("src") == me
                        ),
                        5.0,
                        mark,
                    )
                    started = dels[-1]["started"]
                    sent.append(None if withdraw is None else round(withdraw["t"] - started, 4))
            finally:
                sniffer.stop()
            out[v.name] = {
                "vni": vni,
                "add": adds[0],
                "add_all_s": _median([r["all_s"] for r in adds]),
                "add_all_s_each": [r["all_s"] for r in adds],
                "del_type3_withdrawn_at_rr_s": _median([r["type3_at_rr_s"] for r in dels]),
                "del_type3_withdrawn_at_rr_s_each": [r["type3_at_rr_s"] for r in dels],
                "del_withdraw_sent_s": _median(sent),
                "del_withdraw_sent_s_each": sent,
                "del_kernel_complete_s": _median([r["kernel_complete_s"] for r in dels]),
            }
        return out

    def _vni_step(self, v: Vtep, vni: int, *, add: bool) -> dict[str, Any]:
        """Add (or remove) ``vni`` on ``v``; its convergence row."""
        self.mark(f"vni {'add' if add else 'del'} {v.name}")
        started = time.time()
        if add:
            add_vnis(v.box, [vni])
            v.vnis.append(vni)
        else:
            del_vnis(v.box, [vni])
            v.vnis.remove(vni)
        row = self.wait_converged([v], {v.name: started}, advertised=len(v.vnis))[v.name]
        row["started"] = started
        return row

    def routes_per_vtep(self) -> int:
        """The routes each reflector sends a VTEP: every other VTEP's per served VNI."""
        others = self.args.emulated * (1 + self.args.macs) + len(self.vteps) - 1
        return len(self.vteps[0].vnis) * others

    def rr_loss(self) -> dict[str, Any]:
        rr = self.rrs[1]
        assert rr.frr is not None
        # every probe caught up (e.g. with the VNI just removed) before the window opens
        self.wait_converged(self.vteps, {v.name: time.time() for v in self.vteps})
        self.mark("rr2 down")
        removed0 = {v.name: v.counts()["removed"] for v in self.vteps}
        stopped = time.time()
        rr.frr.stop()
        down = wait_until(lambda: self._sessions_to(rr) == 0, 30, "every VTEP to lose rr2")
        lost_s = round(time.time() - stopped, 2)
        time.sleep(self.args.rr_window)  # the observation window: nothing may be removed
        during = {v.name: v.counts()["removed"] - removed0[v.name] for v in self.vteps}
        self.mark("rr2 up")
        back = time.time()
        self.compactions_at_rr2_up = self.compactions()
        restart_frr(rr)
        wait_until(lambda: self._sessions_to(rr) == len(self.vteps), self.args.deadline, "rr2 back")
        back_s = round(time.time() - back, 2)
        converged = self.wait_converged(self.vteps, {v.name: back for v in self.vteps})
        # a moment for anything a returning RR might make a VTEP remove
        self.settle()
        return {
            "sessions_down_after_s": lost_s,
            "down_seen": bool(down),
            "window_s": self.args.rr_window,
            "removed_while_rr2_down": during,
            "rr2_sessions_back_s": back_s,
            "removed_in_total": {
                v.name: v.counts()["removed"] - removed0[v.name] for v in self.vteps
            },
            "complete_after": {n: r["complete"] for n, r in converged.items()},
        }

    def _sessions_to(self, rr: Box) -> int:
        """How many real VTEPs have their session to ``rr`` up (from their own view)."""
        up = 0
        for v in self.vteps:
            try:
                if v.agent is not None:
                    rows = json.loads(v.agent.cli("show", "peers", "--json"))
                    up += any(r["peer"] == rr.address and r["state"] == "Established" for r in rows)
                else:
                    up += v.box.evpn_peer_state(rr.address) == "Established"
            except (CommandError, ValueError, KeyError, TypeError):
                continue
        return up

    def compactions(self) -> dict[str, int]:
        """Each agent's count of path-table compactions (``show counters``)."""
        out = {}
        for v in self.vteps:
            if v.agent is not None:
                counters = json.loads(v.agent.cli("show", "counters", "--json"))["counters"]
                out[v.name] = int(counters.get("path-table-compactions", 0))
        return out

    def wait_compacted(self, marks: dict[str, int], when: str) -> bool:
        """Until every agent has built its path table anew since ``marks`` were read (5 s
        after its last route change), or False after 60 s: RSS is measured at that level,
        not at the larger table the routes' coming and going left for a few seconds (a
        10-15 MiB difference, and measured before or after it by chance)."""
        try:
            wait_until(
                lambda: all(n > marks.get(name, -1) for name, n in self.compactions().items()),
                60,
                f"every agent's path table built anew {when}",
                interval=1.0,
            )
        except TimeoutError as exc:
            log.warning("%s: measured anyway", exc)
            return False
        return True

    def churn(self) -> dict[str, Any]:
        self.settle()
        # too few paths came back to make a compaction due: nothing to wait for
        compacted = self.routes_per_vtep() >= COMPACT_MIN and self.wait_compacted(
            self.compactions_at_rr2_up, "since rr2 came back"
        )
        before = {v.name: group_stats(v.pids()) for v in self.vteps}
        memory_before = {v.name: self.memory(v) for v in self.vteps}
        self.mark("churn")
        churn = Churn(self.generator, self.model, self.args.churn_rate)
        churn.start()
        time.sleep(self.args.soak_seconds)  # the soak itself
        sent = churn.stop()
        marks = self.compactions()
        self.mark("churn end")
        ended = time.time()
        try:
            settle = wait_until(
                self._all_match, self.args.deadline, "every VTEP to match the routes", interval=1.0
            )
            sent["converged_after_churn_s"] = round(time.time() - ended, 2)
        except TimeoutError:
            settle = None
            sent["converged_after_churn_s"] = None
        sent["kernel_against_routes"] = self._diffs()
        self.settle()
        # each move is a new path from each reflector: enough of them make a compaction due
        due = sent["moves_sent"] * len(self.rrs) >= max(
            len(self.rrs) * self.routes_per_vtep() // 4, COMPACT_MIN
        )
        out: dict[str, Any] = {
            "generator": sent,
            "final_check": settle,
            "compacted_before": compacted,
            "compacted_after": due and self.wait_compacted(marks, "since the churn ended"),
        }
        for v in self.vteps:
            after = group_stats(v.pids())
            rss0, rss1 = before[v.name]["rss_mib"], after["rss_mib"]
            out[v.name] = {
                "rss_mib_before": rss0,
                "rss_mib_after": rss1,
                "rss_change_pct": round(100 * (rss1 - rss0) / rss0, 2) if rss0 else None,
                "peak_rss_mib": after["hwm_mib"],
                "cpu_s": round(after["cpu_s"] - before[v.name]["cpu_s"], 2),
                # which process grew (the speaker, the core; bgpd, zebra)
                "per_process": per_process(before[v.name], after),
                # and in the core, where (``show memory``: its heap, its tables)
                "memory_before": memory_before[v.name],
                "memory_after": self.memory(v),
            }
        return out

    @staticmethod
    def memory(v: Vtep) -> dict[str, Any] | None:
        """An agent's ``show memory`` (None: an FRR VTEP, or no answer)."""
        if v.agent is None:
            return None
        try:
            answer: dict[str, Any] = json.loads(v.agent.cli("show", "memory", "--json"))
        except (CommandError, ValueError) as exc:
            log.warning("%s: no show memory: %s", v.name, exc)
            return None
        return answer

    def _diffs(self) -> dict[str, dict[str, int]]:
        """Each VTEP's kernel against the routes (the model): what is missing or stale."""
        report = {}
        for v in self.vteps:
            real = [w.box.address for w in self.vteps if w is not v]
            expected = self.model.expected(v.vnis, real, shared=self.vnis)
            report[v.name] = compare(expected, kernel_state(v.box))
        return report

    def _all_match(self) -> dict[str, dict[str, int]] | None:
        """The diffs when every VTEP matches the routes; None while any differs."""
        report = self._diffs()
        differ = {n: d for n, d in report.items() if any(d.values())}
        if differ:
            log.info("not converged yet, kernels still differ from the routes: %s", differ)
            return None
        return report

    def show_latency(self) -> dict[str, Any]:
        """How long a1's show commands take at this size (target: under 1 s)."""
        agent = next((v.agent for v in self.vteps if v.agent is not None), None)
        if agent is None:
            return {}
        out = {}
        for words in (("show", "vni"), ("show", "peers"), ("show", "counters")):
            started = time.monotonic()
            agent.cli(*words, "--json")
            out[" ".join(words)] = round(time.monotonic() - started, 3)
        out["counters"] = json.loads(agent.cli("show", "counters", "--json")).get("counters")
        return out

    def series(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for v in self.vteps:
            entries = [
                [round(x["t"] - self.t0, 2), x["flood"] + x["macs"]]
                for x in v.probe.snapshot()
                if x.get("event") == "state"
            ]
            resources = [
                [round(t - self.t0, 1), rss, cpu] for t, rss, cpu in self.sampler.series[v.name]
            ]
            out[v.name] = {"entries": entries, "resources": resources}
        return out


def _median(values: list[float | None]) -> float | None:
    """The median, or None if any trial missed its deadline."""
    known = [x for x in values if x is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def side_by_side(per_vtep: dict[str, Any], vteps: list[Vtep], key: str) -> dict[str, Any]:
    """The agents' median (and max) of ``key`` next to the FRR VTEP's, and their ratio."""
    agents = [per_vtep[v.name].get(key) for v in vteps if v.kind == "agent" and v.name in per_vtep]
    frr = [per_vtep[v.name].get(key) for v in vteps if v.kind == "frr" and v.name in per_vtep]
    values = [a for a in agents if a is not None]
    out: dict[str, Any] = {
        "agent_median": statistics.median(values) if values else None,
        "agent_max": max(values) if values else None,
        "frr": frr[0] if frr else None,
    }
    if out["agent_median"] is not None and out["frr"]:
        out["ratio_agent_to_frr"] = round(out["agent_median"] / out["frr"], 2)
    return out


def table_complete(agent: AgentProcess) -> bool:
    """Whether the agent holds every reflector's whole table (End-of-RIB or quiet)."""
    peers = control.request(str(agent.socket), "show peers", timeout=5.0)
    return bool(peers) and all(p["tableComplete"] for p in peers)


def kernel_checked(agent: AgentProcess, vni: int, since: float) -> bool:
    """Whether the agent compared its kernel entries of ``vni`` with its routes after
    ``since`` (wall clock): the dump at its start is a comparison too."""
    rows = control.request(str(agent.socket), "show vni", timeout=5.0, vni=vni)
    ago = rows[0].get("kernelCheckedSecondsAgo") if rows else None
    return ago is not None and time.time() - ago >= since


def keep_logs(workdir: Path, out: Path) -> list[str]:
    """Copy every agent's and speaker's stderr (its log) out of the fabric's directory."""
    kept = []
    for path in sorted(workdir.glob("*/*.stderr")):
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{path.parent.name}-{path.name.removesuffix('.stderr')}.log"
        shutil.copyfile(path, target)
        kept.append(target.name)
    return kept


def _median(values: list[Any]) -> Any:
    """The median, or None if a trial has no figure (a step that never came)."""
    return None if None in values else statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=8, help="agent VTEPs (8)")
    parser.add_argument("--emulated", type=int, default=64, help="emulated VTEPs (64)")
    parser.add_argument("--vnis", type=int, default=1000, help="VNIs per VTEP (1000)")
    parser.add_argument("--macs", type=int, default=1, help="MACs per emulated VTEP per VNI (1)")
    parser.add_argument("--vni-base", type=int, default=1000)
    parser.add_argument("--no-frr", action="store_true", help="no FRR VTEP (no comparator)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        help="idle CPU window (600; 30 --quick), opened after every agent's first periodic "
        "reconcile (60 s after its start)",
    )
    parser.add_argument("--churn-rate", type=float, default=1000.0, help="MAC moves/s (1000)")
    parser.add_argument("--soak-seconds", type=float, help="churn soak (600; 30 --quick)")
    parser.add_argument(
        "--hold-time",
        type=int,
        default=30,
        help="BGP hold time of every session (30; the other labs use 9, which a starved "
        "speaker misses during a cold start of many VTEPs on 2 cores)",
    )
    parser.add_argument("--rr-window", type=float, default=15.0, help="RR-loss window (15 s)")
    parser.add_argument(
        "--alone-trials",
        type=int,
        default=3,
        help="cold starts alone of each of a1 and f1, in turn; the figures are medians (3)",
    )
    parser.add_argument("--deadline", type=float, default=600.0, help="per-step deadline (s)")
    parser.add_argument("--quiet-timeout", type=float, default=60.0)
    parser.add_argument(
        "--quick", action="store_true", help="3 agents, 16 emulated VTEPs, 50 VNIs, 30 s windows"
    )
    parser.add_argument("--out", type=Path, help="write result.json and PNG plots here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy each agent's processes during its restart and its cold start alone, into DIR",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.emulated, args.vnis = 3, 16, 50
        args.deadline = min(args.deadline, 180.0)
        args.quiet_timeout = min(args.quiet_timeout, 10.0)
    args.idle_seconds = args.idle_seconds or (30.0 if args.quick else 600.0)
    args.soak_seconds = args.soak_seconds or (30.0 if args.quick else 600.0)
    setup_logging(args.verbose)
    if args.agents < 1 or args.agents > 30 or not 2 <= args.emulated <= 150:
        parser.error("--agents 1..30, --emulated 2..150")
    if not 1 <= args.alone_trials <= 9:
        parser.error("--alone-trials 1..9")
    if args.vni_base + args.vnis + 1 > 65535:
        parser.error("VNIs must stay below 65536 (type-1 RD number)")
    missing = missing_requirements()
    if missing:
        log.error("cannot build a fabric here: %s", ", ".join(missing))
        return 1
    output: dict[str, Any] = {
        "benchmark": "scale",
        "code": code_version(),
        "size": {
            "agent_vteps": args.agents,
            "frr_vteps": 0 if args.no_frr else 1,
            "emulated_vteps": args.emulated,
            "vnis_per_vtep": args.vnis,
            "macs_per_emulated_vtep_per_vni": args.macs,
        },
    }
    with bench_fabric("bsc") as fab:
        lab = Lab(fab, args)
        try:
            output["setup"] = {"generator": lab.start_generator(), "vteps": lab.add_vteps()}
            flood, macs = lab.targets(lab.vteps[0])
            output["size"]["per_vtep_flood_entries"] = flood
            output["size"]["per_vtep_remote_macs"] = macs
            output["size"]["routes_per_vtep_received"] = lab.routes_per_vtep()
            figures: dict[str, Any] = {}
            output["cold_start"] = cold = lab.cold_start()
            output["cold_start_check"] = lab._diffs()
            output["idle"] = idle = lab.idle()
            output["restart"] = lab.restart()
            output["cold_start_alone"] = alone = lab.cold_start_alone()
            output["vni_add_remove"] = lab.vni_add_remove()
            output["rr_loss"] = lab.rr_loss()
            output["churn"] = churn = lab.churn()
            output["show_latency_s"] = lab.show_latency()
            lab.mark("end")
            figures["cold_start_all_s"] = side_by_side(cold, lab.vteps, "all_s")
            figures["cold_start_kernel_complete_s"] = side_by_side(
                cold, lab.vteps, "kernel_complete_s"
            )
            figures["cold_start_cpu_s"] = side_by_side(cold, lab.vteps, "cpu_s")
            figures["peak_rss_mib"] = side_by_side(cold, lab.vteps, "peak_rss_mib")
            figures["steady_rss_mib"] = side_by_side(idle, lab.vteps, "steady_rss_mib")
            figures["idle_core_pct"] = side_by_side(idle, lab.vteps, "core_pct")
            figures["idle_wakeups_per_s"] = side_by_side(idle, lab.vteps, "wakeups_per_s")
            figures["restart_all_s"] = {n: r.get("all_s") for n, r in output["restart"].items()}
            for name in ("all_s", "kernel_complete_s", "type3_at_rr_s", "cpu_s", "rrs_cpu_s"):
                figures[f"cold_start_alone_{name}"] = {n: r.get(name) for n, r in alone.items()}
            figures["vni_add_all_s"] = {
                n: r["add_all_s"] for n, r in output["vni_add_remove"].items()
            }
            figures["vni_del_s"] = {
                n: r["del_type3_withdrawn_at_rr_s"] for n, r in output["vni_add_remove"].items()
            }
            figures["vni_del_withdraw_sent_s"] = {
                n: r["del_withdraw_sent_s"] for n, r in output["vni_add_remove"].items()
            }
            figures["soak_rss_change_pct"] = side_by_side(churn, lab.vteps, "rss_change_pct")
            output["figures"] = figures
            output["checks"] = {
                "cold_start_complete": all(r["complete"] for r in cold.values()),
                "nothing_removed_on_rr_loss": not any(
                    output["rr_loss"]["removed_in_total"].values()
                ),
                "soak_rss_within_5pct": all(
                    abs(churn[v.name]["rss_change_pct"] or 0) <= 5 for v in lab.vteps
                ),
                "soak_zero_stale_or_missing": bool(churn["final_check"]),
                "show_under_1s": all(
                    s < 1.0 for k, s in output["show_latency_s"].items() if k != "counters"
                ),
            }
        except Exception as exc:  # the figures so far still go out, with the failure
            log.exception("the run failed")
            output["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if getattr(lab, "sampler", None) is not None:
                lab.sampler.stop()
                output["series"] = lab.series()
            output["phases"] = [[name, round(at, 1)] for name, at in lab.phases]
            if args.out:  # the boxes' directories go with the fabric
                output["logs"] = keep_logs(fab.workdir, args.out / "logs")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        output["plots"] = write_plots(args.out, output.get("series", {}), lab.phases)
        (args.out / "result.json").write_text(json.dumps(output, indent=2))
    print(json.dumps(output, indent=2))
    return 1 if "error" in output else 0


if __name__ == "__main__":
    sys.exit(main())
