"""The pieces of ``evpn-agent restart`` that need no fabric: systemd's notify messages,
the handover plan, the peers of a running ExaBGP (its configuration rewritten, the reload
signal), the handover socket and its take-over. The whole restart runs in
tests/netns/test_service_restart.py."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from evpn_agent import control
from evpn_agent.daemon import notify
from evpn_agent.daemon.instance import HANDOVER_ENV, Instance, handover_socket
from evpn_agent.model import Config, RouteReflector
from evpn_agent.restart import plan
from evpn_agent.speaker.process import (
    CONF_ENV,
    RELOAD_SIGNAL,
    configured_peers,
    exabgp_config,
)

RR1, RR2, RR3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"


def _cfg(tmp_path: Path, *rrs: str, passive: bool = False) -> Config:
    return Config(
        local_as=65000,
        route_reflectors=tuple(RouteReflector(rr, passive=passive) for rr in rrs),
        local_address="192.0.2.21" if passive else None,
        control_socket=str(tmp_path / "agent.sock"),
        state_dir=str(tmp_path / "state"),
    )


# -- systemd


def test_notify_message_names_the_main_pid_then_readiness() -> None:
    assert notify.message(main_pid=42, ready=True) == "MAINPID=42\nREADY=1\n"
    assert notify.message(ready=True, status="handing over") == "READY=1\nSTATUS=handing over\n"


def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert notify.notify("MAINPID=7\nREADY=1\n", {notify.NOTIFY_ENV: path})
        assert server.recv(4096) == b"MAINPID=7\nREADY=1\n"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"evpn-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert notify.notify("READY=1\n", {notify.NOTIFY_ENV: "@" + name})
        assert server.recv(4096) == b"READY=1\n"


def test_notify_without_systemd_sends_nothing(tmp_path: Path) -> None:
    assert not notify.notify("READY=1\n", {})
    assert not notify.notify("READY=1\n", {notify.NOTIFY_ENV: str(tmp_path / "absent")})


# -- the plan


def _peers(**states: str) -> list[dict[str, Any]]:
    return [{"peer": peer, "state": state} for peer, state in states.items()]


def test_plan_keeps_an_established_reflector_for_the_old_and_starts_the_new_with_the_rest(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path, RR1, RR2, RR3)
    old = {"peers": [RR1, RR2, RR3]}
    chosen = plan(cfg, old, _peers(**{RR1: "Down", RR2: "Established", RR3: "Established"}))
    assert chosen is not None
    assert (chosen.keep, chosen.start) == (RR2, [RR1, RR3])


def test_no_plan_with_one_reflector_or_none_established(tmp_path: Path) -> None:
    assert plan(_cfg(tmp_path, RR1), {"peers": [RR1]}, _peers(**{RR1: "Established"})) is None
    both = {"peers": [RR1, RR2]}
    assert plan(_cfg(tmp_path, RR1, RR2), both, _peers(**{RR1: "Down", RR2: "Down"})) is None


def test_plan_with_a_new_file_naming_one_other_reflector(tmp_path: Path) -> None:
    chosen = plan(_cfg(tmp_path, RR3), {"peers": [RR1]}, _peers(**{RR1: "Established"}))
    assert chosen is not None and (chosen.keep, chosen.start) == (RR1, [RR3])


# -- the ExaBGP configuration of a subset of peers


def test_exabgp_config_of_some_peers_only(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, RR1, RR2)
    assert configured_peers(exabgp_config(cfg, "192.0.2.21", "/etc/x.yaml")) == [RR1, RR2]
    assert configured_peers(exabgp_config(cfg, "192.0.2.21", "/etc/x.yaml", {RR2})) == [RR2]
    with pytest.raises(ValueError, match=r"192\.0\.2\.9"):
        exabgp_config(cfg, "192.0.2.21", "/etc/x.yaml", {"192.0.2.9"})


# -- a running instance


def _instance(tmp_path: Path, cfg: Config, **env: str) -> Instance:
    conf = tmp_path / "exabgp.conf"
    conf.write_text(exabgp_config(cfg, "192.0.2.21", str(tmp_path / "agent.yaml")))
    return Instance(
        cfg,
        str(tmp_path / "agent.yaml"),
        environ={CONF_ENV: str(conf), **env},
        speaker_pid=os.getpid,  # the reload signal comes to this test
    )


def test_set_peers_rewrites_the_configuration_then_signals_a_reload(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, RR1, RR2)
    instance = _instance(tmp_path, cfg)
    received: list[int] = []
    previous = signal.signal(RELOAD_SIGNAL, lambda signum, _frame: received.append(signum))
    try:
        assert instance.set_peers(cfg, "192.0.2.21", [RR1]) == {
            "peers": [RR1],
            "added": [],
            "removed": [RR2],
        }
        assert received == [RELOAD_SIGNAL]
        assert instance.peers() == [RR1]
        # the process line is unchanged, so ExaBGP's reload keeps the core running
        text = (tmp_path / "exabgp.conf").read_text()
        assert text == exabgp_config(cfg, "192.0.2.21", str(tmp_path / "agent.yaml"), {RR1})
        back = instance.set_peers(cfg, "192.0.2.21", None)
        assert back == {"peers": [RR1, RR2], "added": [RR2], "removed": []}
        assert received == [RELOAD_SIGNAL] * 2
        with pytest.raises(ValueError, match="not a configured"):
            instance.set_peers(cfg, "192.0.2.21", ["192.0.2.9"])
        assert instance.peers() == [RR1, RR2] and len(received) == 2
    finally:
        signal.signal(RELOAD_SIGNAL, previous)


def test_a_handover_instance_answers_aside_until_it_takes_over(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, RR1, RR2)
    main_socket = cfg.control_socket

    async def scenario() -> None:
        old = await control.serve(main_socket, lambda request: "old")
        new = _instance(tmp_path, cfg, **{HANDOVER_ENV: "1"})
        assert not await new.open(lambda request: "new")  # not in charge: no metrics
        ask = asyncio.to_thread
        assert await ask(control.request, main_socket, "x") == "old"
        assert await ask(control.request, handover_socket(main_socket), "x") == "new"
        with pytest.raises(ValueError, match="still answers"):
            await new.take_over()
        old.close()
        await old.wait_closed()
        described = await new.take_over()
        assert described["socket"] == main_socket and not described["handover"]
        assert await ask(control.request, main_socket, "x") == "new"
        assert not os.path.exists(handover_socket(main_socket))
        new.close()

    asyncio.run(scenario())


def test_a_respawned_core_of_a_new_instance_serves_the_socket_nobody_answers(
    tmp_path: Path,
) -> None:
    cfg = _cfg(tmp_path, RR1, RR2)
    Path(cfg.control_socket).touch()  # the old instance's file, nobody behind it

    async def scenario() -> None:
        new = _instance(tmp_path, cfg, **{HANDOVER_ENV: "1"})
        await new.open(lambda request: "new")
        assert await asyncio.to_thread(control.request, cfg.control_socket, "x") == "new"
        new.close()

    asyncio.run(scenario())


def test_restart_from_outside_the_unit_joins_the_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from evpn_agent import restart

    # the real reading: systemd's hierarchy of this process, v1 or v2
    assert restart._cgroup(os.getpid()) == restart._cgroup("self") is not None
    old = subprocess.Popen(
        # no exec after the line: /proc/PID/environ reads empty while one runs
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
        env={"NOTIFY_SOCKET": "/run/systemd/notify"},
        stdout=subprocess.PIPE,
    )
    try:
        # until the child has exec'd, /proc/PID/environ is still this process's
        assert old.stdout is not None and old.stdout.readline() == b"started\n"
        cgroups: dict[int | str, str] = {
            "self": "/user.slice/session-4.scope",
            old.pid: "/system.slice/evpn-agent.service",
        }
        monkeypatch.setattr(restart, "_cgroup", lambda pid: cgroups.get(pid))
        unit = restart.unit_of(old.pid)
        assert unit is not None and unit.cgroup == "/system.slice/evpn-agent.service"
        assert unit.env() == {"NOTIFY_SOCKET": "/run/systemd/notify"}  # the unit's socket
        cgroups["self"] = cgroups[old.pid]  # run by the unit itself: nothing to join
        assert restart.unit_of(old.pid) is None
        cgroups[old.pid] = "/user.slice/session-4.scope/other"  # not a unit
        assert restart.unit_of(old.pid) is None
    finally:
        old.kill()
        old.wait()


def test_one_restart_at_a_time(tmp_path: Path) -> None:
    import fcntl

    from evpn_agent.restart import RestartError, restart

    cfg = _cfg(tmp_path, RR1, RR2)
    with open(cfg.control_socket + ".restart-lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RestartError, match="another"):
            restart(cfg, str(tmp_path / "agent.yaml"))
    with pytest.raises(RestartError, match="not running"):  # the lock is free again
        restart(cfg, str(tmp_path / "agent.yaml"))
