"""The benchmarks' CPU groups: a command started through a group's prefix runs inside it
(and so does what it forks), and the groups go when the fabric does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.fabric.cpu_groups import CpuGroups, cpu_cgroup_root


def test_prefix_enters_before_the_command_runs(tmp_path: Path) -> None:
    groups = CpuGroups("t1", root=tmp_path)
    prefix = groups.prefix("a1")
    # the command's own PID is what the group was given: the shell execs it
    out = subprocess.run(
        [*prefix, "sh", "-c", "echo $$"], capture_output=True, text=True, check=True
    ).stdout
    assert (tmp_path / "t1-a1" / "cgroup.procs").read_text().split() == out.split()
    assert groups.prefix("a1") == prefix  # one group per box, made once


def test_a_group_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    groups = CpuGroups("t1", root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        groups.prefix("a1")  # no root to make the group in


def test_without_cgroups_nothing_is_prefixed() -> None:
    groups = CpuGroups("t1", root=None)  # a machine without a CPU hierarchy
    assert groups.prefix("a1") == []
    groups.close()


@pytest.mark.skipif(
    os.geteuid() != 0 or cpu_cgroup_root() is None, reason="needs root and CPU cgroups"
)
def test_real_group_holds_the_command_and_is_removed() -> None:
    groups = CpuGroups(f"evt{os.getpid()}", cpu_cgroup_root())
    prefix = groups.prefix("box")
    out = subprocess.run(
        [*prefix, "cat", "/proc/self/cgroup"], capture_output=True, text=True, check=True
    ).stdout
    assert f"/evt{os.getpid()}-box" in out
    group = next(iter(groups.made.values()))
    groups.close()
    assert not group.exists()
