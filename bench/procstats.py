"""Process and machine figures read from /proc: memory, CPU seconds, scheduler delay."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int | None) -> dict[str, Any] | None:
    """VmRSS, VmHWM (MiB), CPU seconds (user+system) and system seconds of ``pid``."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    utime, stime = int(stat[11]), int(stat[12])
    return {
        "pid": pid,
        "rss_mib": round(fields.get("VmRSS", 0.0), 1),
        "hwm_mib": round(fields.get("VmHWM", 0.0), 1),
        "cpu_s": round((utime + stime) / CLK_TCK, 2),
        # in the kernel on its behalf: netlink writes (and their notifications), sockets
        "sys_s": round(stime / CLK_TCK, 2),
    }


def command_of(pid: int) -> str | None:
    """The start of ``pid``'s command line (which process of a VTEP it is)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        stats = proc_stats(pid)
        if stats is not None:
            total += stats["cpu_s"]
    return total


def sched_stats(pid: int) -> tuple[float, float, str] | None:
    """(CPU s, run-queue delay s, "state:wchan" of the main thread) of ``pid``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        delay = 0.0
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                delay += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[1])
        wchan = Path(f"/proc/{pid}/wchan").read_text().strip() or "-"
    except OSError:
        return None
    state = stat[0]
    label = "running" if state == "R" else f"{state}:{wchan.split('.')[0]}"
    return (int(stat[11]) + int(stat[12])) / CLK_TCK, delay / 1e9, label


def census() -> dict[int, tuple[str, float]]:
    """{pid: (short command, CPU seconds)} of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        label = " ".join(cmd.split()[:3])[:80] or f"[{name}]"
        found[int(entry.name)] = (label, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def system_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK
