"""Starting ExaBGP for ``evpn-agent run``: its configuration from ours, and the exec of our
launcher, which runs the daemon as ExaBGP's API process."""

from __future__ import annotations

import os
import sys

from evpn_agent.model import Config
from evpn_agent.speaker.conf import PeerSpec, render

DAEMON_MODULE = "evpn_agent.daemon"  # what ExaBGP runs (and respawns) as its API process
LAUNCHER_MODULE = "evpn_agent.speaker"  # ExaBGP's main, with the EVPN commands registered


def exabgp_config(cfg: Config, router_id: str, config_path: str) -> str:
    """The ExaBGP configuration for ``cfg`` (raises ValueError on what it cannot render)."""
    return render(
        router_id=router_id,
        local_as=cfg.local_as,
        local_address=cfg.local_address,
        peers=[
            PeerSpec(rr.address, rr.password, rr.hold_time, rr.port, rr.passive)
            for rr in cfg.route_reflectors
        ],
        process_argv=[
            sys.executable, "-m", DAEMON_MODULE, "--config", os.path.abspath(config_path)
        ],
    )  # fmt: skip


def exec_exabgp(conf_file: str, log_destination: str) -> None:
    """Replace this process with ExaBGP (through our launcher); ExaBGP logs where we do."""
    os.environ.setdefault(
        "exabgp_log_destination",
        log_destination[5:] if log_destination.startswith("file:") else log_destination,
    )
    os.execv(sys.executable, [sys.executable, "-m", LAUNCHER_MODULE, conf_file])
