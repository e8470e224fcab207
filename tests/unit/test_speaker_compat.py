"""The launcher's ExaBGP compatibility layer: version gate and self-test.

No root needed. The self-test runs against the pinned ExaBGP; broken internals are
simulated by monkeypatching the very objects ExaBGP would have changed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evpn_agent.speaker import compat, launcher, selftest

REPO_ROOT = Path(__file__).resolve().parents[2]
PINNED = compat.VERIFIED[-1]


@pytest.fixture(autouse=True)
def _restore_exabgp() -> Iterator[None]:
    """Undo the launcher's patches after each test: other tests see ExaBGP as released."""
    evpn, family, pmsi = compat.exa.EVPN, compat.exa.Family, compat.exa.PMSI
    key = compat.evpn_family()
    raw, size, known = evpn.__dict__["_raw"], family.size[key], pmsi._pmsi_known[6]
    read = compat.exa.Protocol.__dict__["read_message"]
    reactor, ka = compat.exa.Reactor, compat.exa.KA
    wait, init = reactor.__dict__["_wait_for_io"], ka.__dict__["__init__"]
    need_ka = compat.exa.SendTimer.__dict__["need_ka"]
    process = compat.exa.API.__dict__["process"]
    received = compat.exa.Processes.__dict__["received"]
    yield
    compat.exa.API.process = process
    compat.exa.Processes.received = received
    evpn._raw, family.size[key], pmsi._pmsi_known[6] = raw, size, known
    compat.exa.Protocol.read_message = read
    reactor._wait_for_io, ka.__init__ = wait, init
    compat.exa.SendTimer.need_ka = need_ka
    _unwrap_advert_path()


def _unwrap_advert_path() -> None:
    originals = compat._advert_originals
    if originals:
        rib, exa = compat.exa.OutgoingRIB, compat.exa
        rib.pending, rib.replace_restart = originals["pending"], originals["replace_restart"]
        exa.Protocol.new_update, exa.Peer.resend = originals["new_update"], originals["resend"]
    compat._advert_hooks[0] = compat.AdvertHooks()


def patched() -> None:
    """As the launcher does: every internal checked, then the patches."""
    selftest.check_internals(launcher.COMMANDS, launcher.handle)
    compat.patch(launcher.COMMANDS, launcher.handle, launcher.ADVERTS)


def self_test() -> None:
    selftest.self_test(launcher.COMMANDS, launcher.handle, launcher._build_line)


def assert_one_clear_line(message: str, *words: str) -> None:
    assert "\n" not in message
    assert "Fix: pip install " in message  # how to fix it, in the same line
    for word in (*words, f"exabgp=={PINNED}"):
        assert word in message, f"{word!r} not in {message!r}"


# ---------------------------------------------------------------- laziness


def test_importing_the_launcher_imports_no_exabgp() -> None:
    code = (
        "import sys, evpn_agent.speaker.launcher, evpn_agent.speaker.compat;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'exabgp'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.stdout.strip() == "[]"


def test_no_module_but_compat_imports_exabgp() -> None:
    package = REPO_ROOT / "evpn_agent"
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in package.rglob("*.py")
        if path.name != "compat.py"
        and any(
            line.lstrip().startswith(("import exabgp", "from exabgp"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []


# ---------------------------------------------------------------- version gate


def test_the_pinned_exabgp_is_installed_and_supported() -> None:
    version, where = compat.installed_version()
    assert version == PINNED
    assert Path(where).name == "exabgp" and "site-packages" in where
    assert compat.check_version({}) == PINNED
    assert compat.supported_versions() == (PINNED,)


@pytest.mark.parametrize(
    "version",
    ["5.0.16", "5.0.14", "5.1.0", "6.0.0", "5.0.15-20260822+uncontrolled", "unknown"],
)
def test_unverified_versions_are_refused(version: str) -> None:
    with pytest.raises(compat.CompatError) as caught:
        compat.check_version({}, found=(version, "/opt/x/exabgp"))
    assert_one_clear_line(str(caught.value), f"ExaBGP {version} ", "/opt/x/exabgp", PINNED)


def test_supported_versions_are_what_every_internal_was_verified_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    only_older = compat.Internal("exabgp.rib.change:Change", "", verified=("5.0.14",))
    monkeypatch.setitem(compat.INTERNALS, "Change", only_older)
    assert compat.supported_versions() == ()
    with pytest.raises(compat.CompatError):
        compat.check_version({}, found=(PINNED, "/x"))


def test_the_escape_hatch_names_the_version_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    env = {compat.UNVERIFIED_ENV: "5.0.16"}
    with caplog.at_level(logging.WARNING, logger="evpn_agent.speaker"):
        assert compat.check_version(env, found=("5.0.16", "/x/exabgp")) == "5.0.16"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "UNVERIFIED EXABGP 5.0.16" in record.getMessage()


def test_the_escape_hatch_for_another_version_does_not_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {compat.UNVERIFIED_ENV: "5.0.16"}
    with pytest.raises(compat.CompatError) as caught:
        compat.check_version(env, found=("5.0.17", "/x/exabgp"))
    assert_one_clear_line(str(caught.value), "ExaBGP 5.0.17", f"{compat.UNVERIFIED_ENV}=5.0.16")
    assert caplog.records == []


# ---------------------------------------------------------------- self-test


def test_the_self_test_passes_on_the_pinned_exabgp() -> None:
    patched()
    self_test()


def test_the_self_test_leaves_no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    option = compat.exa.log_option
    monkeypatch.setattr(option, "logger", None)  # as before ExaBGP's main sets logging up
    table = launcher.ADVERTS.table
    before = (dict(table.routes), dict(table.queues))
    patched()
    self_test()
    assert option.logger is None
    assert (table.routes, table.queues) == before
    assert table.unconfirmed is None
    assert compat._advert_hooks[0] is launcher.ADVERTS  # the probe is gone


def test_the_self_test_finds_new_update_unwrapped() -> None:
    patched()
    compat.exa.Protocol.new_update = compat._advert_originals["new_update"]
    with pytest.raises(compat.CompatError) as caught:
        self_test()
    assert_one_clear_line(str(caught.value), "advert fast path", "new_update is not wrapped")


def test_the_self_test_finds_a_peer_loop_that_would_not_send_ours() -> None:
    patched()
    compat.exa.OutgoingRIB.pending = compat._advert_originals["pending"]
    with pytest.raises(compat.CompatError) as caught:
        self_test()
    assert_one_clear_line(str(caught.value), "advert fast path", "pending does not see")


def test_the_self_test_finds_ours_lost_on_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    patched()
    monkeypatch.setattr(selftest._Session, "send", lambda self, raw: iter(()))
    with pytest.raises(compat.CompatError) as caught:
        self_test()
    assert_one_clear_line(str(caught.value), "advert fast path", "not ours in BoRR/EoRR")


async def _coroutine(*args: object) -> None:
    pass


def _no_cache(self: Any, change: Any) -> bool:
    return False


def _add_nothing(self: Any, change: Any, force: bool = False) -> None:
    pass


def _hex_lower(self: Any) -> str:
    return bytes(self.pack_nlri()).hex()


def _untaught_pmsi(monkeypatch: pytest.MonkeyPatch) -> None:
    ingress = compat.exa.PMSIIngressReplication
    monkeypatch.setitem(compat.exa.PMSI._pmsi_known, 6, ingress)


def _untaught_next_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.exa.Family.size, compat.evpn_family(), ((4,), 0))


def _moved_module(monkeypatch: pytest.MonkeyPatch) -> None:
    # ExaBGP's development branch has no exabgp.rib.change (its Change became rib.route.Route)
    moved = compat.Internal("exabgp.rib.route:Route", "")
    monkeypatch.setitem(compat.INTERNALS, "Change", moved)


def _async_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # as on ExaBGP's development branch: called without await, nothing would be answered
    from exabgp.reactor.api.processes import Processes

    monkeypatch.setattr(Processes, "answer_done", _coroutine)


def _unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    command = compat.exa.Command
    monkeypatch.setattr(command, "callback", {**command.callback, "text": {}})
    monkeypatch.setattr(command, "register", lambda *a, **k: lambda f: f)


def _captured_by_another_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # a new stock command whose name is part of our lines takes them first
    command = compat.exa.Command
    monkeypatch.setattr(command, "functions", ["evpn mac", *command.functions])


def _generator_neighbors_without_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # selectors no longer understood: every line goes to every peer
    monkeypatch.setattr(compat.exa, "extract_neighbors", lambda line: ([], line))


def _exabgp_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    # read_message back to ExaBGP's own (as after an upgrade that moved it)
    [original] = compat._exabgp_read_message
    monkeypatch.setattr(compat.exa.Protocol, "read_message", original)


def _ka_forgets_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    # a release whose KA no longer takes (session, proto), or keeps its timer elsewhere
    ka = compat.exa.KA
    monkeypatch.setattr(ka, "__init__", compat._exabgp_ka_init(ka))


def _long_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    # a release whose SendTimer counts milliseconds: the computed sleep would be far too long
    timer = compat.exa.SendTimer
    original = timer.__init__

    def init(self: Any, session: Any, holdtime: Any) -> None:
        original(self, session, holdtime)
        self.keepalive *= 1000

    monkeypatch.setattr(timer, "__init__", init)


def _peer_without_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    # a release whose Peer keeps its teardown elsewhere: idle_timeout would read nothing
    peer = compat.exa.Peer
    code = peer.__init__.__code__
    names = tuple("_stopping_now" if n == "_teardown" else n for n in code.co_names)
    init = type(peer.__init__)(code.replace(co_names=names), peer.__init__.__globals__)
    monkeypatch.setattr(peer, "__init__", init)


def _updates_and_whatever_follows(data: bytes, max_size: int) -> tuple[list[bytes], int]:
    bodies, _end = _complete_updates(data, max_size)
    return bodies, len(data)


_complete_updates = compat.complete_updates

BROKEN = {
    "read_message not replaced": ("receive fast path", _exabgp_reads_everything),
    "the gate lets a bad MAC length through": (
        "receive fast path",
        lambda mp: mp.setattr(compat, "wire_ok", lambda body: True),
    ),
    "the gate sends every UPDATE to ExaBGP": (
        "receive fast path",
        lambda mp: mp.setattr(compat, "wire_ok", lambda body: False),
    ),
    "UPDATEs queued behind the first are left to ExaBGP": (
        "receive fast path",
        lambda mp: mp.setattr(compat, "queued_updates", lambda connection: []),
    ),
    "the batch eats the message behind it": (
        "receive fast path",
        lambda mp: mp.setattr(compat, "complete_updates", _updates_and_whatever_follows),
    ),
    "the reactor's wait is not replaced": (
        "idle sleep",
        lambda mp: mp.setattr(
            compat.exa.Reactor, "_wait_for_io", compat.exa.Reactor._wait_for_io.exabgp_wait
        ),
    ),
    "the KA's timer is not remembered": ("idle sleep", _ka_forgets_timer),
    "a peer without the attributes read": ("idle sleep", _peer_without_teardown),
    "keepalives never go early": (
        "idle sleep",
        lambda mp: mp.setattr(compat.exa.SendTimer, "need_ka", compat._exabgp_need_ka[0]),
    ),
    "timers in another unit": ("idle sleep", _long_timers),
    "the adj-rib-out cache is gone": (
        "adj-rib-out queue",
        lambda mp: mp.setattr(compat.exa.OutgoingRIB, "in_cache", _no_cache),
    ),
    "add_to_rib queues nothing": (
        "adj-rib-out queue",
        lambda mp: mp.setattr(compat.exa.OutgoingRIB, "add_to_rib", _add_nothing),
    ),
    "PMSI type 6 decodes as released": ("IPv6 underlay", _untaught_pmsi),
    "16-byte next hops refused": ("IPv6 underlay", _untaught_next_hop),
    "raw NLRI text differs": (
        "JSON raw NLRI",
        lambda mp: (
            mp.setattr(compat, "_fast_raw", _hex_lower),
            mp.setattr(compat.exa.EVPN, "_raw", _hex_lower),
        ),
    ),
    "raw NLRI not replaced": (
        "JSON raw NLRI",
        lambda mp: mp.setattr(compat.exa.EVPN, "_raw", _hex_lower),
    ),
    "a module moved": ("internals", _moved_module),
    "answers are coroutines": ("internals", _async_answers),
    "our commands are not registered": ("command registry", _unregistered),
    "batch lines searched for their handler": (
        "command registry",
        lambda mp: mp.setattr(compat.exa.API, "process", compat._exabgp_process[0]),
    ),
    "another command captures our lines": ("command registry", _captured_by_another_command),
    "neighbor selectors ignored": ("neighbor selection", _generator_neighbors_without_list),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_internal_fails_the_self_test(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    check, breaks = BROKEN[broken]
    patched()
    breaks(monkeypatch)
    with pytest.raises(compat.CompatError) as caught:
        self_test()
    assert_one_clear_line(str(caught.value), f"self-test ({check}:", f"ExaBGP {PINNED}")


def test_a_broken_pinned_exabgp_is_to_be_reinstalled(monkeypatch: pytest.MonkeyPatch) -> None:
    patched()
    monkeypatch.setattr(compat.exa.OutgoingRIB, "in_cache", _no_cache)
    with pytest.raises(compat.CompatError, match="--force-reinstall"):
        self_test()


# ---------------------------------------------------------------- the launcher


@pytest.fixture
def exabgp_main(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replaces ExaBGP's main: the argv of each call."""
    import exabgp.application.main

    calls: list[list[str]] = []
    monkeypatch.setattr(exabgp.application.main, "main", lambda: calls.append(list(sys.argv)))
    monkeypatch.setattr(launcher, "_configure_logging", lambda: None)  # keeps caplog working
    monkeypatch.setattr("os.environ", {})
    monkeypatch.setattr("sys.argv", ["launcher"])
    return calls


def test_main_runs_exabgp_after_the_checks(exabgp_main: list[list[str]]) -> None:
    assert launcher.main(["/etc/x.conf", "--env-file", "/etc/x.env", "-d"]) == 0
    # --env-file reaches ExaBGP as EXABGP_ENVFILE, read before the self-test reads the rest
    assert exabgp_main == [["launcher", "server", "/etc/x.conf", "-d"]]
    assert os.environ["EXABGP_ENVFILE"] == "/etc/x.env"


def test_main_refuses_an_unverified_exabgp(
    exabgp_main: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(compat, "installed_version", lambda: ("5.0.16", "/x/exabgp"))
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        assert launcher.main(["/etc/x.conf"]) == 1
    assert exabgp_main == []
    [record] = caplog.records
    assert_one_clear_line(record.getMessage(), "ExaBGP 5.0.16")


def test_main_refuses_an_exabgp_failing_the_self_test(
    exabgp_main: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(compat.exa.OutgoingRIB, "add_to_rib", _add_nothing)
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        assert launcher.main(["/etc/x.conf"]) == 1
    assert exabgp_main == []
    [record] = caplog.records
    assert_one_clear_line(record.getMessage(), "self-test (adj-rib-out queue:")


@pytest.mark.parametrize(
    ("args", "rest", "env_file"),
    [
        (["c.conf"], ["c.conf"], None),
        (["c.conf", "--env-file", "e.env", "-d"], ["c.conf", "-d"], "e.env"),
        (["--env-file=e.env", "c.conf"], ["c.conf"], "e.env"),
    ],
)
def test_env_file_becomes_exabgp_envfile(
    args: list[str], rest: list[str], env_file: str | None
) -> None:
    environ: dict[str, str] = {}
    assert launcher._env_file_to_environment(args, environ) == rest
    assert environ.get("EXABGP_ENVFILE") == env_file


# ---------------------------------------------------------------- the real process


def _fake_exabgp(root: Path, release: str) -> Path:
    """An ExaBGP package that only knows its version, first on PYTHONPATH: if the
    launcher imported anything else of ExaBGP before the gate, it would crash instead."""
    package = root / "exabgp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "version.py").write_text(f"release = {release!r}\nversion = release\n")
    return root


def _speaker(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fake = _fake_exabgp(tmp_path, "9.9.9")
    environ = {k: v for k, v in os.environ.items() if k != compat.UNVERIFIED_ENV}
    return subprocess.run(
        [sys.executable, "-m", "evpn_agent.speaker", str(tmp_path / "exabgp.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO_ROOT}", **env},
    )


def test_the_speaker_refuses_an_unverified_exabgp(tmp_path: Path) -> None:
    result = _speaker(tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert_one_clear_line(line, "ExaBGP 9.9.9", str(tmp_path / "exabgp"), PINNED)


def test_the_escape_hatch_still_runs_the_checks(tmp_path: Path) -> None:
    result = _speaker(tmp_path, **{compat.UNVERIFIED_ENV: "9.9.9"})
    assert result.returncode != 0
    warning, error = result.stderr.splitlines()
    assert "WARNING UNVERIFIED EXABGP 9.9.9" in warning
    # the fake has nothing else: the self-test finds every internal missing
    assert_one_clear_line(error, "ExaBGP 9.9.9", "self-test (internals: missing Command")


def test_the_fast_path_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    original = compat.exa.Protocol.__dict__["read_message"]
    monkeypatch.setenv(compat.WIRE_RECEIVE_ENV, "off")
    patched()
    self_test()
    assert compat.exa.Protocol.__dict__["read_message"] is original
    monkeypatch.setenv(compat.WIRE_RECEIVE_ENV, "on")
    patched()
    self_test()
    assert compat.exa.Protocol.__dict__["read_message"] is compat._read_message


# ---------------------------------------------------------------- UPDATEs queued behind one


def _update(body: bytes) -> bytes:
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


def _gated_bodies() -> list[bytes]:
    """Three UPDATE bodies the gate passes (ours, as a reflector would send them)."""
    import ipaddress

    from evpn_agent.model import AdvertChange, MacAdvert, RouteDistinguisher, RouteTarget
    from evpn_agent.speaker.wire_encode import encode_changes

    bodies = []
    for vni in (100, 101, 102):
        rd = RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), vni)
        advert = MacAdvert(rd, vni, "02:00:5e:00:00:01", None, "192.0.2.11",
                           (RouteTarget(65000, vni),))  # fmt: skip
        [message] = encode_changes([AdvertChange(advert)], 4096).messages
        bodies.append(bytes(message[19:]))
    assert all(compat.wire_ok(body) for body in bodies)
    return bodies


KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"


def test_queued_updates_are_taken_up_to_the_first_other_message() -> None:
    a, b, c = _gated_bodies()
    data = _update(a) + _update(b) + KEEPALIVE + _update(c)
    assert compat.complete_updates(data, 4096) == ([a, b], len(_update(a) + _update(b)))


@pytest.mark.parametrize(
    "after",
    [
        "cut",  # the next UPDATE not whole yet
        "too big",  # longer than the session accepts: ExaBGP's NOTIFICATION
        "no marker",
        "short length",
        "gate says no",  # a MAC length of 47 bits
    ],
)
def test_whatever_is_not_a_whole_gated_update_stays_for_exabgp(after: str) -> None:
    a, b, _c = _gated_bodies()
    first = _update(a)
    following = {
        "cut": _update(b)[:-1],
        "too big": _update(b),
        "no marker": b"\x00" + _update(b)[1:],
        "short length": b"\xff" * 16 + b"\x00\x16\x02" + b"\x00" * 3,
        "gate says no": _update(b.replace(b"\x30\x02\x00\x5e", b"\x2f\x02\x00\x5e")),
    }[after]
    assert following != _update(b) or after == "too big"
    max_size = len(_update(b)) - 1 if after == "too big" else 4096
    assert compat.complete_updates(following, max_size) == ([], 0)
    if after != "too big":
        assert compat.complete_updates(first + following, max_size) == ([a], len(first))


def test_queued_updates_consume_exactly_what_they_take() -> None:
    import socket

    a, b, c = _gated_bodies()

    class Connection:
        msg_size = 4096

        def __init__(self, io: socket.socket | None) -> None:
            self.io = io

    assert compat.queued_updates(Connection(None)) == []
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        assert compat.queued_updates(Connection(ours)) == []  # nothing queued
        theirs.sendall(_update(a) + _update(b) + KEEPALIVE + _update(c))
        assert compat.queued_updates(Connection(ours)) == [a, b]
        assert ours.recv(4096) == KEEPALIVE + _update(c)


def test_batch_lines_go_straight_to_their_handler_and_the_rest_the_exabgp_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patched()
    calls: list[tuple[str, str, bool]] = []

    def ours(api: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
        calls.append(("ours", line, use_json))
        return True

    def exabgps(api: Any, reactor: Any, service: str, line: str) -> bool:
        calls.append(("exabgp", line, False))
        return True

    from evpn_agent.speaker.grammar import BATCH

    monkeypatch.setitem(compat.exa.Command.callback["text"], BATCH, ours)
    monkeypatch.setattr(compat, "_exabgp_process", [exabgps])
    api = object.__new__(compat.exa.API)
    for line in (f"{BATCH} [1]", "announce evpn mac x", f"neighbor 192.0.2.1 {BATCH} [2]"):
        assert compat.exa.API.process(api, None, "agent", line)
    assert calls == [
        ("ours", f"{BATCH} [1]", False),
        ("exabgp", "announce evpn mac x", False),
        ("exabgp", f"neighbor 192.0.2.1 {BATCH} [2]", False),
    ]


# ---------------------------------------------------------------- a restart at scale


class _Helper:
    """An API process as ExaBGP's Processes sees it: running, its stdout a real pipe."""

    def __init__(self, stdout: Any) -> None:
        self.stdout = stdout

    def poll(self) -> None:
        return None


def test_one_pass_of_the_reactor_reads_every_command_that_waits() -> None:
    """1,000 type 3s are one line of ~110 KB: ExaBGP read 16 KiB of it per pass, and a pass
    waits on the core while a table comes in (seconds at a restart)."""
    lines = [f"announce evpn batch {i:06d} {'x' * 90}" for i in range(2000)]
    data = "".join(f"{line}\n" for line in lines).encode()
    assert len(data) > 200_000

    def one_pass() -> list[str]:
        read, write = os.pipe()
        fcntl.fcntl(write, 1031, 1 << 20)  # F_SETPIPE_SZ: all of it fits, no writer thread
        os.write(write, data)
        with os.fdopen(read, "rb") as stdout, selftest._exabgp_logger():
            processes = object.__new__(compat.exa.Processes)
            processes._process, processes._buffer = {"agent": _Helper(stdout)}, {}
            got = [command for _, command in compat.exa.Processes.received(processes)]
        os.close(write)
        return got

    assert len(one_pass()) < 200  # ExaBGP's own: 16 KiB a pass
    compat.read_commands_fully()
    compat.read_commands_fully()  # idempotent
    assert one_pass() == lines


def test_a_pass_with_no_command_asks_no_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most passes of a churn read nothing: they cost no poll of ours."""
    asked: list[object] = []
    monkeypatch.setattr(compat, "_commands_waiting", lambda processes: asked.append(1))
    compat.read_commands_fully()
    read, write = os.pipe()
    with os.fdopen(read, "rb") as stdout, selftest._exabgp_logger():
        processes = object.__new__(compat.exa.Processes)
        processes._process, processes._buffer = {"agent": _Helper(stdout)}, {}
        assert list(compat.exa.Processes.received(processes)) == []
        assert asked == []
        os.write(write, b"announce evpn batch 1")  # half a line: more is on its way
        assert list(compat.exa.Processes.received(processes)) == []
        assert asked == [1]
    os.close(write)


def test_our_updates_go_out_in_one_step_of_the_peer_loop() -> None:
    """Peer._main takes 25 steps of new_update per pass; ours are not a step each."""
    patched()
    family = compat.evpn_family()
    negotiated = compat.exa.Negotiated(compat.exa.Neighbor())
    negotiated.families = [family]
    messages = [bytes(19) + bytes([i % 256]) for i in range(1000)]
    full = {3, 500}  # the socket is full before these: a step is given back

    class Session(selftest._Session):
        def send(self, raw: bytes) -> Iterator[bool]:
            if len(self.sent) in full:
                full.discard(len(self.sent))
                yield False
            self.sent.append(bytes(raw))
            yield True

    probe = selftest._ProbeHooks(list(messages))
    session = Session(compat.exa.OutgoingRIB(True, [family]), negotiated)
    compat._advert_hooks[0] = probe
    steps = list(compat.exa.Protocol.new_update(session, False))
    # the BoRR, a step each time the socket was full, the EoRR, ExaBGP's own (none queued)
    assert len(steps) <= 5 and steps.count(False) == 2
    borr, *sent, eorr = session.sent
    assert sent == messages and borr[18] == eorr[18] == 5
