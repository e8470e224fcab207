"""A network namespace, and commands run in it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lab.fabric.environment import BRIDGE, IP
from lab.fabric.procs import run


@dataclass(frozen=True)
class Netns:
    """A network namespace this fabric created."""

    name: str

    def exec(
        self, *argv: str, check: bool = True, timeout: float = 30.0, prefix: Sequence[str] = ()
    ) -> str:
        """Run a command inside the namespace; returns stdout. ``prefix``: argv run before
        ``ip netns exec`` (which mounts the namespace's own /sys: a CPU group is entered
        before it)."""
        return run([*prefix, IP, "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        return run([IP, "-n", self.name, *args], check=check)

    def bridge(self, *args: str, check: bool = True) -> str:
        return run([BRIDGE, "-n", self.name, *args], check=check)

    def pids(self) -> list[int]:
        out = run([IP, "netns", "pids", self.name], check=False)
        return [int(word) for word in out.split() if word.isdigit()]
