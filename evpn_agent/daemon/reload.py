"""``evpn-agent reload`` and SIGHUP in the daemon: read and validate the file, plan with
``core.reconfigure``, apply the plan to the engine and to the edges the daemon owns
(logging, the metrics socket, the reconcile timer), then write what the change planned.

Runs in the owner task (a control request, or SIGHUP queued as one), so no input is
handled while the configuration changes. A refused or invalid file changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from evpn_agent.config import ConfigError, check_file
from evpn_agent.core import reconfigure
from evpn_agent.core.engine import Engine
from evpn_agent.logs import setup_logging
from evpn_agent.model import Config, describe

if TYPE_CHECKING:
    from evpn_agent.daemon.dispatcher import Daemon

log = logging.getLogger(__name__)


async def reload(daemon: Daemon, engine: Engine, path: str, *, dry_run: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"source": path, "dryRun": dry_run, "applied": False}
    try:
        new = check_file(path)
    except ConfigError as exc:
        return {**result, "valid": False, "problems": exc.problems}
    running = reconfigure.Running(engine.router_id, engine.vtep_ip)
    plan = reconfigure.diff(daemon.cfg, new, running)
    result.update(
        valid=True,
        changes=[{"key": c.key, "old": c.old, "new": c.new} for c in plan.changes],
        refused=[{"key": r.key, "reason": r.reason} for r in plan.refused],
        ops=[],
        announces=0,
        withdraws=0,
        failed=[],
    )
    if not plan.applicable or not plan.changes:
        return result
    daemon.flush(engine)  # work pending from before is not this reload's
    if dry_run:
        trial = copy.deepcopy(engine)
        with _quiet():  # the trial's "VNI removed" lines would read as if it happened
            reconfigure.apply(trial, new, plan)
            work = trial.take_work()
        _count(result, work.ops, [c.withdraw for c in work.changes])
        return result
    reconfigure.apply(engine, new, plan)
    result["failed"] = await _edges(daemon, engine, new, plan)
    daemon.cfg = new
    daemon.prepare(engine)  # a VNI added needs its RD number before it is announced
    work = engine.take_work()
    failures = daemon.apply_now(engine, work.ops)
    daemon.send(work)
    result["failed"] += [f"{f.op}: {f.message}" for f in failures]
    _count(result, work.ops, [c.withdraw for c in work.changes])
    log.debug("reload wrote %d kernel change(s), sent %d advert change(s)",
              len(work.ops), len(work.changes))  # fmt: skip
    daemon.flush(engine)  # what applying made more
    result["applied"] = True
    log.info(
        "configuration reloaded from %s: %s",
        path,
        "; ".join(f"{c.key} {c.old} -> {c.new}" for c in plan.changes),
    )
    return result


def _count(result: dict[str, Any], ops: list[Any], withdraws: list[bool]) -> None:
    result["ops"] = [describe(op) for op in ops]
    result["announces"] = withdraws.count(False)
    result["withdraws"] = withdraws.count(True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


async def _edges(daemon: Daemon, engine: Engine, new: Config, plan: reconfigure.Plan) -> list[str]:
    """The daemon's own part of the plan; returns what could not be done (and stays)."""
    failed: list[str] = []
    if plan.touches("log-level", "log-destination"):
        try:
            setup_logging(new.log_level, new.log_destination)
        except OSError as exc:
            failed.append(f"log-destination {new.log_destination}: {exc}")
    if plan.touches("route-reflectors"):
        try:
            daemon.instance.set_peers(new, engine.router_id, None)
        except (OSError, ValueError) as exc:
            failed.append(f"route-reflectors: {exc}")
    if plan.touches("reconcile-interval"):
        interval = new.reconcile_interval
        daemon.reschedule_reconcile(daemon.clock() + interval if interval else None)
    if plan.touches("metrics-address"):
        if daemon.metrics_server is not None:
            daemon.metrics_server.close()
            await daemon.metrics_server.wait_closed()
            daemon.metrics_server = None
        if new.metrics_address:
            try:
                daemon.metrics_server = await daemon.metrics.serve(new.metrics_address)
            except OSError as exc:
                log.error("cannot serve metrics on %s: %s", new.metrics_address, exc)
                failed.append(f"metrics-address {new.metrics_address}: {exc}")
    return failed


_held: list[int] = []  # SIGHUPs that came before the daemon could reload


def hold_sighup() -> None:
    """From the first moment of the process: remember a SIGHUP until ``on_sighup`` takes
    over. Its default action would end the core (ExaBGP respawns it, a needless restart)."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _held.append(signum))


def on_sighup(daemon: Daemon) -> None:
    """SIGHUP (forwarded by our ExaBGP launcher, or sent to us) reloads the file we run
    from, as ``evpn-agent reload`` does; the outcome goes to the log."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def run() -> None:
        try:
            result = await daemon.ask({"command": "reload"})
        except ValueError as exc:
            log.error("reload on SIGHUP failed: %s", exc)
            return
        log_outcome(result, "SIGHUP")

    def hup() -> None:
        task = loop.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)
    if _held:  # the file may have changed after we read it: read it again
        _held.clear()
        hup()


def log_outcome(result: dict[str, Any], why: str) -> None:
    source = result["source"]
    if not result.get("valid"):
        for problem in result["problems"]:
            log.error("reload (%s) refused: %s: %s", why, source, problem)
    elif result["refused"]:
        for refusal in result["refused"]:
            log.error("reload (%s) refused: key '%s': %s", why, refusal["key"], refusal["reason"])
    elif not result["changes"]:
        log.info("reload (%s): %s has no changes", why, source)
