"""Unit tests for the launcher: ExaBGP route building, dispatch and environment.

These import ExaBGP but need neither root nor network namespaces. The last test runs
the real launcher process (python -m evpn_agent.speaker) against a closed local port.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from test_speaker_grammar import commands  # hypothesis strategy of valid commands

from evpn_agent.model import MacAdvert
from evpn_agent.speaker import compat, grammar, launcher
from evpn_agent.speaker import conf as exabgp_conf

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).resolve().parents[1] / "speaker_peer.py"

MAC_ANNOUNCE = (
    "announce evpn mac rd 192.0.2.21:1 mac 02:00:5e:00:01:01 ip 198.51.100.21 label 100"
    " next-hop 192.0.2.21 rt 65000:100 mobility 2"
)
MULTICAST_ANNOUNCE = (
    "announce evpn multicast rd 192.0.2.21:1 ip 192.0.2.21 label 100 next-hop 192.0.2.21"
    " rt 65000:100"
)


def change_of(line: str) -> Any:
    return launcher.build_change(grammar.parse(line))


# ---------------------------------------------------------------- route building


def test_mac_route_wire_format_matches_what_frr_reflected() -> None:
    # NLRI bytes as FRR reflected this very route back (tests/fixtures/own_reflected_*)
    change = change_of(MAC_ANNOUNCE)
    assert change.nlri.pack_nlri().hex().upper() == (
        "02250001C0000215000100000000000000000000000000003002005E00010120C6336415000064"
    )


def test_multicast_route_wire_format_matches_what_frr_reflected() -> None:
    change = change_of(MULTICAST_ANNOUNCE)
    assert change.nlri.pack_nlri().hex().upper() == "03110001C000021500010000000020C0000215"


def test_label_is_the_raw_vni() -> None:
    change = change_of(MAC_ANNOUNCE.replace("label 100", "label 16777215"))
    # three label bytes at the end of the NLRI: the VNI itself, not vni<<4|BOS
    assert change.nlri.pack_nlri()[-3:] == (16777215).to_bytes(3, "big")


def test_attributes() -> None:
    from exabgp.bgp.message.update.attribute import Attribute

    change = change_of(MAC_ANNOUNCE)
    communities = change.attributes[Attribute.CODE.EXTENDED_COMMUNITY].communities
    assert sorted(repr(c) for c in communities) == [
        "encap:VXLAN",
        "mac-mobility:2",
        "target:65000:100",
    ]
    assert repr(change.attributes[Attribute.CODE.ORIGIN]) == "igp"
    assert change.attributes[Attribute.CODE.LOCAL_PREF].localpref == 100
    assert Attribute.CODE.PMSI_TUNNEL not in change.attributes
    assert str(change.nlri.nexthop) == "192.0.2.21"


def test_multicast_carries_pmsi_ingress_replication_with_raw_vni() -> None:
    from exabgp.bgp.message.update.attribute import Attribute

    change = change_of(MULTICAST_ANNOUNCE.replace("label 100", "label 70000"))
    pmsi = change.attributes[Attribute.CODE.PMSI_TUNNEL]
    assert pmsi.TUNNEL_TYPE == 6  # ingress replication
    packed = pmsi.pack(None)
    # flags(1) type(1) label(3) tunnel(4), after the attribute header
    assert packed[-9:] == bytes([0, 6]) + (70000).to_bytes(3, "big") + bytes([192, 0, 2, 21])
    assert repr(pmsi) == "pmsi:ingressreplication:0:4375(70000):192.0.2.21"


@pytest.mark.parametrize(
    ("rt", "expected"),
    [
        ("65000:100", "0002fde800000064"),  # type 0: 2-byte AS, 4-byte number
        ("192.0.2.1:100", "0102c00002010064"),  # type 1: IPv4, 2-byte number
        ("4200000000:100", "0202fa56ea000064"),  # type 2: 4-byte AS, 2-byte number
    ],
)
def test_route_target_encodings(rt: str, expected: str) -> None:
    from exabgp.bgp.message.update.attribute import Attribute

    change = change_of(MULTICAST_ANNOUNCE.replace("rt 65000:100", f"rt {rt}"))
    packed = [c.pack() for c in change.attributes[Attribute.CODE.EXTENDED_COMMUNITY].communities]
    assert bytes.fromhex(expected) in packed


@pytest.mark.parametrize(
    ("rd", "expected"),
    [
        ("65000:4294967295", "0000fde8ffffffff"),
        ("192.0.2.21:65535", "0001c0000215ffff"),
        ("4200000000:7", "0002fa56ea000007"),
    ],
)
def test_route_distinguisher_encodings(rd: str, expected: str) -> None:
    change = change_of(MULTICAST_ANNOUNCE.replace("rd 192.0.2.21:1", f"rd {rd}"))
    assert change.nlri.rd.pack().hex() == expected


def test_ipv6_next_hop_and_originator() -> None:
    change = change_of(
        "announce evpn multicast rd 192.0.2.21:1 ip 2001:db8::21 label 100"
        " next-hop 2001:db8::21 rt 65000:100"
    )
    assert str(change.nlri.nexthop) == "2001:db8::21"
    assert change.nlri.pack_nlri()[-16:] == bytes.fromhex("20010db8000000000000000000000021")


def test_withdraw_has_the_announce_index_and_no_attributes() -> None:
    from exabgp.bgp.message import Action

    announce = grammar.parse(MAC_ANNOUNCE)
    assert isinstance(announce, grammar.MacRoute)
    withdraw = launcher.build_change(announce.withdrawal())
    assert withdraw.nlri.action == Action.WITHDRAW
    assert len(withdraw.attributes) == 0
    # ExaBGP's adj-rib-out is keyed by this index, which includes the label
    assert withdraw.index() == launcher.build_change(announce).index()


# ---------------------------------------------------------------- adj-rib-out order


@pytest.fixture
def _exabgp_logger() -> None:
    # OutgoingRIB logs through a logger ExaBGP's main() sets up
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())


def _mac(action: str, mac: str) -> grammar.Command:
    rt = " rt 65000:100" if action == "announce" else ""
    return grammar.parse(
        f"{action} evpn mac rd 192.0.2.21:1 mac {mac} label 100 next-hop 192.0.2.21{rt}"
    )


def _sent(outgoing: Any) -> dict[str, str]:
    """What the peer ends up with after one send cycle: last action per route."""
    from exabgp.bgp.message import Action

    final: dict[str, str] = {}
    for update in outgoing.updates(False):
        for nlri in update.nlris:
            final[str(nlri)] = "announce" if nlri.action == Action.ANNOUNCE else "withdraw"
    return {route.split(":-:0:")[1][:17].lower(): action for route, action in final.items()}


M1, OTHER = "02:00:5e:00:00:01", "02:00:5e:00:00:0a"


@pytest.mark.usefixtures("_exabgp_logger")
@pytest.mark.parametrize(
    "commands",
    [
        # a withdraw group exists first; then a MAC comes and goes within the cycle
        [("withdraw", OTHER), ("announce", M1), ("withdraw", M1)],
        # an announce group exists first; then a MAC goes and comes back
        [("announce", OTHER), ("withdraw", M1), ("announce", M1)],
        [("announce", M1), ("withdraw", M1), ("announce", M1), ("withdraw", M1)],
        [("announce", M1), ("announce", M1)],
    ],
)
def test_the_last_command_for_a_route_wins_within_a_send_cycle(
    commands: list[tuple[str, str]],
) -> None:
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.rib.outgoing import OutgoingRIB

    outgoing = OutgoingRIB(True, [(AFI.l2vpn, SAFI.evpn)])
    for action, mac in commands:
        compat.queue(outgoing, launcher.build_change(_mac(action, mac)))
    last = {mac: action for action, mac in commands}
    assert _sent(outgoing) == last


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_route_sent_before_is_withdrawn_and_announced_again_in_later_cycles() -> None:
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.rib.outgoing import OutgoingRIB

    outgoing = OutgoingRIB(True, [(AFI.l2vpn, SAFI.evpn)])
    expected = ["announce", "withdraw", "announce", "announce"]  # the last one is a repeat
    seen = []
    for action in expected:
        compat.queue(outgoing, launcher.build_change(_mac(action, "02:00:5e:00:00:01")))
        seen.append(_sent(outgoing).get("02:00:5e:00:00:01"))
    assert seen == ["announce", "withdraw", "announce", None]  # a repeat sends nothing


# ---------------------------------------------------------------- dispatch through ExaBGP


class FakeProcesses:
    def __init__(self) -> None:
        self.answers: list[str] = []

    def answer_done(self, service: str) -> None:
        self.answers.append("done")

    def answer_error(self, service: str) -> None:
        self.answers.append("error")


class FakeNeighbor:
    def __init__(self) -> None:
        from exabgp.protocol.family import AFI, SAFI
        from exabgp.rib.outgoing import OutgoingRIB

        self._families = [(AFI.l2vpn, SAFI.evpn)]

        class Rib:
            outgoing = OutgoingRIB(True, self._families)

        self.rib = Rib()

    def families(self) -> list[Any]:
        return self._families


class FakeConfiguration:
    def __init__(self, names: list[str]) -> None:
        self.neighbors = {name: FakeNeighbor() for name in names}


class FakeReactor:
    PEERS = ("neighbor 192.0.2.1", "neighbor 192.0.2.2")

    def __init__(self) -> None:
        self.processes = FakeProcesses()
        self.configuration = FakeConfiguration(list(self.PEERS))

    def peers(self, service: str) -> list[str]:
        return list(self.PEERS)

    def queued(self) -> dict[str, int]:
        """Route keys queued for each peer."""
        table = launcher.ADVERTS.table
        return {
            name: len(table.queue(n.rib.outgoing).pending)
            for name, n in self.configuration.neighbors.items()
        }


@pytest.fixture(autouse=True)
def _fresh_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "ADVERTS", launcher.AdvertPath())


def dispatch(line: str, reactor: FakeReactor | None = None) -> FakeReactor:
    """Feed ``line`` through ExaBGP's real API dispatcher, as its reactor does."""
    from exabgp.configuration.core.format import formated
    from exabgp.reactor.api import API

    launcher.register()
    reactor = reactor or FakeReactor()
    API(reactor).process(reactor, "agent", formated(line))
    return reactor


def test_register_is_idempotent() -> None:
    from exabgp.reactor.api.command.command import Command

    launcher.register()
    launcher.register()
    assert Command.functions.count("announce evpn") == 1
    assert Command.callback["text"]["withdraw evpn"] is launcher.handle
    assert Command.callback["text"][grammar.BATCH] is launcher.handle


def test_dispatch_reaches_our_handler_for_every_peer() -> None:
    reactor = dispatch(MAC_ANNOUNCE)
    assert reactor.processes.answers == ["done"]
    assert reactor.queued() == {"neighbor 192.0.2.1": 1, "neighbor 192.0.2.2": 1}
    [item] = launcher.ADVERTS.table.routes.values()
    advert = item.change.advert
    assert isinstance(advert, MacAdvert)
    assert (advert.mac, advert.ip, advert.vni, advert.seq) == (
        "02:00:5e:00:01:01",
        "198.51.100.21",
        100,
        2,
    )
    # ExaBGP's own adj-rib-out is not used for our routes
    for neighbor in reactor.configuration.neighbors.values():
        assert not neighbor.rib.outgoing.pending() or launcher.ADVERTS.has_work(
            neighbor.rib.outgoing
        )
        assert list(neighbor.rib.outgoing.queued_changes()) == []


def test_neighbor_prefix_selects_the_peer() -> None:
    reactor = dispatch("neighbor 192.0.2.2 " + MAC_ANNOUNCE)
    assert reactor.processes.answers == ["done"]
    assert reactor.queued() == {"neighbor 192.0.2.1": 0, "neighbor 192.0.2.2": 1}


def test_unknown_neighbor_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        reactor = dispatch("neighbor 192.0.2.99 " + MAC_ANNOUNCE)
    assert reactor.processes.answers == ["error"]
    assert "no neighbor matches" in caplog.text


def test_bad_command_is_answered_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        reactor = dispatch(MAC_ANNOUNCE.replace("02:00:5e", "01:00:5e"))
    assert reactor.processes.answers == ["error"]
    assert "multicast or broadcast" in caplog.text
    assert launcher.ADVERTS.table.routes == {}


def test_peer_without_evpn_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    reactor = FakeReactor()
    for neighbor in reactor.configuration.neighbors.values():
        neighbor._families = []
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        dispatch(MAC_ANNOUNCE, reactor)
    assert reactor.processes.answers == ["error"]
    assert "no neighbor has family l2vpn evpn" in caplog.text
    assert launcher.ADVERTS.table.routes == {}


def test_handler_bug_is_contained(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(launcher.ADVERTS, "apply", broken)
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        reactor = dispatch(MAC_ANNOUNCE)
    assert reactor.processes.answers == ["error"]
    assert "boom" in caplog.text


def _sendable(command: grammar.Command) -> bool:
    """What the advert table can hold: a type 3 of one VTEP, a VNI (label) above 0 where it
    is encoded (a type 3's label is in its PMSI attribute only, absent from a withdraw)."""
    if isinstance(command, grammar.MulticastRoute):
        if command.ip != command.next_hop:
            return False
        return command.label > 0 or command.action is grammar.Action.WITHDRAW
    return command.label > 0


@settings(max_examples=300, deadline=None)
@given(commands)
def test_no_registered_command_captures_our_lines(command: grammar.Command) -> None:
    # ExaBGP matches commands by substring: every valid line must reach our handler.
    launcher.ADVERTS = launcher.AdvertPath()  # fresh per example (the fixture runs once)
    reactor = dispatch(grammar.render(command))
    if _sendable(command):
        assert reactor.processes.answers == ["done"]
        assert set(reactor.queued().values()) == {1}
    else:  # answered by our handler all the same, with the reason
        assert reactor.processes.answers == ["error"]
        assert launcher.ADVERTS.table.routes == {}


# ---------------------------------------------------------------- environment


def test_environment_defaults_for_root() -> None:
    environ: dict[str, str] = {}
    launcher.apply_environment(environ, euid=0)
    assert environ["exabgp_daemon_user"] == "root"
    assert environ["exabgp_api_cli"] == "false"
    assert environ["exabgp_log_destination"] == "stderr"
    assert environ["exabgp_log_statistics"] == "false"


def test_environment_keeps_operator_settings() -> None:
    environ = {"exabgp.log.destination": "syslog", "exabgp_api_cli": "true"}
    launcher.apply_environment(environ, euid=1000)
    assert "exabgp_log_destination" not in environ  # the dotted form is set and wins
    assert environ["exabgp_api_cli"] == "true"
    assert "exabgp_daemon_user" not in environ  # not root: nothing to drop from


def test_usage_without_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main([]) == 2
    assert "usage" in capsys.readouterr().err


# ---------------------------------------------------------------- the real process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_launcher_process_answers_our_commands(tmp_path: Path) -> None:
    """python -m evpn_agent.speaker with an unpatched ExaBGP: done for a good command,
    error for a bad one, nothing on stdout. The peer is a closed local port: a route
    injected while the session is down waits in the adj-rib-out, so no BGP is needed.
    """
    record = tmp_path / "received.jsonl"
    on_start = tmp_path / "on_start.txt"
    on_start.write_text(MAC_ANNOUNCE + "\n" + MAC_ANNOUNCE.replace("02:00", "03:00") + "\n")
    config = tmp_path / "exabgp.conf"
    config.write_text(
        exabgp_conf.render(
            router_id="192.0.2.21",
            local_as=65000,
            local_address="127.0.0.1",
            peers=[exabgp_conf.PeerSpec("127.0.0.1", port=_free_port())],
            process_argv=[
                sys.executable,
                str(PEER_SCRIPT),
                "--record",
                str(record),
                "--on-start",
                str(on_start),
            ],
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "evpn_agent.speaker", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "exabgp_tcp_attempts": "0"},
    )
    try:
        deadline = time.monotonic() + 20
        acks: list[str] = []
        while time.monotonic() < deadline and process.poll() is None:
            lines = record.read_text().splitlines() if record.exists() else []
            acks = [line for line in lines if line in ("done", "error")]
            if len(acks) >= 2:
                break
            time.sleep(0.05)
        assert acks == ["done", "error"]
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=15)
    assert stdout == b""  # stdout is never used for logs
    assert b"bad EVPN command" in stderr
    assert b"multicast or broadcast" in stderr


def test_faster_raw_nlri_text_is_unchanged() -> None:
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN

    from evpn_agent.speaker import grammar
    from evpn_agent.speaker.launcher import build_change, speed_up_json

    line = (
        "announce evpn mac rd 192.0.2.21:100 mac 02:00:5e:00:00:0a ip 198.51.100.10 label 100 "
        "next-hop 192.0.2.21 rt 65000:100"
    )
    nlri = build_change(grammar.parse(line)).nlri
    before = "".join(f"{b:02X}" for b in nlri.pack_nlri())
    original = EVPN._raw
    try:
        speed_up_json()
        assert nlri._raw() == before
    finally:
        EVPN._raw = original
