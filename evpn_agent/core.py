"""Entry point of the agent core, the process ExaBGP runs (and respawns) for its API.

stdout is ExaBGP's command channel: nothing but commands may be written there, so logging
goes to stderr and every error is reported as a log line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from evpn_agent.agent import main_core
from evpn_agent.config import ConfigError, load
from evpn_agent.identity import IdentityError
from evpn_agent.logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evpn-agent-core")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        setup_logging("info")
        logging.getLogger("evpn_agent").error("%s", exc)
        return 2
    setup_logging(cfg.log_level, cfg.log_destination)
    try:
        return main_core(cfg)
    except IdentityError as exc:
        logging.getLogger("evpn_agent").error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
