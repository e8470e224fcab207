"""``evpn-agent reload`` and SIGHUP through the real daemon, control socket and CLI, with the
fake speaker and the in-memory kernel: a valid file is applied, an invalid or restart-only
one changes nothing and says why, a dry run only tells."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fakes import FakeSpeaker, MemoryKernel

from evpn_agent import control
from evpn_agent.cli import main
from evpn_agent.config import load
from evpn_agent.daemon import reload
from evpn_agent.daemon.dispatcher import Daemon
from evpn_agent.model import (
    AddFdb,
    BridgeDevice,
    DelFdb,
    ImetAdvert,
    MacKey,
    MacRoute,
    OtherLink,
    RouteAnnounced,
    RouteTarget,
    SessionUp,
    VxlanDevice,
)

ME, RR, REMOTE = "192.0.2.21", "192.0.2.1", "192.0.2.22"
LINKS = (
    BridgeDevice(10, "br100", "02:00:00:00:00:10", False, True),
    VxlanDevice(11, "vxlan100", 100, ME, 10, False, True),
    OtherLink(12, "h1", 10, "veth", up=True),
)
REMOTE_MAC = "02:00:5e:00:00:22"


@dataclass
class Agent:
    daemon: Daemon
    speaker: FakeSpeaker
    kernel: MemoryKernel
    sock: str
    file: Path
    head: str

    def write(self, extra: str) -> None:
        self.file.write_text(self.head + extra)

    async def ask(self, **args: object) -> Any:
        return await asyncio.to_thread(control.request, self.sock, "reload", **args)

    async def cli(self, *args: str) -> Result:
        argv = ["reload", "--socket", self.sock, *args]
        return await asyncio.to_thread(CliRunner().invoke, main, argv)

    def exports(self) -> list[str]:
        return [
            str(c.advert.rts[0])
            for c in self.speaker.changes()
            if isinstance(c.advert, ImetAdvert) and not c.withdraw
        ]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    sock = str(tmp_path / "agent.sock")
    head = (
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {sock}\n"
        f"state-dir: {tmp_path / 'state'}\nsweep-delay: 0\nreconcile-interval: 0\n"
    )
    file = tmp_path / "evpn-agent.yaml"
    file.write_text(head)
    speaker, kernel = FakeSpeaker(), MemoryKernel(LINKS)
    daemon = Daemon(load(file), speaker, kernel, config_path=str(file), sighup=True)
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.started.wait(), 5)
    route = MacRoute(MacKey(f"{REMOTE}:100", 0, REMOTE_MAC, None), 100, REMOTE,
                     (RouteTarget(65000, 100),))  # fmt: skip
    speaker.feed(SessionUp(RR), RouteAnnounced(RR, route))
    await until(lambda: AddFdb(11, REMOTE_MAC, REMOTE) in kernel.applied)
    yield Agent(daemon, speaker, kernel, sock, file, head)
    speaker.close()
    await asyncio.wait_for(task, 5)
    logging.getLogger().setLevel(logging.WARNING)


async def test_the_file_it_runs_from_is_read_again(agent: Agent) -> None:
    assert (await agent.ask())["changes"] == []
    agent.write("route-targets: {100: {export: ['65000:1100']}}\n")
    applied = len(agent.kernel.applied)
    result = await agent.ask()
    assert result["applied"] and result["refused"] == []
    assert result["changes"] == [
        {"key": "route-targets.100", "old": "(default)", "new": "export 65000:1100"}
    ]
    assert agent.exports()[-1] == "65000:1100" and result["announces"] == 1
    assert len(agent.kernel.applied) == applied  # no kernel entry touched
    assert agent.daemon.cfg.route_targets[100].export_rts == (RouteTarget(65000, 1100),)


async def test_invalid_file_changes_nothing_and_names_every_key(agent: Agent) -> None:
    agent.write("log-level: loud\nmac-limit: -1\nvnis: [100]\n")
    before = agent.daemon.cfg
    result = await agent.cli()
    assert result.exit_code == 1
    assert "key 'log-level'" in result.output and "key 'mac-limit'" in result.output
    assert "nothing changed" in result.output
    assert agent.daemon.cfg is before
    # the same through --config, checked before the agent is asked
    result = await agent.cli("--config", str(agent.file), "--json")
    assert result.exit_code == 1 and '"valid": false' in result.output


async def test_restart_key_is_refused_with_the_reason(agent: Agent) -> None:
    agent.write("router-id: 192.0.2.99\nlog-level: debug\n")
    result = await agent.cli("--config", str(agent.file))
    assert result.exit_code == 1
    assert "key 'router-id': needs evpn-agent restart" in result.output
    assert agent.daemon.cfg.log_level == "info"


async def test_dry_run_tells_and_changes_nothing(agent: Agent) -> None:
    agent.write("route-targets: {100: {import: ['65000:1100']}}\n")
    result = await agent.cli("--dry-run")
    assert result.exit_code == 0, result.output
    assert "would apply 1 change(s)" in result.output
    assert f"DelFdb: bridge fdb del {REMOTE_MAC} dev if11 master self" in result.output
    assert agent.daemon.cfg.route_targets == {}
    assert DelFdb(11, REMOTE_MAC, None) not in agent.kernel.applied
    result = await agent.cli()  # and for real
    assert result.exit_code == 0 and "applied 1 change(s)" in result.output
    await until(lambda: DelFdb(11, REMOTE_MAC, None) in agent.kernel.applied)


async def test_log_level_and_metrics_address_change_live(agent: Agent) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent.write(f"log-level: debug\nmetrics-address: 127.0.0.1:{port}\n")
    assert (await agent.ask())["applied"]
    assert logging.getLogger().level == logging.DEBUG
    url = f"http://127.0.0.1:{port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    assert b"evpn_agent" in body
    agent.write("")
    assert (await agent.ask())["applied"]
    with pytest.raises(OSError):
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())


async def test_sighup_reloads_the_file(agent: Agent) -> None:
    agent.write("mac-limit: 5\n")
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: agent.daemon.cfg.mac_limit == 5)


async def test_vni_added_is_announced_with_its_persisted_rd(tmp_path: Path) -> None:
    """A VNI above 65535 gets an RD number from the state directory: before its first
    announce, or the fabric would see an RD that changes on the next restart."""
    large = (
        BridgeDevice(30, "br70000", "02:00:00:00:00:30", False, True),
        VxlanDevice(31, "vxlan70000", 70000, ME, 30, False, True),
    )
    file = tmp_path / "evpn-agent.yaml"
    head = (
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {tmp_path / 's'}\n"
        f"state-dir: {tmp_path / 'state'}\nreconcile-interval: 0\n"
    )
    file.write_text(head + "vnis: [100]\n")
    speaker, kernel = FakeSpeaker(), MemoryKernel(LINKS + large)
    daemon = Daemon(load(file), speaker, kernel, config_path=str(file))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.started.wait(), 5)
    agent = Agent(daemon, speaker, kernel, str(tmp_path / "s"), file, head)
    agent.write("vnis: [100, 70000]\n")
    assert (await agent.ask())["applied"]
    rds = [
        str(c.advert.rd)
        for c in speaker.changes()
        if isinstance(c.advert, ImetAdvert) and c.advert.vni == 70000
    ]
    assert rds == [f"{ME}:65535"]
    speaker.close()
    await asyncio.wait_for(task, 5)


async def test_sighup_before_the_daemon_listens_is_not_lost(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    file = tmp_path / "evpn-agent.yaml"
    head = (
        f"local-as: 65000\nroute-reflectors: [{RR}]\ncontrol-socket: {tmp_path / 's'}\n"
        f"state-dir: {tmp_path / 'state'}\nreconcile-interval: 0\n"
    )
    file.write_text(head)
    try:
        reload.hold_sighup()  # what the core's main does first
        cfg = load(file)
        file.write_text(head + "mac-limit: 5\n")  # changed after it was read...
        os.kill(os.getpid(), signal.SIGHUP)  # ...and the reload asked before it listens
        speaker = FakeSpeaker()
        daemon = Daemon(cfg, speaker, MemoryKernel(LINKS), config_path=str(file), sighup=True)
        task = asyncio.create_task(daemon.run())
        await until(lambda: daemon.cfg.mac_limit == 5)
        speaker.close()
        await asyncio.wait_for(task, 5)
    finally:
        signal.signal(signal.SIGHUP, previous)
