"""The agent core's asyncio glue: ExaBGP channel, netlink, control socket, one state owner.

ExaBGP runs this as its API process. ExaBGP blocks when our stdin fills up, so stdin is
drained by its own thread that never waits on netlink work; everything else runs on one
event loop, and only the ``_owner`` task touches ``AgentState``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import fcntl
import io
import logging
import re
import sys
import threading
import time
from typing import IO, Any

from evpn_agent import control, views
from evpn_agent.config import Config
from evpn_agent.exabgp_json import parse_line
from evpn_agent.identity import rd_indexes, resolve
from evpn_agent.kernel import (
    AddFdb,
    AddFlood,
    AddNeigh,
    DelFdb,
    DelFlood,
    KernelSnapshot,
    Monitor,
    NetlinkWriter,
    Op,
    QuietEchoes,
    dump,
)
from evpn_agent.latency import Latency
from evpn_agent.metrics import Metrics
from evpn_agent.speaker import grammar
from evpn_agent.state import AgentState

log = logging.getLogger(__name__)

TICK = 1.0
REDUMP_FIRST, REDUMP_LAST = 1.0, 16.0  # seconds; see Agent._schedule_redump
REFRESH = "announce route-refresh l2vpn evpn"
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, Linux
PIPE_SIZE = 1 << 20  # the default per-user limit (/proc/sys/fs/pipe-max-size)
REFRESH_DELAY = 1.0  # seconds to see the sessions come up before asking for a refresh
# Lines handled before the kernel is written: bounds how long a burst delays installs, so
# installing runs while ExaBGP is still delivering (each line can hold ~1,700 routes).
MAX_LINES_PER_ROUND = 32
_TIME = re.compile(rb'"time": ([0-9.]+)')


class _Closed:
    """Marker: ExaBGP closed our stdin (it stopped, or is replacing us)."""


class Agent:
    def __init__(self, cfg: Config, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.cfg = cfg
        self.stdin = stdin
        self.stdout = stdout
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.state: AgentState | None = None
        self.monitor: Monitor | None = None
        self.writer = NetlinkWriter()
        self.route_to_kernel = Latency()  # ExaBGP's timestamp of an UPDATE -> kernel acked
        self.mac_to_bgp = Latency()  # netlink event arrival -> command written to ExaBGP
        self.metrics = Metrics(lambda: self.state)
        self._events_lost = True  # since the last complete dump (none yet at start)
        self._redump_at: float | None = None  # when to dump again after an incomplete one
        self._redump_delay = REDUMP_FIRST

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # Drain ExaBGP from the first moment: its writes to us block its reactor, and its
        # keepalives with it, while we bind, dump the kernel (seconds when it is large) and
        # open the socket. Lines wait in the inbox until the state exists.
        threading.Thread(
            target=self._read_stdin, args=(loop,), name="exabgp-in", daemon=True
        ).start()
        monitor = Monitor(rcvbuf=self.cfg.netlink_buffer_size)
        self.monitor = monitor
        await monitor.start()  # bind before the dump: nothing changes unseen in between
        snap = await self._dump()
        router_id, vtep_ip = resolve(self.cfg, snap.links)
        state = AgentState(
            self.cfg, router_id=router_id, vtep_ip=vtep_ip, rd_index={}, now=time.monotonic()
        )
        self.state = state
        state.load_snapshot(snap)
        self._schedule_redump(snap.complete, time.monotonic())
        state.rd_index = rd_indexes(self.cfg.state_dir, state.vnis)
        log.info(
            "evpn-agent core started: router-id %s, VTEP %s, VNIs %s",
            router_id,
            vtep_ip,
            ",".join(str(v) for v in sorted(state.vnis)) or "none yet",
        )
        server = await control.serve(self.cfg.control_socket, self._answer)
        metrics_server = None
        if self.cfg.metrics_address:
            try:
                metrics_server = await self.metrics.serve(self.cfg.metrics_address)
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", self.cfg.metrics_address, exc)
        # Our whole desired set, bracketed so ExaBGP drops what a predecessor announced
        # and we no longer want (a MAC that aged out while no core ran).
        self._send([grammar.SYNC_BEGIN])
        self._flush(state)
        self._send([grammar.SYNC_END])
        tasks = [
            asyncio.create_task(self._watch_kernel(monitor)),
            asyncio.create_task(self._tick()),
            asyncio.create_task(self._refresh_if_respawned(state)),
        ]
        try:
            await self._owner(state)
        finally:
            for task in tasks:
                task.cancel()
            server.close()
            if metrics_server is not None:
                metrics_server.close()
            monitor.close()

    async def _refresh_if_respawned(self, state: AgentState) -> None:
        """Ask the reflectors to send their tables again, unless we saw the sessions start.

        After a respawn the sessions are up already and nobody replays routes to us. On a
        first start the sessions come up within a moment and bring the full table; a
        refresh then would only make the reflector send much of it twice.
        """
        await asyncio.sleep(REFRESH_DELAY)
        seen = {peer for peer, p in state.peers.items() if p.since is not None}
        if not all(rr.address in seen for rr in self.cfg.route_reflectors):
            self._send([REFRESH])

    def _read_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            # A deeper pipe lets ExaBGP hand over a burst while we install the last one,
            # instead of blocking on its write (measured: ~8% of its time at 100k routes).
            fcntl.fcntl(self.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        put = self.inbox.put_nowait
        try:
            for line in self.stdin:
                loop.call_soon_threadsafe(put, ("bgp", line))
        finally:
            loop.call_soon_threadsafe(put, ("closed", _Closed()))

    async def _watch_kernel(self, monitor: Monitor) -> None:
        async for batch in monitor.events():
            self.inbox.put_nowait(("kernel", (batch, time.monotonic())))

    async def _tick(self) -> None:
        last_reconcile = time.monotonic()
        interval = self.cfg.reconcile_interval
        while True:
            await asyncio.sleep(TICK)
            self.inbox.put_nowait(("tick", None))
            if interval and time.monotonic() - last_reconcile >= interval:
                last_reconcile = time.monotonic()
                self.inbox.put_nowait(("reconcile", None))

    async def _owner(self, state: AgentState) -> None:
        router_id = state.router_id
        while True:
            items = [await self.inbox.get()]
            while not self.inbox.empty() and len(items) < MAX_LINES_PER_ROUND:
                items.append(self.inbox.get_nowait())
            now = time.monotonic()
            resync = lost = False
            update_times: list[float] = []
            kernel_arrival: float | None = None
            for kind, payload in items:
                if kind == "bgp":
                    events = parse_line(payload.decode("utf-8", "replace"), router_id)
                    state.on_bgp(events, now)
                    if events and (found := _TIME.search(payload, 0, 200)):
                        update_times.append(float(found.group(1)))
                elif kind == "kernel":
                    batch, arrived = payload
                    if not state.on_kernel(batch, now):
                        lost = True
                    kernel_arrival = arrived if kernel_arrival is None else kernel_arrival
                elif kind == "tick":
                    state.tick(now)
                elif kind == "reconcile":
                    resync = True
                elif kind == "closed":
                    log.info("ExaBGP closed the API channel; core exits, kernel state kept")
                    return
            if lost:
                log.warning("netlink events were lost: resynchronising from a full dump")
                self._events_lost = True
            if self._redump_at is not None and now >= self._redump_at:
                resync = True
            if resync or lost:
                log.debug("reconciling with a full kernel dump")
                snap = await self._dump()
                state.load_snapshot(snap)
                self._schedule_redump(snap.complete, now)
            sent = self._flush(state)
            done = time.time()
            for stamp in update_times:
                self.route_to_kernel.record(done - stamp)
                self.metrics.route_to_kernel.observe(max(done - stamp, 0.0))
            if sent and kernel_arrival is not None:
                elapsed = time.monotonic() - kernel_arrival
                self.mac_to_bgp.record(elapsed)
                self.metrics.mac_to_bgp.observe(elapsed)

    async def _dump(self) -> KernelSnapshot:
        """A full dump, marked incomplete if the FDB changed while it ran: the kernel
        resumes an FDB dump by position, so concurrent deletions make it skip entries
        that are still there, and unlike the neighbour tables it does not say so."""
        monitor = self.monitor
        if monitor is None:
            return await dump()
        deletions, overflows = monitor.fdb_generation()
        snap = await dump()
        # Unread messages may be deletions from during the dump: count them as such.
        changed = monitor.backlog() or monitor.fdb_generation() != (deletions, overflows)
        if monitor.stats.overflows != overflows:
            self._events_lost = True
        if changed and snap.complete:
            snap = dataclasses.replace(snap, complete=False)
        return snap

    def _schedule_redump(self, complete: bool, now: float) -> None:
        """After an incomplete dump, while events were lost since the last complete one
        (or none was taken yet), dump again soon: 1 s, doubling to 16 s while the kernel
        keeps changing under the dumps. With no events lost, the events already tell
        what an incomplete dump missed."""
        if complete:
            self._events_lost = False
            self._redump_at, self._redump_delay = None, REDUMP_FIRST
            return
        if not self._events_lost:
            return
        log.info("kernel dump was incomplete (tables changed meanwhile): again in %gs",
                 self._redump_delay)  # fmt: skip
        self._redump_at = now + self._redump_delay
        self._redump_delay = min(self._redump_delay * 2, REDUMP_LAST)

    def _flush(self, state: AgentState) -> int:
        """Write planned kernel ops, then planned BGP commands; returns commands sent."""
        quiet = QuietEchoes(*state.quiet_echoes())
        if self.monitor is not None and self.monitor.quiet != quiet:
            # Our own writes echo back on the monitor: drop them undecoded.
            self.monitor.quiet = quiet
        ops = state.take_kernel_ops()
        if ops:
            failures = self.writer.apply(ops)
            for failure in failures[:5]:
                log.warning("kernel refused %s: %s", failure.op, failure.message)
            state.kernel_applied(ops, [f.op for f in failures])
        if any(v not in state.rd_index for v in state.vnis):
            state.rd_index = rd_indexes(self.cfg.state_dir, state.vnis)
        lines = state.take_bgp_lines()
        self._send(lines)
        return len(lines)

    def _send(self, lines: list[str]) -> None:
        if not lines:
            return
        self.stdout.write("".join(f"{line}\n" for line in lines).encode())
        self.stdout.flush()

    def _answer(self, request: dict[str, Any]) -> Any:
        state = self.state
        if state is None:
            raise ValueError("the agent is still starting")
        command = request.get("command")
        vni = request.get("vni")
        if vni is not None and vni not in state.vnis:
            raise ValueError(f"VNI {vni} is not configured on this VTEP")
        if command == "show vni":
            return views.vnis(state, vni)
        if command == "show mac":
            return views.macs(state, vni, request.get("mac"))
        if command == "show neigh":
            return views.neighbours(state, vni)
        if command == "show peers":
            return views.peers(state, self.cfg, time.monotonic())
        if command == "show routes":
            return views.routes(state, request.get("type"), vni)
        if command == "show vxlans":
            return views.vxlans(state)
        if command == "clear duplicate":
            cleared = state.clear_duplicate(vni, request.get("mac"))
            self._flush(state)
            return [{"vni": v, "mac": m} for v, m in cleared]
        if command == "reconcile":
            return self._reconcile(state, dry_run=bool(request.get("dry_run")))
        if command == "show counters":
            return {
                "counters": dict(
                    sorted(
                        {
                            **state.counters,
                            "bgp-announces": state.adverts.announced,
                            "bgp-withdraws": state.adverts.withdrawn,
                        }.items()
                    )
                ),
                "latency": {
                    "route-to-kernel": self.route_to_kernel.summary(),
                    "local-mac-to-bgp": self.mac_to_bgp.summary(),
                },
            }
        raise ValueError(f"unknown command {command!r}")

    async def _reconcile(self, state: AgentState, *, dry_run: bool) -> dict[str, Any]:
        """Dump the kernel and plan against it; apply unless ``dry_run``."""
        snapshot = await self._dump()
        # Nothing below awaits: the owner task cannot interleave with this.
        if dry_run:
            trial = copy.deepcopy(state)
            trial.load_snapshot(snapshot)
            ops = trial.take_kernel_ops()
            failed: list[str] = []
        else:
            state.load_snapshot(snapshot)
            self._schedule_redump(snapshot.complete, time.monotonic())
            ops = state.take_kernel_ops()
            failures = self.writer.apply(ops) if ops else []
            state.kernel_applied(ops, [f.op for f in failures])
            failed = [f"{f.op}: {f.message}" for f in failures]
            self._send(state.take_bgp_lines())
        return {
            "dryRun": dry_run,
            "complete": snapshot.complete,
            "sweeping": state.sweep_ok,
            "ops": [describe(op) for op in ops],
            "failed": failed,
        }


def describe(op: Op) -> str:
    """An op as the ``bridge``/``ip`` command that would do the same, for people."""
    name = type(op).__name__
    if isinstance(op, AddFdb | DelFdb):
        vlan = f" vlan {op.vlan}" if op.vlan is not None else ""
        dst = f" dst {op.dst}" if isinstance(op, AddFdb) else ""
        verb = "replace" if isinstance(op, AddFdb) else "del"
        return f"{name}: bridge fdb {verb} {op.mac} dev if{op.ifindex}{dst}{vlan} master self"
    if isinstance(op, AddFlood | DelFlood):
        verb = "append" if isinstance(op, AddFlood) else "del"
        return f"{name}: bridge fdb {verb} 00:00:00:00:00:00 dev if{op.ifindex} dst {op.dst} self"
    if isinstance(op, AddNeigh):
        return f"{name}: ip neigh replace {op.ip} lladdr {op.mac} dev if{op.ifindex} extern_learn"
    return f"{name}: ip neigh del {op.ip} dev if{op.ifindex}"


def main_core(cfg: Config) -> int:
    agent = Agent(cfg, sys.stdin.buffer, sys.stdout.buffer)
    asyncio.run(agent.run())
    return 0
