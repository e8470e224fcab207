"""The daemon: one owner task runs every state change, from one inbox of typed items.

ExaBGP runs this as its API process. Inputs arrive as items: lines from the speaker (read
on their own thread, so ExaBGP never blocks on us), batches of kernel events, control
requests (answered by the owner, between two inputs, so no request sees or makes a
half-applied change). The owner sleeps until the next item or the next deadline, the
engine's or its own (route refresh after a respawn, periodic reconcile, re-dump).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from evpn_agent import heap
from evpn_agent.control import answers
from evpn_agent.core.engine import Engine
from evpn_agent.core.work import Work
from evpn_agent.daemon import reload
from evpn_agent.daemon.instance import Instance
from evpn_agent.daemon.resync import Resync, paced_interval
from evpn_agent.daemon.writes import Writes
from evpn_agent.identity import rd_indexes, resolve
from evpn_agent.kernel import Kernel, OpFailure
from evpn_agent.latency import Latency
from evpn_agent.metrics import Metrics
from evpn_agent.model import Config, KernelEvent, KernelSnapshot, Op, describe, route_count
from evpn_agent.model.net import vni_ranges
from evpn_agent.speaker import Line, Speaker

log = logging.getLogger(__name__)

REFRESH_DELAY = 1.0  # seconds to see the sessions come up before asking for a refresh
# Items handled before the kernel is written: bounds how long a burst delays installs, so
# installing runs while ExaBGP is still delivering (each line can hold ~1,700 routes).
MAX_ITEMS_PER_ROUND = 32
# ... and routes or kernel events: a burst that arrived whole (100,000 withdraws, read in a
# few reads) is still planned and written in rounds, the kernel writing one while the owner
# plans the next, not planned whole and then written whole. A line holds up to ~3,400
# routes (two of a reflector's UPDATEs): at 8,192 a 10,000-route burst was one round, the
# owner's ~90 ms and then the kernel's ~100 ms in series; now a round closes between two
# parts of a line (speaker.channel.PART_ROUTES) once it holds this many.
MAX_EVENTS_PER_ROUND = 2048
# ... or fewer for the first round of a burst (the owner had waited for it): the kernel
# starts on its first routes while the owner handles the rest, instead of after a whole
# line (a line comes in parts of an UPDATE or ~512 routes: speaker.channel.PART_ROUTES).
FIRST_ROUND_ROUTES = 512
# ... and local kernel events (the monitor hands them over 1,024 at a time): a rack of new
# MACs goes out to ExaBGP, the reflector and the peers a round at a time, so those work on
# one round while the owner reads the next, rather than wait for the whole rack.
MAX_KERNEL_EVENTS_PER_ROUND = 1024
# Owner work between chances for the event loop's other tasks while a burst is queued: an
# await of a non-empty queue does not suspend, so the control socket, the metrics and the
# netlink monitor's reader would otherwise wait until the whole burst is handled (`show`
# answered after 2 s in a burst of 100,000 routes, and after it at a restart at scale).
YIELD_INTERVAL = 0.02
# ... for this many iterations of the loop: a control request takes several (accept, the
# connection's transport, its read, the handler) and one of the burst's lines may take a
# good part of a second, so one iteration per yield left `show` waiting for several lines.
YIELD_ITERATIONS = 8


@dataclass(frozen=True, slots=True)
class SpeakerLine:
    line: Line  # what the speaker delivered, for its decode()


@dataclass(frozen=True, slots=True)
class SpeakerClosed:
    """ExaBGP closed our stdin: it stopped, or is replacing us."""


@dataclass(frozen=True, slots=True)
class KernelChanged:
    events: list[KernelEvent]
    arrived: float


@dataclass(frozen=True, slots=True)
class ControlAsked:
    request: dict[str, Any]
    reply: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class ControlWaiting:
    """Wakes the owner: a control request waits in its own queue."""


@dataclass(frozen=True, slots=True)
class KernelWritten:
    """Wakes the owner: the kernel answered the batch of writes in flight."""


Item = SpeakerLine | SpeakerClosed | KernelChanged | ControlWaiting | KernelWritten


class Daemon:
    def __init__(
        self,
        cfg: Config,
        speaker: Speaker,
        kernel: Kernel,
        *,
        clock: Callable[[], float] = time.monotonic,
        config_path: str | None = None,
        sighup: bool = False,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path  # the file `run --config` named: what reload re-reads
        # the control socket, our ExaBGP's peers and the handover of `evpn-agent restart`
        self.instance = Instance(cfg, config_path)
        self.sighup = sighup  # SIGHUP reloads it (the real process only, not tests)
        self.speaker = speaker
        self.kernel = kernel
        self.clock = clock
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        # Control requests wait apart, so that a backlog of kernel events or routes does not
        # delay an operator's "show": the owner answers them first in every round.
        self.asks: asyncio.Queue[ControlAsked] = asyncio.Queue()
        self.engine: Engine | None = None
        self.latency = {
            "route-to-kernel": Latency(),  # the speaker's timestamp of an UPDATE -> acked
            "local-mac-to-bgp": Latency(),  # kernel event arrival -> command written
        }
        self.metrics = Metrics(lambda: self.engine)
        self.resync = Resync()
        self._refresh_at: float | None = None
        self._reconcile_at: float | None = None
        self.metrics_server: asyncio.AbstractServer | None = None
        self.started = asyncio.Event()  # the engine exists and the socket answers
        self.writes: Writes | None = None  # the kernel writer's thread, once running
        self._yield_at = 0.0  # when the owner next lets other tasks run (YIELD_INTERVAL)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        put = self.inbox.put_nowait

        def written() -> None:  # on the writer's thread
            loop.call_soon_threadsafe(put, KernelWritten())

        writes = self.writes = Writes(self.kernel.apply, written)

        def put_lines(lines: list[Line] | None) -> None:
            if lines is None:
                put(SpeakerClosed())
                return
            for line in lines:
                put(SpeakerLine(line))

        def deliver(lines: list[Line] | None) -> None:
            # One wake-up of the loop per read, not per line: a 1,000-VNI table comes as
            # ~60,000 short lines.
            loop.call_soon_threadsafe(put_lines, lines)

        # Read the speaker from the first moment: ExaBGP's writes to us block its reactor,
        # keepalives included, while we dump the kernel (seconds when it is large).
        self.speaker.start(deliver)
        await self.kernel.start()  # bind before the dump: nothing changes unseen between
        snap = await self.kernel.dump()
        router_id, vtep_ip = resolve(self.cfg, snap.links)
        now = self.clock()
        engine = Engine(self.cfg, router_id=router_id, vtep_ip=vtep_ip, now=now)
        self.engine = engine
        engine.load_snapshot(snap)
        self.speaker.decode_ahead(router_id)
        self.resync.dumped(snap.complete, self.kernel.events_lost, now)
        engine.rd_index = rd_indexes(self.cfg.state_dir, engine.vnis)
        log.info(
            "evpn-agent core started: router-id %s, VTEP %s, VNIs %s",
            router_id,
            vtep_ip,
            vni_ranges(engine.vnis) or "none yet",
        )
        if await self.instance.open(self.ask):  # else a restart's new instance, not in charge
            await self._serve_metrics()
        # Sessions that predate us (a respawn): their up time and what they negotiated.
        self.speaker.ask_sessions()
        # Our whole desired set, bracketed so the speaker drops what a predecessor announced
        # and we no longer want (a MAC that aged out while no core ran).
        self.speaker.begin_sync()
        self.flush(engine)
        self.speaker.end_sync()
        self._refresh_at = now + REFRESH_DELAY
        if self.cfg.reconcile_interval:
            self._reconcile_at = now + self.cfg.reconcile_interval
        watcher = asyncio.create_task(self._watch_kernel())
        if self.sighup:
            reload.on_sighup(self)
        self.started.set()
        try:
            await self._own(engine)
        finally:
            writes.close()  # what was handed to the kernel reaches it
            watcher.cancel()
            self.instance.close()
            if self.metrics_server is not None:
                self.metrics_server.close()
            self.kernel.close()

    async def _serve_metrics(self) -> None:
        if self.cfg.metrics_address:
            try:
                self.metrics_server = await self.metrics.serve(self.cfg.metrics_address)
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", self.cfg.metrics_address, exc)

    async def ask(self, request: dict[str, Any]) -> Any:
        """The control socket's handler: the owner answers, this task only waits."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.asks.put_nowait(ControlAsked(request, reply))
        self.inbox.put_nowait(ControlWaiting())
        return await reply

    async def _watch_kernel(self) -> None:
        async for batch in self.kernel.events():
            self.inbox.put_nowait(KernelChanged(batch, self.clock()))

    # -- the owner -----------------------------------------------------------------------

    def next_deadline(self, engine: Engine) -> float | None:
        times = (
            engine.next_deadline(),
            self._refresh_at,
            self._reconcile_at,
            self.resync.redump_at,
        )
        return min((t for t in times if t is not None), default=None)

    async def _next_item(self, engine: Engine) -> Item | None:
        deadline = self.next_deadline(engine)
        if deadline is None:
            return await self.inbox.get()
        timeout = deadline - self.clock()
        if timeout <= 0:
            return self.inbox.get_nowait() if not self.inbox.empty() else None
        try:
            # asyncio.timeout, not wait_for: wait_for wraps every wait in a task of its own
            async with asyncio.timeout(timeout):
                return await self.inbox.get()
        except TimeoutError:
            return None

    async def _own(self, engine: Engine) -> None:
        router_id = engine.router_id
        while True:
            first = self.inbox.empty()  # nothing queued: this round starts a burst
            item = await self._next_item(engine)
            while not self.asks.empty():
                await self._answer(self.asks.get_nowait(), engine)
            now = self.clock()
            lost = False
            stamps: list[float] = []
            kernel_arrival: float | None = None
            handled = routes = local = 0
            while item is not None:  # KernelWritten only wakes us: settled below
                if isinstance(item, SpeakerLine):
                    events, stamp = self.speaker.decode(item.line, router_id)
                    engine.on_bgp(events, now)
                    routes += route_count(events)
                    if stamp is not None:
                        stamps.append(stamp)
                elif isinstance(item, KernelChanged):
                    if not engine.on_kernel(item.events, now):
                        lost = True
                    routes += len(item.events)
                    local += len(item.events)
                    kernel_arrival = kernel_arrival or item.arrived
                elif isinstance(item, SpeakerClosed):
                    log.info("ExaBGP closed the API channel; core exits, kernel state kept")
                    self.settle(engine)
                    while not self.asks.empty():
                        ask = self.asks.get_nowait()
                        if not ask.reply.done():
                            ask.reply.set_exception(ValueError("the agent core is stopping"))
                    return
                handled += 1
                if time.monotonic() >= self._yield_at:
                    for _ in range(YIELD_ITERATIONS):
                        await asyncio.sleep(0)
                    self._yield_at = time.monotonic() + YIELD_INTERVAL
                if (
                    handled >= MAX_ITEMS_PER_ROUND
                    or routes >= MAX_EVENTS_PER_ROUND
                    or (first and routes - local >= FIRST_ROUND_ROUTES)
                    or local >= MAX_KERNEL_EVENTS_PER_ROUND
                    or self.inbox.empty()
                    or not self.asks.empty()  # answered before the rest of the burst
                ):
                    break
                item = self.inbox.get_nowait()
            self.settle(engine, wait=False)  # if answered: plan from what the kernel took
            if engine.tick(now):
                heap.release_free_memory()  # the path table was built anew after churn
            self._maybe_refresh(engine, now)
            if lost:
                log.warning("netlink events were lost: resynchronising from a full dump")
            periodic = self._reconcile_due(now)
            cpu = time.process_time() if periodic else 0.0
            if lost or periodic or self.resync.due(now):
                await self._resync(engine)
            sent = self.flush(engine)
            if periodic:
                self._pace_reconcile(now, time.process_time() - cpu)
            if stamps and not self.running_writes.hold(stamps):  # else: when written
                self._route_latency(stamps, time.time())
            if sent and kernel_arrival is not None:
                elapsed = self.clock() - kernel_arrival
                self.latency["local-mac-to-bgp"].record(elapsed)
                self.metrics.mac_to_bgp.observe(elapsed)

    def reschedule_reconcile(self, at: float | None) -> None:
        self._reconcile_at = at

    def _reconcile_due(self, now: float) -> bool:
        if self._reconcile_at is None or now < self._reconcile_at:
            return False
        self._reconcile_at = now + self.cfg.reconcile_interval
        return True

    def _pace_reconcile(self, now: float, cost: float) -> None:
        """Stretch the time to the next periodic reconcile so that they take at most
        ``reconcile-budget`` percent of a core: ``cost`` CPU seconds (this one's dump, the
        comparison and its repairs, with whatever else this round did) once per interval."""
        if self._reconcile_at is None:  # turned off meanwhile (a reload)
            return
        interval = paced_interval(self.cfg.reconcile_interval, self.cfg.reconcile_budget, cost)
        self._reconcile_at = now + interval
        log.debug("reconcile took %.3fs of CPU: the next in %.0fs", cost, interval)

    def _maybe_refresh(self, engine: Engine, now: float) -> None:
        """Ask the reflectors to send their tables again, unless we saw the sessions start.

        After a respawn the sessions are up already and nobody replays routes to us. On a
        first start the sessions come up within a moment and bring the full table; a
        refresh then would only make the reflector send much of it twice.
        """
        if self._refresh_at is None or now < self._refresh_at:
            return
        self._refresh_at = None
        if not all(engine.peers.saw_start(peer) for peer in self.instance.peers()):
            self.speaker.ask_refresh()
            engine.refresh_asked(now)

    async def _resync(self, engine: Engine) -> bool:
        """Dump and load the kernel; events that arrive meanwhile wait in the inbox and are
        applied after the load, so nothing learned during the dump is lost."""
        log.debug("reconciling with a full kernel dump")
        with self._decoding_held():
            snap = await self._dump(engine)
            engine.load_snapshot(snap)
            complete = snap.complete
            del snap
            # Planned before routes are decoded again: the comparison's keys (every key
            # of every VNI, ~130,000 at 1,000 VNIs) are garbage after it, and routes made
            # among them would pin their memory as the dump's would.
            self.flush(engine)
        self.resync.dumped(complete, self.kernel.events_lost, self.clock())
        # The dump is garbage now; handed back to the system, or the first reconcile at
        # 1,000 VNIs leaves the core 15 MiB larger for good (measured: 7 MiB smaller).
        heap.release_free_memory()
        return complete

    @contextlib.contextmanager
    def _decoding_held(self) -> Iterator[None]:
        """While the owner holds a kernel dump: routes decoded meanwhile would sit between
        the dump's objects and keep its memory from being reused after it."""
        self.speaker.hold_decoding(True)
        try:
            yield
        finally:
            self.speaker.hold_decoding(False)

    async def _dump(self, engine: Engine) -> KernelSnapshot:
        """A dump newer than every kernel event the engine has not applied yet.

        Events already read are applied first (other items keep their order): applied
        after the dump, a stale one undoes it. In a burst they waited ~25 s behind
        ExaBGP's lines, and 157 "learned" events from before a deletion burst, applied
        after a dump that showed the deletions, announced those MACs again. The local
        MACs the engine knows and the dump lacks are looked up one by one by the kernel.
        """
        others: list[Item] = []
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, KernelChanged):
                engine.on_kernel(item.events, self.clock())  # a loss: we dump anyway
            else:
                others.append(item)
        for item in others:
            self.inbox.put_nowait(item)
        self.settle(engine)  # a dump must hold every write the mirror counts as done
        return await self.kernel.dump(known=engine.view.fdb)

    def prepare(self, engine: Engine) -> None:
        """Before planning: where our entries live, an RD number for every VNI."""
        self.kernel.set_managed(engine.managed())
        if not engine.vnis.keys() <= engine.rd_index.keys():  # in C: it runs every round
            engine.rd_index = rd_indexes(self.cfg.state_dir, engine.vnis)

    @property
    def running_writes(self) -> Writes:
        assert self.writes is not None, "the daemon is not running"
        return self.writes

    def flush(self, engine: Engine) -> int:
        """Hand planned kernel ops to the writer, then send advert changes; returns changes
        sent. The writes go on while the owner takes the next round: planned meanwhile,
        against a mirror that counts them as done, and settled before the next batch."""
        sent = 0
        for _ in range(3):  # applying can make more work (an AddNeigh replacing a binding)
            self.prepare(engine)
            work = engine.take_work()
            if work.ops:
                self.settle(engine)
                self.running_writes.submit(engine, work.ops)
            self.send(work)
            sent += len(work.changes)
            if not engine.pending():
                break
        return sent

    def send(self, work: Work) -> None:
        """The speaker's part of the work: advert changes, then sessions to reset."""
        self.speaker.send(work.changes)
        for peer in work.resets:
            self.speaker.reset_session(peer)

    def settle(self, engine: Engine, *, wait: bool = True) -> list[OpFailure]:
        """Give the engine the kernel's answer for the writes in flight (without ``wait``:
        only if it is there); returns the failures."""
        settled = self.running_writes.settle(engine, wait=wait)
        if settled is None:
            return []
        self._route_latency(settled.stamps, settled.at)
        return settled.failures

    def apply_now(self, engine: Engine, ops: list[Op]) -> list[OpFailure]:
        """Write ``ops`` and wait for the kernel's answer (commands that report it)."""
        self.settle(engine)
        if not ops:
            return []
        self.running_writes.submit(engine, ops)
        return self.settle(engine)

    def _route_latency(self, stamps: list[float], done: float) -> None:
        for stamp in stamps:
            self.latency["route-to-kernel"].record(done - stamp)
            self.metrics.route_to_kernel.observe(max(done - stamp, 0.0))

    # -- control requests ----------------------------------------------------------------

    async def _answer(self, ask: ControlAsked, engine: Engine) -> None:
        if ask.reply.done():
            return  # the client went away
        self.settle(engine)  # answers and commands see the kernel's answer, not a guess
        try:
            ask.reply.set_result(await self._execute(ask.request, engine))
        except (ValueError, KeyError, TypeError) as exc:
            ask.reply.set_exception(ValueError(str(exc)))

    async def _execute(self, request: dict[str, Any], engine: Engine) -> Any:
        command = request.get("command")
        if command in answers.READS:
            return answers.read(engine, request, self.clock(), self.latency)
        if command == "clear duplicate":
            vni = answers.check_vni(engine, request)
            cleared = engine.clear_duplicate(vni, request.get("mac"))
            self.flush(engine)
            return [{"vni": k.vni, "mac": k.mac} for k in cleared]
        if command == "clear session":
            return self._reset_session(engine, request.get("peer"))
        if command == "reconcile":
            return await self._reconcile(engine, dry_run=bool(request.get("dry_run")))
        if command == "reload":
            path = request.get("config") or self.config_path
            if not isinstance(path, str):
                raise ValueError("the agent does not know its configuration file: name it")
            return await reload.reload(self, engine, path, dry_run=bool(request.get("dry_run")))
        if command == "instance":
            return self.instance.describe()
        if command == "show memory":
            return answers.memory(engine, self.instance.speaker_pid())
        if command == "set-peers":
            return self.instance.set_peers(self.cfg, engine.router_id, request.get("peers"))
        if command == "announce-main-pid":
            return self.instance.announce_main()
        if command == "take-over":
            described = await self.instance.take_over()
            if self.metrics_server is None:
                await self._serve_metrics()
            return described
        raise ValueError(f"unknown command {command!r}")

    def _reset_session(self, engine: Engine, peer: object) -> dict[str, Any]:
        """An operator's reset of one session (what FRR's ``clear bgp`` does)."""
        known = [rr.address for rr in self.cfg.route_reflectors]
        if peer not in known:
            raise ValueError(f"no BGP peer {peer!r} here; the peers: {', '.join(known)}")
        state = engine.peers.get(str(peer))
        was = "Established" if state is not None and state.up else "not established"
        log.warning("resetting the BGP session with %s, as asked (it was %s)", peer, was)
        self.speaker.reset_session(str(peer))
        return {"peer": peer, "was": was}

    async def _reconcile(self, engine: Engine, *, dry_run: bool) -> dict[str, Any]:
        """Dump the kernel and plan against it; apply unless ``dry_run`` (then the plan is
        a copy of the engine's, and goes with the dump)."""
        failed: list[str] = []
        if dry_run:
            with self._decoding_held():
                snap = await self._dump(engine)
                trial = copy.deepcopy(engine)
                trial.load_snapshot(snap)
            complete = snap.complete
            ops = trial.take_work().ops
            del snap, trial
            heap.release_free_memory()
        else:
            complete = await self._resync(engine)
            work = engine.take_work()
            ops = work.ops
            failures = self.apply_now(engine, ops)
            failed = [f"{f.op}: {f.message}" for f in failures]
            self.send(work)
            self.flush(engine)
        return {
            "dryRun": dry_run,
            "complete": complete,
            "sweeping": engine.peers.sweep_ok,
            "ops": [describe(op) for op in ops],
            "failed": failed,
        }
