"""Our speaker processes in boxes: the launcher (ExaBGP), evpn-agent, and the peer script."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evpn_agent.speaker.process import DAEMON_MODULE, LAUNCHER_MODULE
from lab.fabric.boxes import Box
from lab.fabric.environment import PYTHON
from lab.fabric.procs import children, cmdline, pid_alive, stop_pids
from lab.fabric.wait import wait_until

# The agent's modules, as the package names them. The core is ExaBGP's API process and is
# found by AGENT_CORE_MODULE in its command line (agent_core_pid).
AGENT_CLI_MODULE = "evpn_agent.cli"
AGENT_CORE_MODULE = DAEMON_MODULE
SPEAKER_MODULE = LAUNCHER_MODULE


def agent_cli_argv(socket: Path | str, *args: str) -> list[str]:
    """``evpn-agent ARGS --socket S`` as this checkout's Python runs it."""
    return [PYTHON, "-m", AGENT_CLI_MODULE, *args, "--socket", str(socket)]


def agent_core_pid(exabgp_pid: int) -> int | None:
    """PID of the agent core among ``exabgp_pid``'s descendants, if it runs."""
    return next((pid for pid in children(exabgp_pid) if AGENT_CORE_MODULE in cmdline(pid)), None)


@dataclass
class Speaker:
    """Our launcher (ExaBGP + EVPN commands) running in a box, tracked by PID."""

    box: Box
    process: subprocess.Popen[bytes]
    config: Path
    stderr_path: Path
    stdout_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM ExaBGP (it stops its API processes), then clean up any leftovers."""
        if self.process.poll() is None:
            descendants = children(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            stop_pids([pid for pid in descendants if pid_alive(pid)], timeout=2)

    def logs(self) -> str:
        return f"--- {self.stderr_path}\n{self.stderr_path.read_text()[-6000:]}"


@dataclass
class AgentProcess(Speaker):
    """``evpn-agent run`` (ExaBGP through our launcher, the agent core under it)."""

    socket: Path = Path()

    def cli(self, *args: str, check: bool = True) -> str:
        """``evpn-agent ARGS --socket S`` inside the box."""
        return self.box.exec(*agent_cli_argv(self.socket, *args), check=check)

    def cli_argv(self, *args: str) -> str:
        """The shell words of ``evpn-agent ARGS --socket S`` (for checking exit codes)."""
        return shlex.join(agent_cli_argv(self.socket, *args))

    def show_vni(self) -> list[dict[str, Any]]:
        """``show vni --json`` rows (the CLI prints FRR's map keyed by VNI)."""
        by_vni: dict[str, dict[str, Any]] = json.loads(self.cli("show", "vni", "--json"))
        return list(by_vni.values())

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the core answers on its control socket. ExaBGP may bring the session up
        before the core has bound netlink, dumped the kernel and opened the socket."""
        from evpn_agent import control

        def answers() -> bool:
            if not self.running():
                raise RuntimeError(f"evpn-agent in {self.box.name} exited\n{self.logs()}")
            control.request(str(self.socket), "show peers", timeout=2.0)
            return True

        wait_until(
            answers,
            timeout,
            f"evpn-agent in {self.box.name} to answer",
            retry_on=(control.ControlError,),
        )

    def core_pid(self) -> int | None:
        """PID of the agent core (ExaBGP's API process), if it runs."""
        return agent_core_pid(self.pid)


@dataclass
class PeerScript:
    """tests/speaker_peer.py as the speaker's API process: records every line ExaBGP
    sends it, sends ``on_up`` on each session up, and forwards lines written to its FIFO.
    """

    speaker: Speaker
    record: Path
    fifo: Path

    def send(self, *lines: str, timeout: float = 10.0) -> None:
        """Hand command lines to the peer script, which writes them to ExaBGP."""
        data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()

        deadline = time.monotonic() + timeout
        while True:
            try:
                # O_NONBLOCK: fails with ENXIO until the script has the FIFO open to read
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if time.monotonic() >= deadline or not self.speaker.running():
                    raise
                time.sleep(0.02)
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    def lines(self) -> list[str]:
        """Every line received so far, as ExaBGP wrote it (JSON, ``done``, ``error``)."""
        try:
            return self.record.read_text().splitlines()
        except FileNotFoundError:
            return []

    def messages(self) -> list[dict[str, Any]]:
        """The JSON lines received so far, decoded."""
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    def acks(self) -> list[str]:
        return [line for line in self.lines() if line in ("done", "error")]
