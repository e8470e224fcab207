"""A throw-away EVPN fabric in network namespaces: FRR route reflectors and VTEPs, hosts,
and our speaker, on one underlay switch. For integration tests and the lab.

    with Fabric() as fab:
        rr = fab.add_route_reflector("rr", 1)                 # 192.0.2.1
        vtep = fab.add_frr_vtep("vtep1", 11, rrs=[rr])        # 192.0.2.11
        vtep.add_vni(100)
        fab.add_host("h1", vtep, 100, "198.51.100.1/24")
        fab.wait_established(rr, vtep.address)

Everything is named ``<prefix><pid><random>-<name>`` so parallel runs never collide.
``close()`` (also on ``with`` exit) stops only processes this fabric started, by PID
(FRR pidfiles, our subprocesses and their children), then deletes every namespace it
created. Nothing here sleeps a fixed time: :func:`wait_until` polls with a deadline.

Addresses are TEST-NET only: underlay 192.0.2.0/24 (2001:db8::/64 with
``Fabric(underlay6=True)``), tenants 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
FRR_DIR = Path(os.environ.get("FRR_DIR", "/usr/lib/frr"))
VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"
IP = shutil.which("ip") or "/usr/sbin/ip"
BRIDGE = shutil.which("bridge") or "/usr/sbin/bridge"
PYTHON = sys.executable
PEER_SCRIPT = REPO_ROOT / "tests" / "speaker_peer.py"

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")
# Fabric(underlay6=True): boxes get 2001:db8::<octet>/64 instead, and keep 192.0.2.<octet>
# as their BGP router-id only (a router-id is 32 bits; it is configured on no interface).
UNDERLAY6 = ipaddress.IPv6Network("2001:db8::/64")
ASN = 65000
VXLAN_PORT = 4789

T = TypeVar("T")


# ---------------------------------------------------------------- environment checks


def missing_requirements() -> list[str]:
    """Why a fabric cannot be built here (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for tool in (IP, BRIDGE):
        if not os.access(tool, os.X_OK):
            missing.append(tool)
    for daemon in ("zebra", "bgpd"):
        if not os.access(FRR_DIR / daemon, os.X_OK):
            missing.append(str(FRR_DIR / daemon))
    if not os.access(VTYSH, os.X_OK):
        missing.append(VTYSH)
    try:
        pwd.getpwnam("frr")
    except KeyError:
        missing.append("user frr")
    return missing


def skip_unless_supported() -> None:
    """pytest.skip() with the reason when root, iproute2 or FRR is missing."""
    import pytest

    missing = missing_requirements()
    if missing:
        pytest.skip("fabric needs: " + ", ".join(missing))


# ---------------------------------------------------------------- small helpers


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns a truthy value (returned) or the deadline.

    Exceptions listed in ``retry_on`` count as "not yet". On timeout, raises
    TimeoutError naming ``what`` and the last value or exception seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


class CommandError(subprocess.CalledProcessError):
    """A failed command; unlike its base class, str() includes the command's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {str(self.stderr).strip()}"


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    """Run a command, return stdout; on failure raise CommandError (with stderr)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc.stdout


def _signal_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    """Direct and indirect children of ``pid`` (from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_pids(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM the given PIDs, then SIGKILL whatever is still there at the deadline."""
    alive = [pid for pid in pids if _signal_pid(pid, signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _pid_alive(pid)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        _signal_pid(pid, signal.SIGKILL)


# ---------------------------------------------------------------- FRR configuration


def render_zebra_config(hostname: str, log_file: Path) -> str:
    return f"hostname {hostname}\nlog file {log_file}\n!\n"


def render_rr_config(
    *,
    router_id: str,
    log_file: Path,
    asn: int = ASN,
    cluster_id: str | None = None,
    listen_range: str = str(UNDERLAY),
    password: str | None = None,
    hostname: str = "rr",
) -> str:
    """An FRR route reflector: iBGP l2vpn evpn, clients accepted from ``listen_range``."""
    lines = [
        f"hostname {hostname}",
        f"log file {log_file}",
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        f" bgp cluster-id {cluster_id or router_id}",
        " bgp log-neighbor-changes",
        " no bgp default ipv4-unicast",
        " neighbor CLIENTS peer-group",
        f" neighbor CLIENTS remote-as {asn}",
        # fast failure detection for tests; 3/9 is FRR's datacenter profile
        " neighbor CLIENTS timers 3 9",
    ]
    if password is not None:
        lines.append(f" neighbor CLIENTS password {password}")
    lines += [
        f" bgp listen range {listen_range} peer-group CLIENTS",
        " address-family l2vpn evpn",
        "  neighbor CLIENTS activate",
        "  neighbor CLIENTS route-reflector-client",
        " exit-address-family",
        "!",
    ]
    return "\n".join(lines) + "\n"


def render_vtep_config(
    *,
    router_id: str,
    route_reflectors: Sequence[str],
    log_file: Path,
    asn: int = ASN,
    hostname: str = "vtep",
) -> str:
    """An FRR VTEP: advertises every kernel VNI to the route reflectors."""
    lines = [
        f"hostname {hostname}",
        f"log file {log_file}",
        f"router bgp {asn}",
        f" bgp router-id {router_id}",
        " bgp log-neighbor-changes",
        " no bgp default ipv4-unicast",
    ]
    for rr in route_reflectors:
        lines += [
            f" neighbor {rr} remote-as {asn}",
            f" neighbor {rr} timers 3 9",
            f" neighbor {rr} timers connect 1",
        ]
    lines.append(" address-family l2vpn evpn")
    lines += [f"  neighbor {rr} activate" for rr in route_reflectors]
    lines += ["  advertise-all-vni", " exit-address-family", "!"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- building blocks

TENANT_NETWORKS = tuple(
    ipaddress.ip_network(net) for net in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def _tenant(address: str) -> str:
    """Check that a tenant address (with prefix) is TEST-NET; return it."""
    interface = ipaddress.ip_interface(address)
    if not any(interface.ip in net for net in TENANT_NETWORKS):
        raise ValueError(f"{address}: tenant addresses must be TEST-NET")
    return address


@dataclass(frozen=True)
class Netns:
    """A network namespace this fabric created."""

    name: str

    def exec(self, *argv: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run a command inside the namespace; returns stdout."""
        return run([IP, "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def ip(self, *args: str, check: bool = True) -> str:
        return run([IP, "-n", self.name, *args], check=check)

    def bridge(self, *args: str, check: bool = True) -> str:
        return run([BRIDGE, "-n", self.name, *args], check=check)

    def pids(self) -> list[int]:
        out = run([IP, "netns", "pids", self.name], check=False)
        return [int(word) for word in out.split() if word.isdigit()]


@dataclass
class Frr:
    """zebra + bgpd of one box, started without systemd (state dir owned by frr)."""

    netns: Netns
    directory: Path

    @property
    def vty_dir(self) -> Path:
        return self.directory / "vty"

    def pidfile(self, daemon: str) -> Path:
        return self.directory / f"{daemon}.pid"

    def start(self, bgpd_config: str, hostname: str) -> None:
        frr_user = pwd.getpwnam("frr")
        self.vty_dir.mkdir(parents=True, exist_ok=True)
        (self.directory / "zebra.conf").write_text(
            render_zebra_config(hostname, self.directory / "zebra.log")
        )
        (self.directory / "bgpd.conf").write_text(bgpd_config)
        for path in (self.directory, self.vty_dir, *self.directory.iterdir()):
            os.chown(path, frr_user.pw_uid, frr_user.pw_gid)
        zserv = self.directory / "zserv.api"
        common = [
            "-d",
            "-F",
            "datacenter",
            "-z",
            str(zserv),
            "--vty_socket",
            str(self.vty_dir),
            "-P",
            "0",  # no vty TCP port: vtysh uses the unix sockets
        ]
        for daemon in ("zebra", "bgpd"):
            # zebra's netlink buffer as Debian's /etc/frr/daemons sets it (-s 90000000):
            # without it, zebra overruns and exits under a 100k-MAC burst.
            extra = ["-s", "90000000"] if daemon == "zebra" else []
            argv = [
                str(FRR_DIR / daemon),
                *common,
                *extra,
                "-f",
                str(self.directory / f"{daemon}.conf"),
                "-i",
                str(self.pidfile(daemon)),
            ]
            self.netns.exec(*argv)
            wait_until(
                functools.partial(self._started, daemon),
                10,
                f"{daemon} in {self.netns.name} to start (log in {self.directory})",
            )

    def _started(self, daemon: str) -> bool:
        return (self.vty_dir / f"{daemon}.vty").exists() and self.pid(daemon) is not None

    def pid(self, daemon: str) -> int | None:
        """The daemon's PID if its pidfile names a live process of ours."""
        try:
            pid = int(self.pidfile(daemon).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # guard against a recycled PID: the process must be the one we started
        if _pid_alive(pid) and str(self.pidfile(daemon)) in _cmdline(pid):
            return pid
        return None

    def stop(self) -> None:
        stop_pids([pid for d in ("bgpd", "zebra") if (pid := self.pid(d)) is not None])

    def vtysh(self, *commands: str, check: bool = True) -> str:
        argv = [VTYSH, "--vty_socket", str(self.vty_dir)]
        for command in commands:
            argv += ["-c", command]
        return run(argv, check=check)

    def vtysh_json(self, command: str) -> Any:
        return json.loads(self.vtysh(command) or "{}")

    def logs(self) -> str:
        parts = []
        for name in ("zebra.log", "bgpd.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text()[-4000:]}")
        return "\n".join(parts)


@dataclass
class Vni:
    vni: int
    bridge: str
    vxlan: str


@dataclass
class Box:
    """A router/VTEP namespace attached to the underlay switch as ``eth0``."""

    name: str
    netns: Netns
    address: str  # underlay address (IPv4, or IPv6 with underlay6), also the VTEP
    directory: Path
    frr: Frr | None = None
    vnis: dict[int, Vni] = field(default_factory=dict)
    router_id: str = ""  # BGP router-id (IPv4); defaults to ``address``

    def __post_init__(self) -> None:
        if not self.router_id:
            self.router_id = self.address

    def exec(self, *argv: str, check: bool = True) -> str:
        return self.netns.exec(*argv, check=check)

    def vtysh(self, *commands: str, check: bool = True) -> str:
        if self.frr is None:
            raise RuntimeError(f"{self.name} runs no FRR")
        return self.frr.vtysh(*commands, check=check)

    def vtysh_json(self, command: str) -> Any:
        if self.frr is None:
            raise RuntimeError(f"{self.name} runs no FRR")
        return self.frr.vtysh_json(command)

    def add_vni(self, vni: int, *, svi_addresses: Sequence[str] = ()) -> Vni:
        """A Linux bridge ``br<vni>`` with a VXLAN port ``vxlan<vni>`` (FRR's layout).

        ``svi_addresses`` (tenant addresses with prefix) go on the bridge so the box
        learns host ARP/ND entries (FRR then advertises MAC+IP routes).
        """
        bridge, vxlan = f"br{vni}", f"vxlan{vni}"
        self.netns.ip("link", "add", bridge, "type", "bridge", "stp_state", "0")
        self.netns.ip(
            "link", "add", vxlan, "type", "vxlan", "id", str(vni), "local", self.address,
            "dstport", str(VXLAN_PORT), "nolearning",
        )  # fmt: skip
        self.netns.ip("link", "set", vxlan, "master", bridge, "addrgenmode", "none")
        self.netns.ip("link", "set", vxlan, "type", "bridge_slave", "learning", "off")
        for svi_address in svi_addresses:
            self.netns.ip("address", "add", _tenant(svi_address), "dev", bridge)
        self.netns.ip("link", "set", bridge, "up")
        self.netns.ip("link", "set", vxlan, "up")
        self.vnis[vni] = Vni(vni, bridge, vxlan)
        return self.vnis[vni]

    def del_vni(self, vni: int) -> None:
        entry = self.vnis.pop(vni)
        self.netns.ip("link", "del", entry.vxlan)
        self.netns.ip("link", "del", entry.bridge)

    def fdb(self, device: str) -> str:
        """``bridge fdb show dev DEVICE`` (a port, e.g. ``vxlan100``) inside the box."""
        return self.netns.bridge("fdb", "show", "dev", device)

    def bridge_fdb(self, vni: int) -> str:
        """Every FDB entry of the VNI's bridge and its ports (``bridge fdb show br``)."""
        return self.netns.bridge("fdb", "show", "br", self.vnis[vni].bridge)

    def evpn_peer_state(self, peer: str) -> str | None:
        """BGP state of ``peer`` in the l2vpn evpn summary (None if unknown)."""
        summary = self.vtysh_json("show bgp l2vpn evpn summary json")
        peers = summary.get("peers", {})
        entry = peers.get(peer)
        return None if entry is None else str(entry.get("state"))


def vtysh(box: Box, *commands: str, check: bool = True) -> str:
    """Run vtysh commands against ``box``'s FRR; returns the output."""
    return box.vtysh(*commands, check=check)


def vtysh_json(box: Box, command: str) -> Any:
    """Run one ``... json`` vtysh command against ``box``'s FRR; returns the decoded JSON."""
    return box.vtysh_json(command)


@dataclass
class Host:
    """A tenant host: its own namespace, ``eth0`` plugged into a box's VNI bridge."""

    name: str
    netns: Netns
    box: Box
    vni: int
    address: str  # with prefix length
    mac: str
    extra_addresses: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def exec(self, *argv: str, check: bool = True) -> str:
        return self.netns.exec(*argv, check=check)

    def ping(self, destination: str, count: int = 1, timeout: float = 1.0) -> bool:
        """ICMP echo from the host (this machine has no ping binary); True if answered."""
        proc = subprocess.run(
            [IP, "netns", "exec", self.netns.name, PYTHON, "-c", _PING_SOURCE, destination,
             str(count), str(timeout)],
            capture_output=True, timeout=10 + count * timeout, check=False,
        )  # fmt: skip
        return proc.returncode == 0


# Echo request over a raw socket: a few lines instead of depending on iputils-ping.
_PING_SOURCE = """
import os, select, socket, struct, sys, time
dst, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in dst
sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                     socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
for seq in range(count):
    body = struct.pack("!HH", ident, seq) + b"evpn-fabric-ping"
    header = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
    if not v6:  # the kernel fills the ICMPv6 checksum
        header = struct.pack("!BBH", 8, 0, checksum(header + body))
    sock.sendto(header + body, (dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        packet, source = sock.recvfrom(2048)
        icmp = packet if v6 else packet[(packet[0] & 15) * 4:]
        reply = 129 if v6 else 0
        if icmp[0] == reply and icmp[4:6] == struct.pack("!H", ident):
            sys.exit(0)
sys.exit(1)
"""


@dataclass
class Speaker:
    """Our launcher (ExaBGP + EVPN commands) running in a box, tracked by PID."""

    box: Box
    process: subprocess.Popen[bytes]
    config: Path
    stderr_path: Path
    stdout_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM ExaBGP (it stops its API processes), then clean up any leftovers."""
        if self.process.poll() is None:
            children = _children(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            stop_pids([pid for pid in children if _pid_alive(pid)], timeout=2)

    def logs(self) -> str:
        return f"--- {self.stderr_path}\n{self.stderr_path.read_text()[-6000:]}"


@dataclass
class AgentProcess(Speaker):
    """``evpn-agent run`` (ExaBGP through our launcher, the agent core under it)."""

    socket: Path = Path()

    def cli(self, *args: str, check: bool = True) -> str:
        """``evpn-agent ARGS --socket S`` inside the box."""
        return self.box.exec(
            PYTHON, "-m", "evpn_agent.cli", *args, "--socket", str(self.socket), check=check
        )

    def cli_argv(self, *args: str) -> str:
        """The shell words of ``evpn-agent ARGS --socket S`` (for checking exit codes)."""
        words = [PYTHON, "-m", "evpn_agent.cli", *args, "--socket", str(self.socket)]
        return " ".join(shlex.quote(w) for w in words)

    def show_vni(self) -> list[dict[str, Any]]:
        """``show vni --json`` rows (the CLI prints FRR's map keyed by VNI)."""
        by_vni: dict[str, dict[str, Any]] = json.loads(self.cli("show", "vni", "--json"))
        return list(by_vni.values())

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the core answers on its control socket. ExaBGP may bring the session up
        before the core has bound netlink, dumped the kernel and opened the socket."""
        from evpn_agent import control

        def answers() -> bool:
            if not self.running():
                raise RuntimeError(f"evpn-agent in {self.box.name} exited\n{self.logs()}")
            control.request(str(self.socket), "show peers", timeout=2.0)
            return True

        wait_until(
            answers,
            timeout,
            f"evpn-agent in {self.box.name} to answer",
            retry_on=(control.ControlError,),
        )

    def core_pid(self) -> int | None:
        """PID of the agent core (ExaBGP's API process), if it runs."""
        for pid in _children(self.pid):
            if "evpn_agent.core" in _cmdline(pid):
                return pid
        return None


@dataclass
class PeerScript:
    """tests/speaker_peer.py as the speaker's API process: records every line ExaBGP
    sends it, sends ``on_up`` on each session up, and forwards lines written to its FIFO.
    """

    speaker: Speaker
    record: Path
    fifo: Path

    def send(self, *lines: str, timeout: float = 10.0) -> None:
        """Hand command lines to the peer script, which writes them to ExaBGP."""
        data = "".join(line.rstrip("\n") + "\n" for line in lines).encode()

        deadline = time.monotonic() + timeout
        while True:
            try:
                # O_NONBLOCK: fails with ENXIO until the script has the FIFO open to read
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if time.monotonic() >= deadline or not self.speaker.running():
                    raise
                time.sleep(0.02)
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    def lines(self) -> list[str]:
        """Every line received so far, as ExaBGP wrote it (JSON, ``done``, ``error``)."""
        try:
            return self.record.read_text().splitlines()
        except FileNotFoundError:
            return []

    def messages(self) -> list[dict[str, Any]]:
        """The JSON lines received so far, decoded."""
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    def acks(self) -> list[str]:
        return [line for line in self.lines() if line in ("done", "error")]


# ---------------------------------------------------------------- the fabric


class Fabric:
    """Namespaces, FRR and speakers for one test; a context manager that cleans up."""

    def __init__(
        self,
        prefix: str = "evf",
        workdir: Path | None = None,
        *,
        switch: bool = True,
        underlay6: bool = False,
    ) -> None:
        """``switch=False``: no underlay switch namespace (``add_box`` needs it); for
        callers that wire their own topology from bare namespaces (:meth:`add_namespace`).
        ``underlay6=True``: an IPv6-only underlay (:data:`UNDERLAY6`): boxes, VTEPs, BGP
        sessions and next hops in IPv6; router-ids stay IPv4 (``192.0.2.<octet>``).
        """
        self.underlay6 = underlay6
        if len(prefix) > 8:
            raise ValueError("prefix is at most 8 characters")
        self.tag = f"{prefix}{os.getpid()}{secrets.token_hex(2)}"
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # FRR runs as user frr and must reach its state dir
        self.namespaces: list[Netns] = []
        self.boxes: dict[str, Box] = {}
        self.hosts: dict[str, Host] = {}
        self.speakers: list[Speaker] = []
        self._closed = False
        try:
            if switch:
                self.switch = self._add_netns("sw")
                self.switch.ip("link", "add", "sw", "type", "bridge", "stp_state", "0")
                self.switch.ip("link", "set", "sw", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- namespaces

    def _add_netns(self, name: str) -> Netns:
        netns = Netns(f"{self.tag}-{name}")
        run([IP, "netns", "add", netns.name])
        self.namespaces.append(netns)  # tracked before anything else can fail
        netns.ip("link", "set", "lo", "up")
        # no IPv6 duplicate address detection: addresses are usable at once, no waiting
        for scope in ("all", "default"):
            netns.exec("sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        return netns

    def _check_name(self, name: str) -> None:
        # "p-<name>" names the switch port and must fit IFNAMSIZ (15)
        if not name.isalnum() or len(name) > 12:
            raise ValueError(f"name {name!r}: use up to 12 letters/digits")
        if name in self.boxes or name in self.hosts:
            raise ValueError(f"name {name!r} is taken")

    def add_namespace(self, name: str) -> Netns:
        """A bare namespace ``<tag>-<name>`` (lo up, no DAD) that close() deletes; the
        caller wires it (the lab's containerlab runner)."""
        self._check_name(name)
        if any(netns.name == f"{self.tag}-{name}" for netns in self.namespaces):
            raise ValueError(f"name {name!r} is taken")
        return self._add_netns(name)

    # -- boxes

    def add_box(self, name: str, octet: int) -> Box:
        """A namespace on the underlay with ``192.0.2.<octet>/24`` on ``eth0``
        (``2001:db8::<octet>/64`` with ``underlay6``; the octet's digits read as hex)."""
        self._check_name(name)
        router_id = str(UNDERLAY[octet])
        if self.underlay6:
            network: ipaddress.IPv4Network | ipaddress.IPv6Network = UNDERLAY6
            address = str(ipaddress.IPv6Address(f"{UNDERLAY6[0]}{octet}"))
        else:
            network, address = UNDERLAY, router_id
        netns = self._add_netns(name)
        port = f"p-{name}"
        self.switch.ip(
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns.name
        )
        self.switch.ip("link", "set", port, "master", "sw", "up")
        netns.ip("address", "add", f"{address}/{network.prefixlen}", "dev", "eth0")
        netns.ip("link", "set", "eth0", "up")
        directory = self.workdir / name
        directory.mkdir()
        box = Box(name, netns, address, directory, router_id=router_id)
        self.boxes[name] = box
        return box

    def start_frr(self, box: Box, bgpd_config: str) -> Frr:
        frr = Frr(box.netns, box.directory / "frr")
        frr.directory.mkdir()
        box.frr = frr  # tracked before start so close() stops a half-started FRR
        frr.start(bgpd_config, box.name)
        return frr

    def add_route_reflector(
        self, name: str = "rr", octet: int = 1, *, password: str | None = None
    ) -> Box:
        box = self.add_box(name, octet)
        config = render_rr_config(
            router_id=box.router_id,
            log_file=box.directory / "frr" / "bgpd.log",
            listen_range=str(UNDERLAY6 if self.underlay6 else UNDERLAY),
            password=password,
            hostname=name,
        )
        self.start_frr(box, config)
        return box

    def add_frr_vtep(self, name: str, octet: int, *, rrs: Sequence[Box]) -> Box:
        """An FRR VTEP; add VNIs with ``box.add_vni()`` (before or after start)."""
        box = self.add_box(name, octet)
        config = render_vtep_config(
            router_id=box.router_id,
            route_reflectors=[rr.address for rr in rrs],
            log_file=box.directory / "frr" / "bgpd.log",
            hostname=name,
        )
        self.start_frr(box, config)
        return box

    # -- hosts

    def add_host(
        self,
        name: str,
        box: Box,
        vni: int,
        address: str,
        mac: str | None = None,
        *,
        extra_addresses: Sequence[str] = (),
        ipv6: bool = True,
    ) -> Host:
        """A host namespace whose ``eth0`` is a port of ``box``'s bridge for ``vni``.

        ``address`` and ``extra_addresses`` carry a prefix length, e.g. 198.51.100.1/24.
        ``ipv6=False``: IPv6 is off on ``eth0`` before it comes up, so an IPv4 host sends
        nothing (no MLD, no router solicitation) until the caller makes it.
        """
        self._check_name(name)
        for each in (address, *extra_addresses):
            _tenant(each)
        mac = mac or "02:00:5e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
        netns = self._add_netns(name)
        port = f"h-{name}"
        box.netns.ip(
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns.name
        )
        box.netns.ip("link", "set", port, "master", box.vnis[vni].bridge, "up")
        netns.ip("link", "set", "eth0", "address", mac)
        for each in (address, *extra_addresses):
            netns.ip("address", "add", each, "dev", "eth0")
        if not ipv6:
            netns.exec("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1")
        netns.ip("link", "set", "eth0", "up")
        host = Host(name, netns, box, vni, address, mac, tuple(extra_addresses))
        self.hosts[name] = host
        return host

    def del_host(self, host: Host) -> None:
        """Unplug and delete a host (its MAC ages out of the box's bridge at once)."""
        host.box.netns.ip("link", "del", f"h-{host.name}", check=False)
        self._delete_netns(host.netns)
        del self.hosts[host.name]

    # -- BGP helpers

    def wait_established(self, box: Box, peer: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: box.evpn_peer_state(peer) == "Established",
            timeout,
            f"{box.name}: l2vpn evpn session with {peer} established",
            retry_on=(CommandError, json.JSONDecodeError),
        )

    # -- speakers

    def start_speaker(
        self,
        box: Box,
        *,
        peers: Sequence[Box],
        process_argv: Sequence[str],
        hold_time: int = 9,
        password: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Speaker:
        """Run ``python -m evpn_agent.speaker CONF`` in ``box`` (ExaBGP connects out)."""
        from evpn_agent import exabgp_conf

        config = box.directory / "exabgp.conf"
        config.write_text(
            exabgp_conf.render(
                router_id=box.router_id,
                local_as=ASN,
                local_address=box.address,
                peers=[
                    exabgp_conf.PeerSpec(peer.address, password=password, hold_time=hold_time)
                    for peer in peers
                ],
                process_argv=process_argv,
            )
        )
        stdout_path = box.directory / "speaker.stdout"
        stderr_path = box.directory / "speaker.stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [IP, "netns", "exec", box.netns.name, PYTHON, "-m", "evpn_agent.speaker",
                 str(config)],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=REPO_ROOT,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        speaker = Speaker(box, process, config, stderr_path, stdout_path)
        self.speakers.append(speaker)
        return speaker

    def start_peer_script(
        self,
        box: Box,
        *,
        peers: Sequence[Box],
        on_up: Sequence[str] = (),
        hold_time: int = 9,
        password: str | None = None,
    ) -> PeerScript:
        """A speaker whose API process is tests/speaker_peer.py (see PeerScript)."""
        record = box.directory / "received.jsonl"
        fifo = box.directory / "commands.fifo"
        os.mkfifo(fifo, 0o600)
        argv = [PYTHON, str(PEER_SCRIPT), "--record", str(record), "--commands", str(fifo)]
        if on_up:
            on_up_path = box.directory / "on_up.txt"
            on_up_path.write_text("".join(line + "\n" for line in on_up))
            argv += ["--on-up", str(on_up_path)]
        speaker = self.start_speaker(
            box, peers=peers, process_argv=argv, hold_time=hold_time, password=password
        )
        return PeerScript(speaker, record, fifo)

    # -- evpn-agent VTEPs

    def add_agent_vtep(self, name: str, octet: int) -> Box:
        """A VTEP box for evpn-agent; add VNIs, then ``start_agent``."""
        return self.add_box(name, octet)

    def start_agent(
        self,
        box: Box,
        *,
        rrs: Sequence[Box],
        settings: dict[str, Any] | None = None,
        hold_time: int = 9,
        new_session: bool = False,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> AgentProcess:
        """``evpn-agent run`` in ``box`` with a YAML config naming ``rrs``.

        ``new_session``: run it in its own session, so that it outlives the caller's
        terminal (a hangup signals the whole session); for fabrics that :meth:`detach`.
        ``env``: added to the environment (ExaBGP's settings, e.g. ``exabgp_tcp_bind``).
        ``wait``: return once the core answers on its control socket.
        """
        socket_path = box.directory / "evpn-agent.sock"
        config = {
            "local-as": ASN,
            "route-reflectors": [{"address": rr.address, "hold-time": hold_time} for rr in rrs],
            "control-socket": str(socket_path),
            "state-dir": str(box.directory / "state"),
            "sweep-delay": 2,
            "log-level": "debug" if os.environ.get("EVPN_AGENT_DEBUG") else "info",
            # an IPv6 VTEP cannot be the router-id: the agent requires it set
            **({"router-id": box.router_id} if box.router_id != box.address else {}),
            **(settings or {}),
        }
        config_path = box.directory / "evpn-agent.yaml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        stdout_path = box.directory / "agent.stdout"
        stderr_path = box.directory / "agent.stderr"
        with stdout_path.open("ab") as stdout, stderr_path.open("ab") as stderr:
            process = subprocess.Popen(
                [IP, "netns", "exec", box.netns.name, PYTHON, "-m", "evpn_agent.cli", "run",
                 "--config", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=REPO_ROOT,
                start_new_session=new_session, env=None if env is None else {**os.environ, **env},
            )  # fmt: skip
        agent = AgentProcess(box, process, config_path, stderr_path, stdout_path, socket_path)
        self.speakers.append(agent)
        if wait:
            agent.wait_ready()
        return agent

    # -- diagnostics and teardown

    def logs(self) -> str:
        """Tails of every FRR and speaker log, for assertion messages."""
        parts = [box.frr.logs() for box in self.boxes.values() if box.frr is not None]
        parts += [speaker.logs() for speaker in self.speakers]
        return "\n".join(parts)

    def _delete_netns(self, netns: Netns) -> None:
        # whatever still runs in a namespace we created was started by us: stop it by PID
        stop_pids(netns.pids(), timeout=2)
        run([IP, "netns", "del", netns.name], check=False)
        with contextlib.suppress(ValueError):
            self.namespaces.remove(netns)

    def detach(self) -> None:
        """Leave everything running and make close() a no-op: the caller has recorded the
        namespaces and PIDs (the lab's state file) and tears down from that record."""
        self._closed = True

    def close(self) -> None:
        """Stop our processes (by PID) and delete our namespaces; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        steps: list[Callable[[], None]] = [speaker.stop for speaker in self.speakers]
        steps += [box.frr.stop for box in self.boxes.values() if box.frr is not None]
        steps += [
            functools.partial(self._delete_netns, netns) for netns in reversed(self.namespaces)
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep cleaning up; report at the end
                errors.append(exc)
        if self._own_workdir and not os.environ.get("FABRIC_KEEP_WORKDIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError(f"fabric cleanup had {len(errors)} error(s): {errors}")


@contextlib.contextmanager
def fabric(prefix: str = "evf") -> Iterator[Fabric]:
    """``with fabric() as fab:`` -- same as ``with Fabric(prefix) as fab:``."""
    with Fabric(prefix) as fab:
        yield fab
