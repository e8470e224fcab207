"""Realise a topology plan (lab/topology.py) with network namespaces, and take it down.

:func:`build` uses :class:`lab.fabric.Fabric` for namespaces, FRR and evpn-agent
processes, then *detaches*: everything keeps running after the command returns, and a
state file (:class:`LabState`, JSON) records the namespaces, PIDs and work directory.
:func:`teardown` removes the lab from that record, or, when the record is lost (a crash,
a deleted file), from the namespaces named with the lab's prefix: only PIDs inside those
namespaces are stopped, never anything found by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.fabric import (
    IP,
    PYTHON,
    REPO_ROOT,
    Box,
    CommandError,
    Fabric,
    Frr,
    Netns,
    agent_cli_argv,
    agent_core_pid,
    pid_alive,
    run,
    stop_pids,
)
from lab.topology import FRR_ROLES, VTEP_ROLES, Node, Plan

DEFAULT_PREFIX = "evpnlab"  # namespaces are evpnlab<pid><hex>-<node>
DEFAULT_STATE_DIR = Path("/run/evpn-agent-lab")
STATE_FILE = "state.json"
PINGER = Path(__file__).resolve().parent / "pinger.py"

Note = Callable[[str], None]


# ---------------------------------------------------------------- the record


@dataclass
class NodeRecord:
    role: str
    netns: str
    address: str | None = None
    directory: str | None = None
    agent_pid: int | None = None  # ExaBGP (evpn-agent run execs it)
    agent_socket: str | None = None


@dataclass
class LabState:
    prefix: str
    tag: str
    topology: str
    workdir: str
    created: float
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    version: int = 1

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / STATE_FILE

    def save(self, state_dir: Path) -> None:
        path = self.path(state_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)  # never a half-written record

    @classmethod
    def load(cls, state_dir: Path) -> LabState | None:
        try:
            doc = json.loads(cls.path(state_dir).read_text())
            nodes = {name: NodeRecord(**rec) for name, rec in doc.pop("nodes").items()}
            return cls(nodes=nodes, **doc)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RuntimeError(f"unreadable lab state {cls.path(state_dir)}: {exc}") from None

    # -- handles on the running lab

    def netns(self, node: str) -> Netns:
        return Netns(self.nodes[node].netns)

    def frr(self, node: str) -> Frr:
        directory = self.nodes[node].directory
        if directory is None or self.nodes[node].role not in FRR_ROLES:
            raise ValueError(f"{node} runs no FRR")
        return Frr(self.netns(node), Path(directory) / "frr")

    def core_pid(self, node: str) -> int | None:
        """The agent core's PID (ExaBGP's API process), if it runs."""
        pid = self.nodes[node].agent_pid
        if pid is None or not pid_alive(pid):
            return None
        return agent_core_pid(pid)

    def agent_cli(self, node: str, *args: str, check: bool = True) -> str:
        """``evpn-agent ARGS --socket S`` in the node's namespace: the real CLI."""
        socket = self.nodes[node].agent_socket or ""
        netns = self.nodes[node].netns
        return run([IP, "netns", "exec", netns, *agent_cli_argv(socket, *args)], check=check)

    def existing_namespaces(self) -> list[str]:
        present = set(list_namespaces())
        return [rec.netns for rec in self.nodes.values() if rec.netns in present]


# ---------------------------------------------------------------- helpers


def list_namespaces() -> list[str]:
    out = run([IP, "-j", "netns", "list"], check=False).strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def lab_namespaces(prefix: str) -> list[str]:
    """Namespaces with the lab's unique prefix (Fabric names: <prefix><pid><hex>-<node>)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\d+[0-9a-f]{{4}}-[A-Za-z0-9]+$")
    return [name for name in list_namespaces() if pattern.match(name)]


def netns_of(pid: int) -> str | None:
    out = run([IP, "netns", "identify", str(pid)], check=False).strip()
    return out or None


def in_netns(
    netns: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 90
) -> str:
    """Run argv in ``netns`` with extra environment; stdout, or CommandError with stderr."""
    full = [IP, "netns", "exec", netns, *argv]
    proc = subprocess.run(
        full, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})}, cwd=REPO_ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CommandError(proc.returncode, full, proc.stdout, proc.stderr)
    return proc.stdout


def frr_daemon_config(text: str, log_file: Path) -> str:
    """The clab node's frr.conf for bgpd, logging to our work directory instead."""
    lines = [line for line in text.splitlines() if not line.startswith("log ")]
    return f"log file {log_file}\n" + "\n".join(lines) + "\n"


def agent_settings(config: Path, directory: Path) -> dict[str, Any]:
    """The node's evpn-agent YAML, with the paths every leaf would share on one machine
    (control socket, state directory) moved into the leaf's own directory."""
    doc = yaml.safe_load(config.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{config}: not a mapping")
    return {
        **doc,
        "control-socket": str(directory / "evpn-agent.sock"),
        "state-dir": str(directory / "state"),
    }


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One lab command at a time per state directory."""
    import fcntl

    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------- build


def _exec_node(netns: str, node: Node, argv: list[str], note: Note) -> None:
    out = in_netns(netns, argv, env=node.env)
    for line in out.splitlines():
        if line.strip():
            note(f"{node.name}: {line.strip()}")


def build(plan: Plan, *, prefix: str, state_dir: Path, note: Note) -> tuple[LabState, float]:
    """Build ``plan``, start its daemons, detach and save the record.

    Returns the record and the monotonic time the first routing daemon started. On any
    failure, everything built so far is removed before the exception propagates.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # FRR runs as user frr and must reach its files in here
    workdir = state_dir / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    fab = Fabric(prefix, workdir=workdir, switch=False)
    state = LabState(prefix, fab.tag, str(plan.source), str(workdir), time.time())
    try:
        started = _build(fab, plan, state, note)
        state.save(state_dir)
    except BaseException:
        fab.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    fab.detach()
    return state, started


def _build(fab: Fabric, plan: Plan, state: LabState, note: Note) -> float:
    boxes: dict[str, Box] = {}
    for node in plan.nodes.values():
        netns = fab.add_namespace(node.name)
        directory = fab.workdir / node.name
        directory.mkdir()
        state.nodes[node.name] = NodeRecord(node.role, netns.name, node.address, str(directory))
        boxes[node.name] = Box(node.name, netns, node.address or "", directory)

    for link in plan.links:
        a, b = boxes[link.a.node].netns, boxes[link.b.node].netns
        a.ip("link", "add", link.a.interface, "type", "veth", "peer", "name", link.b.interface,
             "netns", b.name)  # fmt: skip
        for netns, interface in ((a, link.a.interface), (b, link.b.interface)):
            netns.ip("link", "set", interface, "mtu", str(link.mtu), "up")

    # Hosts before VTEPs: a host's MAC and settings are final before a bridge can learn
    # it, or the VTEPs would advertise the random MAC its NIC came up with.
    order = ("switch", "host", "route-reflector", "agent-vtep", "frr-vtep")
    for node in sorted(plan.nodes.values(), key=lambda n: order.index(n.role)):
        where = boxes[node.name].netns.name
        if node.role == "agent-vtep" and node.entrypoint:
            # the image's entrypoint with no command: builds the bridges, then returns
            _exec_node(where, node, node.host_argv(node.entrypoint), note)
        for command in node.exec:
            _exec_node(where, node, node.host_argv(command), note)

    started = time.monotonic()
    for node in plan.by_role(*FRR_ROLES):
        assert node.frr_config is not None
        box = boxes[node.name]
        fab.boxes[node.name] = box  # so that close() stops FRR if the build fails
        config = frr_daemon_config(node.frr_config.read_text(), box.directory / "frr" / "bgpd.log")
        fab.start_frr(box, config)
    for node in plan.by_role("agent-vtep"):
        assert node.agent_config is not None
        box = boxes[node.name]
        settings = agent_settings(node.agent_config, box.directory)
        agent = fab.start_agent(box, rrs=[], settings=settings, new_session=True, wait=False)
        record = state.nodes[node.name]
        record.agent_pid = agent.pid
        record.agent_socket = settings["control-socket"]
    return started


# ---------------------------------------------------------------- teardown


def teardown(state_dir: Path, prefix: str, note: Note) -> bool:
    """Remove the lab recorded in ``state_dir`` and any namespace with ``prefix``.

    True if there was anything to remove.
    """
    state = LabState.load(state_dir)
    names = set(lab_namespaces(prefix))
    if state is not None:
        names |= set(state.existing_namespaces())
        # FRR by its pidfiles, ExaBGP by its recorded PID: only while it still runs in
        # one of our namespaces (a recycled PID elsewhere is left alone)
        for node, rec in state.nodes.items():
            if rec.role in FRR_ROLES and rec.netns in names:
                state.frr(node).stop()
            if rec.agent_pid is not None and netns_of(rec.agent_pid) in names:
                stop_pids([rec.agent_pid], timeout=5)
    elif names:
        note(f"no record in {LabState.path(state_dir)}; removing namespaces named {prefix}*")
    for name in sorted(names):
        # anything still inside a namespace of ours was started by the lab
        stop_pids(Netns(name).pids(), timeout=3)
        run([IP, "netns", "del", name], check=False)
    workdir = Path(state.workdir) if state is not None else state_dir / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        LabState.path(state_dir).unlink()
    return state is not None or bool(names)


# ---------------------------------------------------------------- probes


def _pinger(state: LabState, host: str, *args: str, stdin: int | None = None) -> Any:
    """lab/pinger.py in the host's namespace (stdout piped, text)."""
    return subprocess.Popen(
        [IP, "netns", "exec", state.nodes[host].netns, PYTHON, str(PINGER), *args],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def ping_matrix(
    state: LabState, sources: Mapping[str, Sequence[str]], timeout: float
) -> dict[str, dict[str, float | None]]:
    """From each host node to its destination addresses at once: RTT in ms or None."""
    procs = {
        host: _pinger(state, host, "matrix", "--timeout", str(timeout), *dsts)
        for host, dsts in sources.items()
        if dsts
    }
    out: dict[str, dict[str, float | None]] = {}
    for host, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=timeout + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"pinger in {host} failed: {stderr.strip()}")
        out[host] = json.loads(stdout)
    return out


class PingStream:
    """Continuous pings from hosts (one process per host) until :meth:`stop`."""

    def __init__(self, state: LabState, sources: Mapping[str, Sequence[str]], interval: float):
        self.procs = {
            host: _pinger(
                state, host, "stream", "--interval", str(interval), *dsts, stdin=subprocess.PIPE
            )
            for host, dsts in sources.items()
        }
        for host, proc in self.procs.items():
            if proc.stdout.readline().strip() != "started":
                self.stop()
                raise RuntimeError(f"pinger in {host} did not start: {proc.stderr.read()}")

    def stop(self) -> dict[str, dict[str, dict[str, float]]]:
        """Stop pinging; per host and destination: sent, received, lost, longest outage."""
        results: dict[str, dict[str, dict[str, float]]] = {}
        for proc in self.procs.values():
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()  # end of input: the pinger reports and exits
        for host, proc in self.procs.items():
            stdout = proc.stdout.read()
            proc.stderr.read()
            proc.wait(timeout=30)
            results[host] = json.loads(stdout) if proc.returncode == 0 else {}
        return results


def vtysh(state: LabState, node: str, *commands: str) -> str:
    return state.frr(node).vtysh(*commands)


def evpn_peers(state: LabState, rr: str) -> dict[str, str]:
    """Peer address -> BGP state in the RR's l2vpn evpn summary ({} if it does not answer)."""
    try:
        summary = json.loads(vtysh(state, rr, "show bgp l2vpn evpn summary json") or "{}")
    except (CommandError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {peer: str(info.get("state")) for peer, info in summary.get("peers", {}).items()}


def vtep_nodes(state: LabState) -> list[str]:
    return [name for name, rec in state.nodes.items() if rec.role in VTEP_ROLES]
