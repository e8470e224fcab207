"""FRR's zebra and bgpd of one box, run without systemd and stopped by PID."""

from __future__ import annotations

import functools
import json
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.fabric.environment import FRR_DIR, VTYSH
from lab.fabric.frr_config import render_zebra_config
from lab.fabric.netns import Netns
from lab.fabric.procs import cmdline, pid_alive, run, stop_pids
from lab.fabric.wait import wait_until

# zebra's netlink buffer as Debian's /etc/frr/daemons sets it (-s 90000000):
# without it, zebra overruns and exits under a 100k-MAC burst.
ZEBRA_ARGS = ("-s", "90000000")


@dataclass
class Frr:
    """zebra + bgpd of one box, started without systemd (state dir owned by frr)."""

    netns: Netns
    directory: Path
    # argv put before each daemon's command: a benchmark's CPU group (lab.fabric.cpu_groups)
    launch_prefix: Sequence[str] = ()

    @property
    def vty_dir(self) -> Path:
        return self.directory / "vty"

    def pidfile(self, daemon: str) -> Path:
        return self.directory / f"{daemon}.pid"

    def start(
        self, bgpd_config: str, hostname: str, *, zebra_args: Sequence[str] = ZEBRA_ARGS
    ) -> None:
        """Write the configs and start zebra, then bgpd; ``zebra_args`` go to zebra only."""
        frr_user = pwd.getpwnam("frr")
        self.vty_dir.mkdir(parents=True, exist_ok=True)
        (self.directory / "zebra.conf").write_text(
            render_zebra_config(hostname, self.directory / "zebra.log")
        )
        (self.directory / "bgpd.conf").write_text(bgpd_config)
        for path in (self.directory, self.vty_dir, *self.directory.iterdir()):
            os.chown(path, frr_user.pw_uid, frr_user.pw_gid)
        zserv = self.directory / "zserv.api"
        common = [
            "-d",
            "-F",
            "datacenter",
            "-z",
            str(zserv),
            "--vty_socket",
            str(self.vty_dir),
            "-P",
            "0",  # no vty TCP port: vtysh uses the unix sockets
        ]
        for daemon in ("zebra", "bgpd"):
            extra = list(zebra_args) if daemon == "zebra" else []
            argv = [
                str(FRR_DIR / daemon),
                *common,
                *extra,
                "-f",
                str(self.directory / f"{daemon}.conf"),
                "-i",
                str(self.pidfile(daemon)),
            ]
            self.netns.exec(*argv, prefix=self.launch_prefix)
            wait_until(
                functools.partial(self._started, daemon),
                10,
                f"{daemon} in {self.netns.name} to start (log in {self.directory})",
            )

    def _started(self, daemon: str) -> bool:
        return (self.vty_dir / f"{daemon}.vty").exists() and self.pid(daemon) is not None

    def pid(self, daemon: str) -> int | None:
        """The daemon's PID if its pidfile names a live process of ours."""
        try:
            pid = int(self.pidfile(daemon).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # guard against a recycled PID: the process must be the one we started
        if pid_alive(pid) and str(self.pidfile(daemon)) in cmdline(pid):
            return pid
        return None

    def stop(self) -> None:
        stop_pids([pid for d in ("bgpd", "zebra") if (pid := self.pid(d)) is not None])

    def vtysh(self, *commands: str, check: bool = True) -> str:
        argv = [VTYSH, "--vty_socket", str(self.vty_dir)]
        for command in commands:
            argv += ["-c", command]
        return run(argv, check=check)

    def vtysh_json(self, command: str) -> Any:
        return json.loads(self.vtysh(command) or "{}")

    def logs(self) -> str:
        parts = []
        for name in ("zebra.log", "bgpd.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text()[-4000:]}")
        return "\n".join(parts)
