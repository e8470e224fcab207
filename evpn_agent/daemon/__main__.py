"""``python -m evpn_agent.daemon --config FILE``: the process ExaBGP runs (and respawns)
for its API.

stdout is ExaBGP's command channel: nothing but commands may be written there, so logging
goes to stderr and every error is reported as a log line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from evpn_agent.config import ConfigError, load
from evpn_agent.daemon import reload
from evpn_agent.daemon.dispatcher import Daemon
from evpn_agent.heap import tune_collector
from evpn_agent.identity import IdentityError
from evpn_agent.kernel import NetlinkKernel
from evpn_agent.logs import setup_logging
from evpn_agent.speaker.channel import ExabgpChannel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evpn-agent-daemon")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    reload.hold_sighup()
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        setup_logging("info")
        logging.getLogger("evpn_agent").error("%s", exc)
        return 2
    setup_logging(cfg.log_level, cfg.log_destination)
    tune_collector()
    speaker = ExabgpChannel(sys.stdin.buffer, sys.stdout.buffer)
    kernel = NetlinkKernel(rcvbuf=cfg.netlink_buffer_size)
    try:
        daemon = Daemon(cfg, speaker, kernel, config_path=args.config, sighup=True)
        asyncio.run(daemon.run())
    except IdentityError as exc:
        logging.getLogger("evpn_agent").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
