"""The API channel: every answer from ExaBGP is tied to the command it answers, and a route
refresh (answered late, from ExaBGP's asynchronous queue) cannot shift that pairing."""

from __future__ import annotations

import io

import pytest

from evpn_agent.model import (
    AdvertChange,
    AdvertRefused,
    ImetAdvert,
    RouteDistinguisher,
    RouteTarget,
)
from evpn_agent.speaker import channel as channel_module
from evpn_agent.speaker.channel import ExabgpChannel

ME = "192.0.2.21"


def change(vni: int) -> AdvertChange:
    rd = RouteDistinguisher.parse(f"{ME}:{vni}")
    return AdvertChange(ImetAdvert(rd, vni, ME, (RouteTarget(65000, vni),)))


def written(out: io.BytesIO) -> list[str]:
    return out.getvalue().decode().splitlines()


def test_an_error_is_the_refusal_of_the_command_it_answers() -> None:
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    sent = [change(1), change(2), change(3)]
    ch.send(sent)
    events = [ev for ack in (b"done\n", b"error\n", b"done\n") for ev in ch.decode(ack, ME)[0]]
    assert events == [AdvertRefused(sent[1])]
    assert ch.decode(b"error\n", ME) == ([], None)  # nothing outstanding: no one to blame


def test_a_refresh_waits_for_earlier_answers_and_holds_later_commands() -> None:
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    ch.send([change(1)])
    ch.ask_refresh()
    assert written(out)[-1].startswith("announce evpn multicast")  # refresh not yet written
    ch.decode(b"done\n", ME)  # change 1 answered: now the refresh goes
    assert written(out)[-1] == "announce route-refresh l2vpn evpn"
    ch.send([change(2)])  # held: its answer could come before the refresh's
    assert written(out)[-1] == "announce route-refresh l2vpn evpn"
    ch.decode(b"done\n", ME)  # the refresh's answer releases it
    assert "rd 192.0.2.21:2 " in written(out)[-1]
    assert ch.decode(b"error\n", ME)[0] == [AdvertRefused(change(2))]


def test_an_unanswered_refresh_holds_commands_only_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.BytesIO()
    ch = ExabgpChannel(io.BytesIO(), out)
    ch.ask_refresh()
    monkeypatch.setattr(channel_module, "REFRESH_WAIT", 0.0)
    ch.send([change(5)])
    assert "rd 192.0.2.21:5 " in written(out)[-1]


def test_update_lines_carry_exabgps_timestamp() -> None:
    ch = ExabgpChannel(io.BytesIO(), io.BytesIO())
    line = (
        b'{"exabgp": "5.0.0", "time": 1700000000.5, "type": "state", '
        b'"neighbor": {"address": {"peer": "192.0.2.1"}, "state": "up"}}\n'
    )
    events, stamp = ch.decode(line, ME)
    assert stamp == 1700000000.5 and len(events) == 1
