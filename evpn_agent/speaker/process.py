"""Starting ExaBGP for ``evpn-agent run``: its configuration from ours, and the exec of our
launcher, which runs the daemon as ExaBGP's API process. Changing the peers of a running
ExaBGP: rewrite its configuration and make it reload (ExaBGP keeps the sessions of the
neighbors whose definition did not change)."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Collection

from evpn_agent.model import Config
from evpn_agent.speaker.conf import PeerSpec, render

DAEMON_MODULE = "evpn_agent.daemon"  # what ExaBGP runs (and respawns) as its API process
LAUNCHER_MODULE = "evpn_agent.speaker"  # ExaBGP's main, with the EVPN commands registered
# Set by ``run`` for the daemon (ExaBGP hands its environment to its API process): the
# configuration file this ExaBGP reads, so that the daemon can rewrite it to change peers.
CONF_ENV = "EVPN_AGENT_EXABGP_CONF"
CONF_NAMES = ("exabgp.conf", "exabgp.next.conf")  # a handover alternates between the two
# ExaBGP 5.0.15 (reactor/interrupt.py): SIGUSR1 reloads the configuration and starts only
# API processes that are new; SIGUSR2 would restart them all (our core too).
RELOAD_SIGNAL = signal.SIGUSR1

# Set by ``run --after-pid`` (a restart without handover): the launcher starts ExaBGP only
# once these processes (the old instance) are gone, everything else being ready by then.
AFTER_PIDS_ENV = "EVPN_AGENT_AFTER_PIDS"

_NEIGHBOR = re.compile(r"^neighbor (\S+) \{$", re.MULTILINE)


def exabgp_config(
    cfg: Config, router_id: str, config_path: str, peers: Collection[str] | None = None
) -> str:
    """The ExaBGP configuration for ``cfg`` (raises ValueError on what it cannot render).

    ``peers``: only these route reflectors (addresses as in ``cfg``), default all of them.
    """
    reflectors = [rr for rr in cfg.route_reflectors if peers is None or rr.address in peers]
    if peers is not None and len(reflectors) != len(set(peers)):
        known = sorted(rr.address for rr in cfg.route_reflectors)
        unknown = sorted(set(peers) - set(known))
        raise ValueError(f"not a configured route reflector: {', '.join(unknown)}")
    return render(
        router_id=router_id,
        local_as=cfg.local_as,
        local_address=cfg.local_address,
        peers=[
            PeerSpec(rr.address, rr.password, rr.hold_time, rr.port, rr.passive)
            for rr in reflectors
        ],
        process_argv=[
            sys.executable, "-m", DAEMON_MODULE, "--config", os.path.abspath(config_path)
        ],
    )  # fmt: skip


def configured_peers(text: str) -> list[str]:
    """The neighbor addresses of a rendered ExaBGP configuration."""
    return _NEIGHBOR.findall(text)


def set_peers(conf_file: str, text: str, exabgp_pid: int) -> None:
    """Make the ExaBGP ``exabgp_pid`` (reading ``conf_file``) run the configuration
    ``text``: written whole (a reload never reads half a file), then the reload signal.

    ExaBGP drops the neighbors no longer in it (closing their sessions for good), connects
    to new ones and leaves the sessions of unchanged ones up. A new neighbor's session gets
    our whole advert table when it comes up, as every session does (launcher's AdvertPath).
    """
    temporary = f"{conf_file}.tmp"
    with open(temporary, "w") as out:
        out.write(text)
    os.replace(temporary, conf_file)
    os.kill(exabgp_pid, RELOAD_SIGNAL)


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def exec_exabgp(conf_file: str, log_destination: str) -> None:
    """Replace this process with ExaBGP (through our launcher); ExaBGP logs where we do."""
    os.environ.setdefault(
        "exabgp_log_destination",
        log_destination[5:] if log_destination.startswith("file:") else log_destination,
    )
    os.environ[CONF_ENV] = os.path.abspath(conf_file)
    os.execv(sys.executable, [sys.executable, "-m", LAUNCHER_MODULE, conf_file])
