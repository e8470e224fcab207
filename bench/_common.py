"""Helpers shared by the benchmarks, and the small child programs they run in namespaces.

Children (each prints JSON lines on stdout, one per fact, timestamped with time.time(),
which is CLOCK_REALTIME and so comparable across namespaces of this machine):

    python bench/_common.py count-fdb --devices vxlan1000,vxlan1001 --target N
        Counts remote MACs arriving in the kernel on those VXLAN devices from rtnetlink
        notifications (RTM_NEWNEIGH, AF_BRIDGE, NTF_SELF, MAC not zero), unique per
        (device, MAC). A classic-BPF filter on the socket drops everything else in the
        kernel, so the counter costs one recv and a few struct unpacks per entry.
    python bench/_common.py watch-neigh --mac-prefix 02:b3
        Reports every AF_BRIDGE neighbour event whose MAC starts with the prefix.
    python bench/_common.py sniff-bgp --device eth0 --mac-prefix 02:b3
        Reports BGP segments (TCP port 179, both directions) whose payload holds a MAC
        with the prefix: when a route crossed a box (e.g. the route reflector).
    python bench/_common.py send-frames --device eth0
        Reads MACs on stdin; for each sends one broadcast frame with that source MAC
        from a raw socket and reports the send time.

Nothing here depends on evpn_agent: the measuring side stays independent of the agent.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.fabric import Fabric

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

log = logging.getLogger("bench")

# ---------------------------------------------------------------- netlink constants

NETLINK_ROUTE = 0
RTMGRP_NEIGH = 0x4
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
NLMSG_ERROR = 2
AF_BRIDGE = 7
NTF_SELF = 0x02
NTF_MASTER = 0x04
NDA_DST = 1
NDA_LLADDR = 2
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
NLMSGHDR = struct.Struct("=LHHLL")  # len, type, flags, seq, pid
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTATTR = struct.Struct("=HH")
ATTRS_AT = NLMSGHDR.size + NDMSG.size
ZERO_MAC = bytes(6)


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


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _neigh_socket(rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, RTMGRP_NEIGH))
    return sock


def _attach_self_filter(sock: socket.socket) -> None:
    """Kernel-side filter: keep only AF_BRIDGE neighbour messages with NTF_SELF set.

    The message starts at the nlmsghdr (16 bytes); ndm_family is at 16, ndm_flags at 26.
    """
    bpf = [
        (0x30, 0, 0, NLMSGHDR.size),  # ldb [16]           ndm_family
        (0x15, 0, 3, AF_BRIDGE),  # jeq #7, else drop
        (0x30, 0, 0, NLMSGHDR.size + 10),  # ldb [26]      ndm_flags
        (0x45, 0, 1, NTF_SELF),  # jset #NTF_SELF, else drop
        (0x06, 0, 0, 0xFFFFFFFF),  # ret accept
        (0x06, 0, 0, 0),  # ret drop
    ]
    code = b"".join(struct.pack("=HBBI", *ins) for ins in bpf)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("@HP", len(bpf), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _messages(data: bytes) -> Iterable[tuple[int, int, int, int, bytes | None, bytes | None]]:
    """(type, family, ifindex, flags, lladdr, dst) of each neighbour message in ``data``."""
    offset, end = 0, len(data)
    while offset + NLMSGHDR.size <= end:
        length, mtype = NLMSGHDR.unpack_from(data, offset)[:2]
        if length < NLMSGHDR.size:
            break
        if mtype in (RTM_NEWNEIGH, RTM_DELNEIGH) and length >= ATTRS_AT:
            family, ifindex, _state, flags, _type = NDMSG.unpack_from(data, offset + 16)
            lladdr = dst = None
            at, stop = offset + ATTRS_AT, offset + length
            while at + 4 <= stop:
                alen, atype = RTATTR.unpack_from(data, at)
                if alen < 4:
                    break
                if atype == NDA_LLADDR:
                    lladdr = data[at + 4 : at + alen]
                elif atype == NDA_DST:
                    dst = data[at + 4 : at + alen]
                at += (alen + 3) & ~3
            yield mtype, family, ifindex, flags, lladdr, dst
        offset += (length + 3) & ~3


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def child_count_fdb(args: argparse.Namespace) -> int:
    devices = [d for d in args.devices.split(",") if d]
    ifindexes = {socket.if_nametoindex(d) for d in devices}
    sock = _neigh_socket(args.rcvbuf)
    _attach_self_filter(sock)
    present: set[tuple[int, bytes]] = set()
    target, every = args.target, max(1, args.every)
    next_report = 1
    emit(event="ready", t=time.time(), devices=len(ifindexes))
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    done = False
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as exc:  # ENOBUFS: notifications were lost, the count is unreliable
            emit(event="overflow", t=time.time(), error=str(exc), n=len(present))
            continue
        now = time.time()
        for mtype, _family, ifindex, _flags, lladdr, _dst in _messages(view[:n].tobytes()):
            if ifindex not in ifindexes or lladdr is None or lladdr == ZERO_MAC:
                continue
            if mtype == RTM_NEWNEIGH:
                present.add((ifindex, lladdr))
            else:
                present.discard((ifindex, lladdr))
        count = len(present)
        if count >= next_report:
            emit(event="progress", t=now, n=count)
            next_report = (count // every + 1) * every
        if not done and count >= target:
            emit(event="done", t=now, n=count)
            done = True
            if not args.keep_going:
                return 0


def child_watch_neigh(args: argparse.Namespace) -> int:
    sock = _neigh_socket(args.rcvbuf)
    prefix = bytes(int(part, 16) for part in args.mac_prefix.split(":") if part)
    names: dict[int, str] = {}
    emit(event="ready", t=time.time())
    buf = bytearray(1 << 16)
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as exc:
            emit(event="overflow", t=time.time(), error=str(exc))
            continue
        now = time.time()
        for mtype, family, ifindex, flags, lladdr, dst in _messages(bytes(buf[:n])):
            if family != AF_BRIDGE or lladdr is None or not lladdr.startswith(prefix):
                continue
            if ifindex not in names:
                try:
                    names[ifindex] = socket.if_indextoname(ifindex)
                except OSError:
                    names[ifindex] = str(ifindex)
            emit(
                event="new" if mtype == RTM_NEWNEIGH else "del",
                t=now,
                dev=names[ifindex],
                mac=_mac_text(lladdr),
                self=bool(flags & NTF_SELF),
                dst=socket.inet_ntop(socket.AF_INET, dst) if dst and len(dst) == 4 else None,
            )


def child_sniff_bgp(args: argparse.Namespace) -> int:
    """Timestamps of BGP segments (TCP port 179) on ``--device`` carrying a MAC with the prefix.

    Both directions (AF_PACKET sees outgoing packets too); one line per segment with the
    matching MACs found in its payload (the NLRI carries the MAC as 6 raw bytes).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((args.device, 0))
    prefix = bytes(int(part, 16) for part in args.mac_prefix.split(":") if part)
    emit(event="ready", t=time.time())
    while True:
        frame = sock.recv(65536)
        now = time.time()
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:  # IPv4, TCP
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = 14 + ihl
        if len(frame) < tcp + 20:
            continue
        sport, dport = struct.unpack_from("!HH", frame, tcp)
        if 179 not in (sport, dport):
            continue
        payload = frame[tcp + (frame[tcp + 12] >> 4) * 4 :]
        macs = []
        at = payload.find(prefix)
        while at >= 0 and at + 6 <= len(payload):
            macs.append(_mac_text(payload[at : at + 6]))
            at = payload.find(prefix, at + 6)
        if macs:
            emit(
                event="bgp",
                t=now,
                src=socket.inet_ntoa(frame[26:30]),
                dst=socket.inet_ntoa(frame[30:34]),
                macs=macs,
            )


def child_send_frames(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.device, 0))
    emit(event="ready", t=time.time())
    for line in sys.stdin:
        mac = line.strip()
        if not mac:
            continue
        src = bytes(int(part, 16) for part in mac.split(":"))
        # broadcast, local experimental EtherType 0x88b5, padded to the minimum frame size
        frame = b"\xff" * 6 + src + b"\x88\xb5" + b"evpn-agent bench".ljust(46, b"\0")
        t = time.time()
        sock.send(frame)
        emit(event="sent", t=t, mac=mac)
    return 0


# ---------------------------------------------------------------- parent side


@contextlib.contextmanager
def bench_fabric(prefix: str, children: Sequence[Child] = ()) -> Iterator[Fabric]:
    """The fabric of one benchmark run: if the run fails, every daemon's log tail goes to
    stderr; at the end the child programs (watchers, senders) stop, then the fabric goes."""
    from lab.fabric import Fabric  # the child programs never need it

    with Fabric(prefix) as fab:
        try:
            yield fab
        except BaseException:
            logging.getLogger("bench").error("benchmark failed; logs:\n%s", fab.logs())
            raise
        finally:
            for child in children:
                child.stop()


class Child:
    """A child program in a namespace whose JSON lines are collected by a reader thread."""

    def __init__(self, netns: str, *argv: str, stdin: bool = False) -> None:
        self.argv = [
            "ip", "netns", "exec", netns, sys.executable, str(Path(__file__)), *argv,
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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int | None) -> dict[str, Any] | None:
    """VmRSS, VmHWM (MiB) and CPU seconds (user+system) of ``pid`` from /proc."""
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
    }


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        stats = proc_stats(pid)
        if stats is not None:
            total += stats["cpu_s"]
    return total


def wait_idle(pids: Sequence[int], timeout: float = 120.0, window: float = 0.5) -> float:
    """Poll until ``pids`` together use under 5% of a CPU over ``window``; returns the wait."""
    started = time.monotonic()
    deadline = started + timeout
    before = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pids)
        if now - before <= 0.05 * window + 1.0 / CLK_TCK:
            return time.monotonic() - started
        before = now
    log.warning("processes %s still busy after %.0fs", list(pids), timeout)
    return time.monotonic() - started


class CpuSampler:
    """Samples named PIDs every ``interval`` on a thread (reads /proc only).

    Per PID: CPU seconds (all threads), run-queue delay (all threads, from schedstat: time
    runnable but waiting for a CPU) and the main thread's state and wait channel (what it
    blocks on: e.g. ``anon_pipe_write`` = a full pipe to its API process). Also the
    machine's total busy time, and a census of every process at start and stop, so that
    other jobs on a shared machine show up in the figures.
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._census_start = (time.time(), census())
        self._census_stop: tuple[float, dict[int, tuple[str, float]]] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            sample: dict[str, Any] = {"@system": system_busy_seconds()}
            for name, pid in list(self.pids.items()):
                stats = _sched(pid)
                if stats is not None:
                    sample[name] = stats
            self.samples.append((now, sample))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(2)
            self._census_stop = (time.time(), census())

    def _at(self, t: float) -> dict[str, Any]:
        best: dict[str, Any] = {}
        for stamp, sample in self.samples:
            if stamp > t:
                break
            best = {**best, **sample}
        return best

    def between(self, start: float | None, end: float | None) -> dict[str, Any]:
        """Per PID in [start, end]: CPU seconds and share of one core, run-queue wait, and
        how the main thread's samples split over states/wait channels."""
        if start is None or end is None or end <= start:
            return {}
        before, after = self._at(start), self._at(end)
        span = end - start
        out: dict[str, Any] = {"window_s": round(span, 3)}
        ours = 0.0
        inside = [sample for stamp, sample in self.samples if start <= stamp <= end]
        for name in after:
            if name.startswith("@"):
                continue
            cpu0, delay0, _ = before.get(name, (0.0, 0.0, ""))
            cpu1, delay1, _ = after[name]
            ours += cpu1 - cpu0
            states: dict[str, int] = {}
            for sample in inside:
                if name in sample:
                    states[sample[name][2]] = states.get(sample[name][2], 0) + 1
            total = sum(states.values()) or 1
            out[name] = {
                "cpu_s": round(cpu1 - cpu0, 2),
                "core_share": round((cpu1 - cpu0) / span, 2),
                "runqueue_wait_s": round(delay1 - delay0, 2),
                "main_thread": {
                    k: round(v / total, 2)
                    for k, v in sorted(states.items(), key=lambda kv: -kv[1])
                    if v / total >= 0.02
                },
            }
        if "@system" in after and "@system" in before:
            system = after["@system"] - before["@system"]
            out["others_core_share"] = round(max(0.0, system - ours) / span, 2)
            out["machine_busy_cores"] = round(system / span, 2)
        return out

    def top_others(self, count: int = 5) -> list[list[Any]]:
        """The busiest processes we did not track, over the sampler's life (CPU seconds)."""
        if self._census_stop is None:
            return []
        first = self._census_start[1]
        tracked = set(self.pids.values())
        used: list[tuple[str, float]] = []
        for pid, (name, cpu) in self._census_stop[1].items():
            if pid in tracked:
                continue
            delta = cpu - first.get(pid, (name, 0.0))[1]
            if delta >= 0.05:
                used.append((f"{pid} {name}", round(delta, 2)))
        return [list(row) for row in sorted(used, key=lambda row: -row[1])[:count]]


def _sched(pid: int) -> tuple[float, float, str] | None:
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


def wait_machine_quiet(max_cores: float = 0.3, timeout: float = 60.0, window: float = 1.0) -> float:
    """Poll until the whole machine is under ``max_cores`` busy over ``window``.

    Other jobs on a shared machine disturb timings; returns the busy share seen last (the
    caller reports it; on timeout the run goes ahead and the figure tells).
    """
    deadline = time.monotonic() + timeout
    while True:
        before = system_busy_seconds()
        time.sleep(window)
        busy = (system_busy_seconds() - before) / window
        if busy <= max_cores or time.monotonic() >= deadline:
            if busy > max_cores:
                log.warning("machine still %.2f cores busy after %.0fs: going ahead", busy, timeout)
            return round(busy, 2)


def system_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK


def code_version() -> dict[str, Any]:
    """The commit measured, and whether evpn_agent/ differs from it (read-only git)."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO_ROOT), *argv], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "evpn_agent_modified": bool(git("status", "--porcelain", "--", "evpn_agent")),
    }


def summary_ms(values: Sequence[float]) -> dict[str, Any]:
    """median/p90/min/max/mean in ms of values in seconds."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        # nearest-rank percentile
        index = max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))
        return round(ordered[index] * 1000, 1)

    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": pct(0.90),
        "min_ms": round(ordered[0] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


_ADJCHANGE = re.compile(
    r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?) "
    r".*%ADJCHANGE: neighbor (\S+?)(?:\(\S*\))? .*\bUp\b"
)


def set_frr_log_precision(box: Any) -> None:
    """Millisecond timestamps in the box's FRR logs (for the session-up time)."""
    box.vtysh("configure terminal", "log timestamp precision 3")


def frr_session_up_times(box: Any, peer: str) -> list[float]:
    """time.time() of every '%ADJCHANGE ... Up' for ``peer`` in the box's bgpd.log."""
    path = box.frr.directory / "bgpd.log"
    found = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        match = _ADJCHANGE.match(line)
        if match and match.group(2) == peer:
            stamp, _, fraction = match.group(1).partition(".")
            seconds = time.mktime(time.strptime(stamp, "%Y/%m/%d %H:%M:%S"))
            found.append(seconds + (float("0." + fraction) if fraction else 0.0))
    return found


def evpn_summary(box: Any) -> dict[str, Any]:
    peers: dict[str, Any] = box.vtysh_json("show bgp l2vpn evpn summary json").get("peers", {})
    return peers


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


# ---------------------------------------------------------------- child entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    count = sub.add_parser("count-fdb")
    count.add_argument("--devices", required=True)
    count.add_argument("--target", type=int, required=True)
    count.add_argument("--every", type=int, default=1000)
    count.add_argument("--rcvbuf", type=int, default=256 << 20)
    count.add_argument("--keep-going", action="store_true")
    watch = sub.add_parser("watch-neigh")
    watch.add_argument("--mac-prefix", default="")
    watch.add_argument("--rcvbuf", type=int, default=16 << 20)
    sniff = sub.add_parser("sniff-bgp")
    sniff.add_argument("--device", default="eth0")
    sniff.add_argument("--mac-prefix", required=True)
    send = sub.add_parser("send-frames")
    send.add_argument("--device", default="eth0")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.command == "count-fdb":
            return child_count_fdb(args)
        if args.command == "watch-neigh":
            return child_watch_neigh(args)
        if args.command == "sniff-bgp":
            return child_sniff_bgp(args)
        return child_send_frames(args)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
