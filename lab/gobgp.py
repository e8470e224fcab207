"""GoBGP as an EVPN route reflector in a box of the lab fabric.

    with Fabric() as fab:
        rr = fab.add_box("rr", 1)                             # 192.0.2.1, nothing runs yet
        vtep = fab.add_frr_vtep("vtep1", 11, rrs=[rr])
        gobgp = start_gobgp(rr, [Client(vtep.address)])
        gobgp.wait_established(vtep.address)
        gobgp.evpn_rib()                                      # the reflector's l2vpn-evpn table

GoBGP's neighbors are static (one per VTEP, passive: the VTEPs connect, as they do to the
FRR reflector), so the VTEP addresses must be known before it starts. gobgpd runs inside
the box's namespace with its gRPC API on that namespace's loopback only; ``gobgp`` talks
to it from inside the namespace. It logs to ``gobgpd.log`` in the box directory and is
stopped by PID (its process, not a name).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.fabric import ASN, IP, Box, CommandError, wait_until

GOBGPD = shutil.which("gobgpd") or "/usr/bin/gobgpd"
GOBGP = shutil.which("gobgp") or "/usr/bin/gobgp"
# gRPC on the namespace's own loopback: unreachable from any other namespace.
API_HOST = "127.0.0.1"
API_PORT = 50051
# gobgp -j prints the session state as the number of its gRPC enum (apipb.PeerState)
SESSION_STATES = ("unknown", "idle", "connect", "active", "opensent", "openconfirm", "established")


def missing_requirements() -> list[str]:
    """Why GoBGP cannot run here (empty when it can)."""
    return [tool for tool in (GOBGPD, GOBGP) if not shutil.which(tool)]


@dataclass(frozen=True)
class Client:
    """A route-reflector client of GoBGP (a VTEP).

    ``graceful_restart``: GoBGP advertises graceful restart (RFC 4724) with l2vpn-evpn to
    this client, ``restart_time`` seconds; off (GoBGP's default), it advertises none. Once
    negotiated, GoBGP sends End-of-RIB (3.10 sends it to no one else) and keeps the
    client's routes, marked stale, when its session ends without a NOTIFICATION.
    """

    address: str
    graceful_restart: bool = False
    restart_time: int = 120
    hold_time: int = 9  # as the FRR reflector's "timers 3 9"
    keepalive: int = 3


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string of addresses is a valid TOML basic string


def render_config(
    *,
    router_id: str,
    listen_address: str,
    clients: Sequence[Client],
    asn: int = ASN,
    cluster_id: str | None = None,
) -> str:
    """gobgpd's TOML: iBGP l2vpn-evpn route reflector, one passive neighbor per client."""
    lines = [
        "[global.config]",
        f"  as = {asn}",
        f"  router-id = {_toml_str(router_id)}",
        f"  local-address-list = [{_toml_str(listen_address)}]",
        "  port = 179",
    ]
    for client in clients:
        lines += [
            "",
            "[[neighbors]]",
            "  [neighbors.config]",
            f"    neighbor-address = {_toml_str(client.address)}",
            f"    peer-as = {asn}",
            "  [neighbors.timers.config]",
            f"    hold-time = {client.hold_time}",
            f"    keepalive-interval = {client.keepalive}",
            "  [neighbors.transport.config]",
            "    passive-mode = true",
            f"    local-address = {_toml_str(listen_address)}",
            "  [neighbors.route-reflector.config]",
            "    route-reflector-client = true",
            f"    route-reflector-cluster-id = {_toml_str(cluster_id or router_id)}",
        ]
        if client.graceful_restart:
            lines += [
                "  [neighbors.graceful-restart.config]",
                "    enabled = true",
                f"    restart-time = {client.restart_time}",
            ]
        lines += [
            "  [[neighbors.afi-safis]]",
            "    [neighbors.afi-safis.config]",
            '      afi-safi-name = "l2vpn-evpn"',
        ]
        if client.graceful_restart:
            # GoBGP then lists l2vpn-evpn in its own capability (forwarding kept), for
            # clients that help it restart (not tested here). As a helper it keeps the
            # families the client lists, with or without this.
            lines += [
                "    [neighbors.afi-safis.mp-graceful-restart.config]",
                "      enabled = true",
            ]
    return "\n".join(lines) + "\n"


@dataclass
class Gobgp:
    """A gobgpd started by :func:`start_gobgp`, tracked by its PID."""

    box: Box
    process: subprocess.Popen[bytes]
    config: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def cli(self, *args: str, check: bool = True) -> str:
        """``gobgp ARGS`` against this gobgpd, from inside its namespace."""
        return self.box.exec(GOBGP, "-u", API_HOST, "-p", str(API_PORT), *args, check=check)

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli("-j", *args) or "null")

    def neighbors(self) -> list[dict[str, Any]]:
        """``gobgp neighbor -j``: one object per configured neighbor."""
        return list(self.cli_json("neighbor") or [])

    def neighbor(self, address: str) -> dict[str, Any]:
        """``gobgp neighbor ADDRESS -j``: state, capabilities, message counters."""
        found: dict[str, Any] = self.cli_json("neighbor", address)
        return found

    def session_state(self, address: str) -> str | None:
        """The neighbor's session state (``established``, ``active``, ...), None if unknown."""
        for entry in self.neighbors():
            if entry.get("conf", {}).get("neighbor_address") == address:
                number = entry.get("state", {}).get("session_state", 0)
                return SESSION_STATES[number] if 0 <= number < len(SESSION_STATES) else None
        return None

    def wait_established(self, address: str, timeout: float = 30.0) -> None:
        def established() -> bool:
            if not self.running():
                raise RuntimeError(f"gobgpd in {self.box.name} exited\n{self.logs()}")
            return self.session_state(address) == "established"

        wait_until(
            established,
            timeout,
            f"GoBGP in {self.box.name}: session with {address} established",
            retry_on=(CommandError, json.JSONDecodeError),
        )

    def evpn_rib(self) -> dict[str, list[dict[str, Any]]]:
        """``gobgp global rib -a evpn -j``: the paths of every EVPN prefix, by prefix."""
        rib: dict[str, list[dict[str, Any]]] = self.cli_json("global", "rib", "-a", "evpn")
        return rib or {}

    def answers(self) -> bool:
        """True once the API answers; raises if gobgpd has exited."""
        if not self.running():
            raise RuntimeError(f"gobgpd in {self.box.name} exited\n{self.logs()}")
        self.cli("global")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (gobgpd sends its peers a Cease NOTIFICATION), SIGKILL at the deadline."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the peers see the TCP session close without a NOTIFICATION."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def logs(self) -> str:
        return f"--- {self.log}\n{self.log.read_text()[-6000:]}" if self.log.exists() else ""


def start_gobgp(
    box: Box,
    clients: Sequence[Client],
    *,
    cluster_id: str | None = None,
    log_level: str = "info",
) -> Gobgp:
    """Run gobgpd in ``box`` as a route reflector for ``clients``; return once its API
    answers. The caller stops it (:meth:`Gobgp.stop`); the fabric's namespace cleanup
    would end it too."""
    config = box.directory / "gobgpd.toml"
    config.write_text(
        render_config(
            router_id=box.router_id,
            listen_address=box.address,
            clients=clients,
            cluster_id=cluster_id,
        )
    )
    log = box.directory / "gobgpd.log"
    argv = [
        GOBGPD, "-f", str(config), "-t", "toml", "-l", log_level, "-p",
        "--api-hosts", f"{API_HOST}:{API_PORT}", "--pprof-disable",
    ]  # fmt: skip
    box.exec(*argv, "--dry-run")  # a config error fails here, with gobgpd's message
    with log.open("ab") as out:
        # ip netns exec execs gobgpd in place: the child's PID is gobgpd's
        process = subprocess.Popen(
            [IP, "netns", "exec", box.netns.name, *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    gobgp = Gobgp(box, process, config, log)
    try:
        wait_until(
            gobgp.answers,
            15,
            f"gobgpd in {box.name} to answer on its API",
            retry_on=(CommandError,),
        )
    except BaseException:
        gobgp.stop()
        raise
    return gobgp
