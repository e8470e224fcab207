"""Logging and the command-line options the benchmarks share."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType


def setup_logging(verbose: bool = False) -> None:
    """Logging to stderr; called first by every benchmark, so its signals are set here too."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    end_on_signals()


def end_on_signals() -> None:
    """SIGTERM and SIGINT end a run through its teardown (namespaces, processes, CPU
    groups). Python's default for SIGTERM skips it, and a shell starts a background job
    with SIGINT ignored: a stopped scale run left nine namespaces of 1,000 VNIs behind."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _end)


def _end(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends it at once
    raise SystemExit(128 + signum)


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
