"""py-spy profiles: recording one process, and reading the raw collapsed stacks."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("bench")


def py_spy(pid: int, output: Path, rate: int = 250) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` (raw collapsed stacks) on ``pid``, if py-spy is installed."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        log.warning("py-spy is not installed in the venv: no profile")
        return None
    return subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
         "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_py_spy(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _profile_samples(path: Path) -> list[tuple[list[str], int]]:
    """(stack frames, sample count) per line of a raw py-spy file; [] if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    samples = []
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f]
        if frames and count_text.isdigit():
            samples.append((frames, int(count_text)))
    return samples


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Own time and inclusive time (percent of samples) per function of a raw py-spy file."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for frames, count in _profile_samples(path):
        total += count
        leaf = _frame_name(frames[-1])
        own[leaf] = own.get(leaf, 0) + count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return {"samples": 0}

    def ranked(table: dict[str, int]) -> list[list[Any]]:
        rows = sorted(table.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [[name, round(100 * n / total, 1)] for name, n in rows]

    return {"samples": total, "own_pct": ranked(own), "inclusive_pct": ranked(inclusive)}


def categorize_profile(path: Path, rules: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Percent of samples per category: a sample goes to the first rule (label, frame
    prefix such as ``"Agent._read_stdin ("``) whose frame is anywhere in its stack."""
    counts: dict[str, int] = {}
    total = 0
    for frames, count in _profile_samples(path):
        total += count
        label = next(
            (label for label, prefix in rules if any(f.startswith(prefix) for f in frames)),
            "other",
        )
        counts[label] = counts.get(label, 0) + count
    if not total:
        return {}
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return {label: round(100 * n / total, 1) for label, n in ordered}


def _frame_name(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:LINE)"; drop the line number
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file, _, _line = where.rpartition(":")
    short = "/".join(Path(file).parts[-2:]) if file else where
    return f"{name} ({short})"
