"""The Fabric: namespaces, FRR and speakers for one test, cleaned up by PID on close."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lab.fabric.addressing import ASN, UNDERLAY, UNDERLAY6, tenant
from lab.fabric.boxes import Box
from lab.fabric.cpu_groups import CpuGroups, cpu_cgroup_root
from lab.fabric.environment import IP, PEER_SCRIPT, PYTHON, REPO_ROOT, compile_agent
from lab.fabric.frr import ZEBRA_ARGS, Frr
from lab.fabric.frr_config import render_rr_config, render_vtep_config
from lab.fabric.hosts import Host
from lab.fabric.netns import Netns
from lab.fabric.procs import CommandError, run, stop_pids
from lab.fabric.speakers import (
    AGENT_CLI_MODULE,
    SPEAKER_MODULE,
    AgentProcess,
    PeerScript,
    Speaker,
)
from lab.fabric.wait import wait_until


class Fabric:
    """Namespaces, FRR and speakers for one test; a context manager that cleans up."""

    def __init__(
        self,
        prefix: str = "evf",
        workdir: Path | None = None,
        *,
        switch: bool = True,
        underlay6: bool = False,
        cpu_groups: bool = False,
    ) -> None:
        """``switch=False``: no underlay switch namespace (``add_box`` needs it); for
        callers that wire their own topology from bare namespaces (:meth:`add_namespace`).
        ``underlay6=True``: an IPv6-only underlay (:data:`UNDERLAY6`): boxes, VTEPs, BGP
        sessions and next hops in IPv6; router-ids stay IPv4 (``192.0.2.<octet>``).
        ``cpu_groups=True``: each box's daemons (FRR's, the agent's) run in a CPU cgroup of
        their own, as systemd runs each service; for benchmarks (see
        :mod:`lab.fabric.cpu_groups`).
        """
        self.underlay6 = underlay6
        if len(prefix) > 8:
            raise ValueError("prefix is at most 8 characters")
        self.tag = f"{prefix}{os.getpid()}{secrets.token_hex(2)}"
        self.cpu_groups = CpuGroups(self.tag, cpu_cgroup_root()) if cpu_groups else None
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
        # Tracked first: a half-made namespace (the command timed out) is deleted too.
        self.namespaces.append(netns)
        # The kernel frees namespaces in the background: right after a fabric of thousands
        # of devices went (bench_scale), making one waited over 30 s here.
        run([IP, "netns", "add", netns.name], timeout=300)
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

    def start_frr(
        self, box: Box, bgpd_config: str, *, zebra_args: Sequence[str] = ZEBRA_ARGS
    ) -> Frr:
        """zebra and bgpd in ``box`` (see :meth:`Frr.start` for ``zebra_args``)."""
        frr = Frr(box.netns, box.directory / "frr", launch_prefix=self._launch_prefix(box))
        frr.directory.mkdir()
        box.frr = frr  # tracked before start so close() stops a half-started FRR
        frr.start(bgpd_config, box.name, zebra_args=zebra_args)
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
            tenant(each)
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
        from evpn_agent.speaker import conf as exabgp_conf

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
        compile_agent()
        stdout_path = box.directory / "speaker.stdout"
        stderr_path = box.directory / "speaker.stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [*self._launch_prefix(box), IP, "netns", "exec", box.netns.name, PYTHON, "-m",
                 SPEAKER_MODULE, str(config)],
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
        # the script records ExaBGP's JSON: every UPDATE decoded by ExaBGP, no wire-update
        speaker = self.start_speaker(
            box, peers=peers, process_argv=argv, hold_time=hold_time, password=password,
            env={"EVPN_AGENT_WIRE_RECEIVE": "off"},
        )  # fmt: skip
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
        code: Path | None = None,
    ) -> AgentProcess:
        """``evpn-agent run`` in ``box`` with a YAML config naming ``rrs``.

        ``new_session``: run it in its own session, so that it outlives the caller's
        terminal (a hangup signals the whole session); for fabrics that :meth:`detach`.
        ``env``: added to the environment (ExaBGP's settings, e.g. ``exabgp_tcp_bind``).
        ``wait``: return once the core answers on its control socket.
        ``code``: another checkout of the repository whose agent to run (A/B benchmarks),
        with the same interpreter: its processes start in it, and ``python -m`` puts the
        working directory first on the path.
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
        compile_agent()
        stdout_path = box.directory / "agent.stdout"
        stderr_path = box.directory / "agent.stderr"
        with stdout_path.open("ab") as stdout, stderr_path.open("ab") as stderr:
            process = subprocess.Popen(
                [*self._launch_prefix(box), IP, "netns", "exec", box.netns.name, PYTHON, "-m",
                 AGENT_CLI_MODULE, "run", "--config", str(config_path)],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=code or REPO_ROOT,
                start_new_session=new_session, env=None if env is None else {**os.environ, **env},
            )  # fmt: skip
        agent = AgentProcess(box, process, config_path, stderr_path, stdout_path, socket_path)
        self.speakers.append(agent)
        if wait:
            agent.wait_ready()
        return agent

    def _launch_prefix(self, box: Box) -> list[str]:
        return self.cpu_groups.prefix(box.name) if self.cpu_groups is not None else []

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
        if self.cpu_groups is not None:
            steps.append(self.cpu_groups.close)
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
