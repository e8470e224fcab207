"""The parent side of a probe (bench/probes): started in a namespace, its JSON lines
collected by a reader thread."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# run by path with this Python (see bench/probes/__main__.py)
PROBES = Path(__file__).resolve().parent / "probes"


class Child:
    """A probe in a namespace (``argv``: its command and options) whose JSON lines are
    collected by a reader thread."""

    def __init__(self, netns: str, *argv: str, stdin: bool = False) -> None:
        self.argv = [
            "ip", "netns", "exec", netns, sys.executable, str(PROBES), *argv,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.lines.append(item)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, start: int = 0
    ) -> dict[str, Any] | None:
        """The first line at or after index ``start`` matching ``predicate``, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.lines[start:]:
                    if predicate(item):
                        return item
                start = max(start, len(self.lines))
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.5))

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        item = self.wait_for(lambda x: x.get("event") == "ready", timeout)
        if item is None:
            raise RuntimeError(f"child {' '.join(self.argv)} did not start")
        return item

    def write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
