"""One CPU cgroup per box, for benchmarks: a box's daemons share the CPU as one service.

On a host, systemd gives every service a cgroup of its own, so under load the CPU is
shared between services (frr.service: zebra + bgpd; evpn-agent.service: the core +
ExaBGP), not between processes. A lab without them falls back to the kernel's
autogroups, one per session: each FRR daemon calls setsid() and gets a group of its own,
while an agent started by a benchmark shares the benchmark's group with every other agent
and every helper the benchmark runs. Measured (bench_scale, 8 agents and an FRR VTEP
starting at once on 2 cores): the FRR VTEP's kernel was complete after 15 s, the agents'
after 47 s; with a group per box, every VTEP's after 45-46 s. Benchmarks compare the two
kinds of VTEP under load, so they put each box in a group of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")

# Run a command inside a cgroup: the shell moves itself, then execs the command, so that it
# (and whatever it forks: FRR daemonizes, the agent starts ExaBGP) starts inside. The
# command is `ip netns exec ...`, which mounts the namespace's own /sys: the group is
# entered before it. The cgroup.procs path is the shell's $0.
_ENTER = 'echo $$ > "$0" && exec "$@"'


def cpu_cgroup_root() -> Path | None:
    """Where CPU cgroups can be made here: the v1 ``cpu`` hierarchy, or the v2 root if it
    hands the ``cpu`` controller to its children; None if neither."""
    if (V1_CPU / "cpu.shares").exists():
        return V1_CPU
    with contextlib.suppress(OSError):
        if "cpu" in (V2_ROOT / "cgroup.subtree_control").read_text().split():
            return V2_ROOT
    return None


class CpuGroups:
    """The cgroups of one fabric, named ``<tag>-<box>``, made under ``root`` (None: no
    groups, see :func:`cpu_cgroup_root`); removed by :meth:`close`."""

    def __init__(self, tag: str, root: Path | None) -> None:
        self.tag = tag
        self.root = root
        self.made: dict[str, Path] = {}
        if self.root is None:
            log.warning("no CPU cgroups here: the boxes' daemons share the CPU by session")

    def prefix(self, box: str) -> list[str]:
        """argv to put before a command so that it runs in ``box``'s group ([] if none)."""
        if self.root is None:
            return []
        group = self.made.get(box)
        if group is None:
            group = self.root / f"{self.tag}-{box}"
            group.mkdir(exist_ok=True)
            self.made[box] = group
        return ["sh", "-c", _ENTER, str(group / "cgroup.procs")]

    def close(self) -> None:
        """Remove the groups; a process still in one goes back to the root group first."""
        if self.root is None:
            return
        for group in self.made.values():
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (self.root / "cgroup.procs").write_text(pid)
            try:
                os.rmdir(group)
            except OSError as exc:
                log.warning("could not remove the cgroup %s: %s", group, exc)
        self.made.clear()
