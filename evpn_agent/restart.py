"""``evpn-agent restart``: replace every process of the running instance by new ones running
the installed code and the given configuration, losing no traffic where the reflectors
allow it.

With two or more route reflectors, a handover keeps our routes in the fabric throughout:
1. the old instance keeps one reflector (A) and drops the others (its ExaBGP reloads a
   configuration without them: their sessions close for good, A's stays up);
2. the new instance starts with the others only, advertises its table (from the kernel's
   local MACs and VNIs), receives theirs and keeps the kernel entries the old one made;
3. once its tables are complete and ``settle`` seconds have passed for the reflectors to
   pass our routes on (FRR batches updates to a new peer for about a second), the unit's
   main PID moves to the new ExaBGP and the old instance is stopped: the other VTEPs fall
   back to the copies of our routes that the new sessions brought;
4. the new instance takes the control socket and metrics address over and adds A.

With one reflector (or peers that cannot be split that way), the old instance stops and the
new one starts at once: the reflector withdraws our routes in between (see the README).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evpn_agent import control
from evpn_agent.config import Config
from evpn_agent.daemon import notify
from evpn_agent.daemon.instance import handover_socket
from evpn_agent.speaker.process import CONF_NAMES, process_gone

log = logging.getLogger(__name__)

SETTLE = 3.0  # seconds after the new sessions' tables are complete (FRR: ~1.05 s batching)
START_TIMEOUT = 60.0  # for the new instance's sessions and tables
STOP_TIMEOUT = 20.0  # for the old instance's processes (then SIGKILL)


class RestartError(Exception):
    """The restart could not be done; the message says what runs now."""


@dataclass
class Plan:
    """Which reflectors each instance peers with during the handover."""

    keep: str  # the old instance keeps this one until it stops
    start: list[str]  # the new instance starts with these


@dataclass
class Outcome:
    mode: str  # "handover" or "stop-start"
    old_pids: list[int]
    new_pid: int
    plan: Plan | None = None
    steps: list[tuple[str, float]] = field(default_factory=list)


def plan(cfg: Config, old: dict[str, Any], old_peers: Sequence[dict[str, Any]]) -> Plan | None:
    """A handover, or None when it cannot be done (one reflector, nothing established)."""
    established = [p["peer"] for p in old_peers if p.get("state") == "Established"]
    new_reflectors = [rr.address for rr in cfg.route_reflectors]
    for keep in established:
        if keep not in old["peers"]:
            continue
        start = [rr for rr in new_reflectors if rr != keep]
        if start:
            return Plan(keep, start)
    return None


def _poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except control.ControlError:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise RestartError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _cgroup(pid: int | str) -> str | None:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    # systemd's hierarchy: "0::PATH" (cgroup v2) or "N:name=systemd:PATH" (v1)
    paths = {fields[1]: fields[2] for fields in (line.split(":", 2) for line in lines)}
    return paths.get("name=systemd", paths.get(""))


@dataclass
class Unit:
    """The systemd unit the old instance runs in, when this command runs outside it (from
    a shell): the new instance joins the unit's cgroup and notifies its socket, so that
    systemd follows the main PID to it."""

    cgroup: str
    notify_socket: str | None

    def env(self) -> dict[str, str]:
        return {notify.NOTIFY_ENV: self.notify_socket} if self.notify_socket else {}

    def adopt(self, pid: int) -> None:
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd"):  # cgroup v2, v1
            procs = Path(root + self.cgroup) / "cgroup.procs"
            if procs.exists():
                procs.write_text(f"{pid}\n")
                return
        raise RestartError(f"cannot move the new instance into {self.cgroup}")


def unit_of(speaker_pid: int) -> Unit | None:
    """The old instance's systemd unit, if it runs in one and we do not."""
    theirs, ours = _cgroup(speaker_pid), _cgroup("self")
    if not theirs or theirs == ours or not theirs.rsplit("/", 1)[-1].endswith(".service"):
        return None
    try:
        environ = Path(f"/proc/{speaker_pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []
    prefix = f"{notify.NOTIFY_ENV}=".encode()
    socket = next((v[len(prefix) :].decode() for v in environ if v.startswith(prefix)), None)
    return Unit(theirs, socket)


def _stdio_of(pid: int) -> list[int | None]:
    """The old ExaBGP's stdout and stderr reopened for appending, so that the new instance
    logs where the old one did (a file or pipe); None where that is not possible (a socket,
    e.g. the journal's: the new instance then inherits ours, which systemd also set)."""
    fds: list[int | None] = []
    for fd in (1, 2):
        try:
            fds.append(os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_APPEND))
        except OSError:
            fds.append(None)
    return fds


def _spawn(argv: list[str], stdio_pid: int, unit: Unit | None) -> subprocess.Popen[bytes]:
    out, err = _stdio_of(stdio_pid)
    try:
        new = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # outlives this command and its terminal
            env={**os.environ, **(unit.env() if unit else {})},
        )
        if unit is not None:  # before it starts ExaBGP, whose children inherit the cgroup
            unit.adopt(new.pid)
        return new
    finally:
        for fd in (out, err):
            if fd is not None:
                os.close(fd)


def _run_argv(config_path: str, *extra: str) -> list[str]:
    # this interpreter's evpn-agent: the installed code (an upgrade = install, then restart)
    return [sys.executable, "-m", "evpn_agent.cli", "run", "--config", config_path, *extra]


def _stop(pids: Sequence[int], timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pids[0], signal.SIGTERM)  # ExaBGP closes its sessions and stops the core
    try:
        _poll("the old instance to exit", lambda: all(process_gone(p) for p in pids), timeout)
    except RestartError:
        for pid in pids:
            if not process_gone(pid):
                log.warning("old process %d did not exit: killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _poll("the old instance to die", lambda: all(process_gone(p) for p in pids), 5)


@contextlib.contextmanager
def _one_at_a_time(control_socket: str) -> Iterator[None]:
    """Two restarts at once would hand over to each other's half-started instance. The
    lock lies next to the control socket, whose directory the running agent made."""
    path = f"{control_socket}.restart-lock"
    try:
        lock = open(path, "w")  # noqa: SIM115 -- held for the whole restart
    except OSError as exc:
        raise RestartError(f"cannot take the restart lock {path}: {exc}") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RestartError("another 'evpn-agent restart' is running") from None
        yield


def restart(
    cfg: Config,
    config_path: str,
    **options: Any,
) -> Outcome:
    """Replace the running instance (found on ``cfg``'s control socket) by a new one;
    ``options`` as :func:`_replace`. One restart at a time per control socket."""
    with _one_at_a_time(cfg.control_socket):
        return _replace(cfg, config_path, **options)


def _replace(
    cfg: Config,
    config_path: str,
    *,
    handover: bool = True,
    settle: float = SETTLE,
    timeout: float = START_TIMEOUT,
    say: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """The restart itself (see the module's description)."""
    main_socket = cfg.control_socket
    config_path = os.path.abspath(config_path)
    try:
        old = control.request(main_socket, "instance", timeout=10)
        old_peers = control.request(main_socket, "show peers", timeout=10)
    except control.ControlError as exc:
        raise RestartError(f"{exc} (start it with 'evpn-agent run')") from None
    old_pids = [old["speakerPid"], old["corePid"]]
    unit = unit_of(old["speakerPid"])
    started = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(text: str) -> None:
        steps.append((text, round(time.monotonic() - started, 3)))
        say(text)

    passive = [rr.address for rr in cfg.route_reflectors if rr.passive]
    chosen = plan(cfg, old, old_peers) if handover else None
    if handover and passive:
        step(
            f"no handover: passive peers ({', '.join(passive)}) would need both instances "
            "listening on the same port"
        )
        chosen = None
    elif handover and chosen is None:
        step("no handover: it needs two route reflectors, one of them established")
    if chosen is None:
        return _stop_start(cfg, config_path, old_pids, unit, step, timeout, steps)

    conf_file = old["exabgpConf"]
    other = CONF_NAMES[1] if os.path.basename(conf_file) == CONF_NAMES[0] else CONF_NAMES[0]
    new_conf = str(Path(cfg.state_dir) / other)
    control.request(main_socket, "set-peers", peers=[chosen.keep])
    step(f"old instance keeps {chosen.keep} only")
    dropped = [p for p in old["peers"] if p != chosen.keep]

    def dropped_down() -> bool:
        rows = control.request(main_socket, "show peers", timeout=5)
        return all(r["state"] != "Established" for r in rows if r["peer"] in dropped)

    try:
        _poll(f"the old instance to close {', '.join(dropped)}", dropped_down, 20)
    except RestartError as exc:
        _abort(None, main_socket)
        raise RestartError(f"{exc}; the old instance was given all its peers back") from None
    side_socket = handover_socket(main_socket)
    peer_args = [word for peer in chosen.start for word in ("--peer", peer)]
    argv = _run_argv(config_path, "--handover", "--exabgp-conf", new_conf, *peer_args)
    new = _spawn(argv, old["speakerPid"], unit)
    step(f"new instance {new.pid} started with {', '.join(chosen.start)}")

    def new_ready() -> bool:
        if new.poll() is not None:
            raise RestartError(f"the new instance exited with status {new.returncode}")
        rows = control.request(side_socket, "show peers", timeout=5)
        mine = [r for r in rows if r["peer"] in chosen.start]
        return bool(mine) and all(r["state"] == "Established" and r["tableComplete"] for r in mine)

    try:
        _poll("the new instance's sessions and tables", new_ready, timeout, interval=0.1)
    except RestartError as exc:
        _abort(new, main_socket)
        raise RestartError(
            f"{exc}; the old instance stays in charge with all its peers (the new one logs "
            "where the old one does)"
        ) from None
    step("new instance established, tables complete")
    time.sleep(settle)  # the reflectors pass our routes on to the other VTEPs
    control.request(side_socket, "announce-main-pid")
    _stop(old_pids, STOP_TIMEOUT)
    step("old instance gone")
    control.request(side_socket, "take-over")
    control.request(main_socket, "set-peers", peers=None)
    step(f"new instance took over {main_socket} and added {chosen.keep}")
    return Outcome("handover", old_pids, new.pid, chosen, steps)


def _abort(new: subprocess.Popen[bytes] | None, main_socket: str) -> None:
    """Stop the new instance; give the old one its peers back."""
    if new is not None and new.poll() is None:
        new.terminate()
        try:
            new.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            new.kill()
    try:
        control.request(main_socket, "set-peers", peers=None)
    except control.ControlError as exc:
        log.error("cannot give the old instance its peers back: %s", exc)


def _stop_start(
    cfg: Config,
    config_path: str,
    old_pids: list[int],
    unit: Unit | None,
    step: Callable[[str], None],
    timeout: float,
    steps: list[tuple[str, float]],
) -> Outcome:
    """The new ``run`` starts, waits for the old instance to be gone, then starts ExaBGP.
    It exists before the old one stops, so systemd's main PID can move to it first."""
    argv = _run_argv(config_path, *[w for pid in old_pids for w in ("--after-pid", str(pid))])
    new = _spawn(argv, old_pids[0], unit)
    notify.notify(notify.message(main_pid=new.pid), {**os.environ, **(unit.env() if unit else {})})
    _stop(old_pids, STOP_TIMEOUT)
    step("old instance gone")
    _poll(
        "the new instance to answer",
        lambda: new.poll() is None and control.request(cfg.control_socket, "instance", timeout=5),
        timeout,
    )
    step(f"new instance {new.pid} answers on {cfg.control_socket}")
    return Outcome("stop-start", old_pids, new.pid, None, steps)
