"""This instance's place on the host: its control socket and metrics address, its ExaBGP
(PID, configuration file, BGP peers), and the handover of ``evpn-agent restart``.

A new instance started by ``restart`` (``run`` in handover mode) runs next to the old one
for a few seconds. While the old one answers on the control socket, the new one answers on
``SOCKET.handover`` and serves no metrics; ``take-over`` (sent once the old one is gone)
moves it to the control socket and the metrics address. A core respawned later finds
nobody answering on the control socket and serves it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import evpn_agent
from evpn_agent import code, control
from evpn_agent.daemon import notify
from evpn_agent.model import Config
from evpn_agent.speaker.process import CONF_ENV, configured_peers, exabgp_config, set_peers

log = logging.getLogger(__name__)

HANDOVER_ENV = "EVPN_AGENT_HANDOVER"  # set by ``run --handover`` for its core
HANDOVER_SUFFIX = ".handover"


def handover_socket(control_socket: str) -> str:
    """Where a new instance answers until it takes over."""
    return control_socket + HANDOVER_SUFFIX


def answers(path: str) -> bool:
    """Someone listens on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


class Instance:
    def __init__(
        self,
        cfg: Config,
        config_path: str | None = None,
        *,
        environ: dict[str, str] | None = None,
        speaker_pid: Callable[[], int] = os.getppid,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.cfg = cfg
        self.config_path = config_path
        self.conf_file = env.get(CONF_ENV) or str(Path(cfg.state_dir) / "exabgp.conf")
        self.handover = env.get(HANDOVER_ENV) == "1"
        self.speaker_pid = speaker_pid
        self._handler: control.Handler | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self.socket_path = cfg.control_socket

    def peers(self) -> list[str]:
        """The peers in our ExaBGP's configuration (all configured ones if unreadable)."""
        try:
            return configured_peers(Path(self.conf_file).read_text())
        except OSError:
            return [rr.address for rr in self.cfg.route_reflectors]  # a fake speaker

    async def open(self, handler: control.Handler) -> bool:
        """Serve the control socket (or, handing over, the side socket); True if this
        instance is in charge (it then serves the metrics too)."""
        self._handler = handler
        if self.handover and answers(self.cfg.control_socket):
            self.socket_path = handover_socket(self.cfg.control_socket)
            log.info("handover: the old instance still runs; answering on %s", self.socket_path)
            self._servers.append(await control.serve(self.socket_path, handler))
            return False
        await self._serve_main()
        notify.notify(notify.message(main_pid=self.speaker_pid(), ready=True))
        return True

    async def _serve_main(self) -> None:
        assert self._handler is not None
        self.socket_path = self.cfg.control_socket
        self._servers.append(await control.serve(self.socket_path, self._handler))

    async def take_over(self) -> dict[str, Any]:
        """The old instance is gone: serve the control socket (the caller: the metrics)."""
        if self.socket_path == self.cfg.control_socket:
            return self.describe()
        if answers(self.cfg.control_socket):
            raise ValueError("the old instance still answers on the control socket")
        side, self._servers = self._servers, []
        await self._serve_main()
        for server in side:
            server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handover_socket(self.cfg.control_socket))
        log.info("handover: this instance now answers on %s", self.socket_path)
        return self.describe()

    def announce_main(self) -> dict[str, Any]:
        """Tell systemd that our ExaBGP is the unit's main process (before the old exits)."""
        sent = notify.notify(notify.message(main_pid=self.speaker_pid(), ready=True))
        return {**self.describe(), "notified": sent}

    def set_peers(self, cfg: Config, router_id: str, peers: Sequence[str] | None) -> dict[str, Any]:
        """Make our ExaBGP peer with ``peers`` (None: every reflector ``cfg`` names; an
        added peer gets our routes when its session comes up, as after any session up)."""
        if self.config_path is None:
            raise ValueError("this core does not know its configuration file")
        wanted = [rr.address for rr in cfg.route_reflectors] if peers is None else peers
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise ValueError("peers must be a list of addresses")
        if not wanted:
            raise ValueError("at least one peer is needed")
        text = exabgp_config(cfg, router_id, self.config_path, set(wanted))
        before = self.peers()
        set_peers(self.conf_file, text, self.speaker_pid())
        now = configured_peers(text)
        added = [p for p in now if p not in before]
        removed = [p for p in before if p not in now]
        log.info(
            "BGP peers set to %s (added %s, removed %s)",
            ", ".join(now), ", ".join(added) or "none", ", ".join(removed) or "none",
        )  # fmt: skip
        return {"peers": now, "added": added, "removed": removed}

    def describe(self) -> dict[str, Any]:
        return {
            "corePid": os.getpid(),
            "speakerPid": self.speaker_pid(),
            "exabgpConf": self.conf_file,
            "peers": self.peers(),
            "socket": self.socket_path,
            "handover": self.socket_path != self.cfg.control_socket,
            "code": os.path.dirname(os.path.abspath(evpn_agent.__file__)),
            "version": evpn_agent.__version__,
            # the ExaBGP launcher's (a fake speaker: ours)
            "codeHash": os.environ.get(code.ENV) or code.fingerprint(),
        }

    def close(self) -> None:
        # Closing does not unlink the socket file (a successor may have bound it already).
        for server in self._servers:
            server.close()
