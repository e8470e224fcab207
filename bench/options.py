"""Logging and the command-line options the benchmarks share."""

from __future__ import annotations

import argparse
import logging
import sys


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def trial_arguments(description: str, trials_help: str) -> argparse.Namespace:
    """The options every trial benchmark shares (latency, move), parsed; logging set up."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--trials", type=int, default=30, help=trials_help)
    parser.add_argument("--warmup", type=int, default=2, help="uncounted trials first (2)")
    parser.add_argument("--no-frr-baseline", action="store_true", help="agents only (no FRR VTEPs)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-step deadline (s)")
    parser.add_argument(
        "--jitter-ms", type=float, default=100.0, help="random pause between trials (0..ms)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet-timeout", type=float, default=60.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    return args
