"""The advert fast path: the launcher's table, per-peer queues, batch lines, and our packed
UPDATEs through ExaBGP's own peer code (new session, route refresh, size limit).

No root needed. ExaBGP's send path is driven with a stand-in session (the self-test's);
what it sends is decoded by our decoder and by ExaBGP's (the oracle).
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evpn_agent.model import (
    AdvertChange,
    ImetAdvert,
    MacAdvert,
    RouteAnnounced,
    RouteDistinguisher,
    RoutesWithdrawn,
    RouteTarget,
    one_per_route,
)
from evpn_agent.speaker import compat, encode, grammar, launcher, selftest, wire_decode
from evpn_agent.speaker.advert_table import AdvertTable
from evpn_agent.speaker.wire_encode import Prepared, prepare, route_of

ME = "192.0.2.21"
RD = RouteDistinguisher.parse(f"{ME}:1")
RTS = (RouteTarget.parse("65000:100"),)


def mac(n: int, seq: int = 0, withdraw: bool = False) -> AdvertChange:
    address = f"02:00:5e:00:{n // 256:02x}:{n % 256:02x}"
    return AdvertChange(MacAdvert(RD, 100, address, None, ME, RTS, seq), withdraw)


def imet(withdraw: bool = False) -> AdvertChange:
    return AdvertChange(ImetAdvert(RD, 100, ME, RTS), withdraw)


def keyed(*changes: AdvertChange) -> list[tuple[bytes, Prepared]]:
    return [prepare(change) for change in changes]


def sent(table: AdvertTable, peer: str) -> list[tuple[str, int]]:
    """What the peer's session would send now: (announce|withdraw, MAC's last octet)."""
    out = []
    for item in table.queue(peer).take(table.routes):
        change = item.change
        advert = change.advert
        number = int(advert.mac[-2:], 16) if isinstance(advert, MacAdvert) else -1
        out.append(("withdraw" if change.withdraw else "announce", number))
    return out


# ---------------------------------------------------------------- the table


def test_the_last_change_for_a_route_wins_and_repeats_send_nothing() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1), mac(2), mac(1, withdraw=True), mac(1, seq=3)), ["a"])
    assert sent(table, "a") == [("announce", 1), ("announce", 2)]
    assert table.routes[route_of(mac(1))].change == mac(1, seq=3)
    table.apply(keyed(mac(1, seq=3), mac(2)), ["a"])  # the same again
    assert sent(table, "a") == []
    table.apply(keyed(mac(2, seq=1)), ["a"])  # attributes changed
    assert sent(table, "a") == [("announce", 2)]


def test_a_withdraw_goes_only_to_a_peer_that_was_sent_the_route() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1)), ["a"])
    assert sent(table, "a") == [("announce", 1)]
    table.apply(keyed(mac(1, withdraw=True), mac(2), mac(2, withdraw=True)), ["a", "b"])
    assert sent(table, "a") == [("withdraw", 1)]
    assert sent(table, "b") == []  # never sent 1 or 2
    assert table.routes == {}


def test_a_withdraw_repeats_the_label_that_was_sent() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1)), ["a"])
    table.queue("a").take(table.routes)
    other_vni = AdvertChange(MacAdvert(RD, 200, mac(1).advert.mac, None, ME, ()), withdraw=True)
    table.apply(keyed(other_vni), ["a"])
    [withdraw] = table.queue("a").take(table.routes)
    assert withdraw == prepare(AdvertChange(mac(1).advert, withdraw=True))[1]


def test_a_new_session_is_sent_the_whole_table_and_nothing_withdrawn() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1), mac(2), imet()), ["a"])
    sent(table, "a")
    table.apply(keyed(mac(2, withdraw=True), mac(3)), ["a"])  # queued, session goes down
    table.queue("a").new_session(table.routes)
    assert sorted(sent(table, "a")) == [("announce", -1), ("announce", 1), ("announce", 3)]


def test_a_refresh_resends_every_route_and_keeps_pending_withdraws() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1), mac(2)), ["a"])
    sent(table, "a")
    table.apply(keyed(mac(2, withdraw=True)), ["a"])
    table.queue("a").resend(table.routes, bracket=True)
    assert table.queue("a").bracket
    assert sorted(sent(table, "a")) == [("announce", 1), ("withdraw", 2)]
    assert sent(table, "a") == []  # the refresh is over


def test_sync_withdraws_what_no_core_announces_any_more() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1), mac(2), mac(3), mac(4)), ["a", "b"])
    sent(table, "a")
    table.begin()
    table.apply(keyed(mac(1, seq=2), mac(3, withdraw=True)), ["a", "b"])
    assert table.end() == 2  # 2 and 4 were not repeated; 3 went by its own withdraw
    assert set(table.routes) == {route_of(mac(1))}
    # a was sent 1..4: it is sent the new 1 and the withdraws; b only ever gets 1
    assert sorted(sent(table, "a")) == [
        ("announce", 1),
        ("withdraw", 2),
        ("withdraw", 3),
        ("withdraw", 4),
    ]
    assert sent(table, "b") == [("announce", 1)]
    assert table.end() == 0  # nothing pending without a begin


# ---------------------------------------------------------------- batch lines


def test_batch_lines_stay_below_exabgps_cap_on_one_command() -> None:
    """Long changes (IPv6, eight RTs each) still fit: a line over MAX_LINE is split, and
    every change goes out once, in order."""
    rts = tuple(RouteTarget.parse(f"65000:{n}") for n in range(100, 108))
    changes = [
        AdvertChange(MacAdvert(RD, 100, f"02:00:5e:00:{n >> 8:02x}:{n & 255:02x}",
                               f"2001:db8:1234:5678::{n:x}", "2001:db8::21", rts, n, False))
        for n in range(encode.BATCH_SIZE + 5)
    ]  # fmt: skip
    lines = encode.batches(changes)
    assert len(lines) > 2  # one BATCH_SIZE chunk of these is over the limit: split
    assert all(len(line) <= encode.MAX_LINE < 1 << 20 for line, _ in lines)
    assert [c for _, chunk in lines for c in chunk] == changes
    for line, chunk in lines:
        parsed, errors = grammar.parse_batch(line[len(grammar.BATCH) + 1 :])
        assert errors == [] and parsed == list(chunk)


def test_batch_lines_round_trip_and_hold_no_space() -> None:
    changes = [
        mac(1),
        mac(2, seq=7, withdraw=True),
        AdvertChange(MacAdvert(RD, 100, "02:00:5e:00:00:09", "2001:db8::9", ME, RTS, 4, True)),
        imet(),
        imet(withdraw=True),
    ]
    [(line, chunk)] = encode.batches(changes)
    assert chunk == tuple(changes)
    prefix, payload = line[: len(grammar.BATCH)], line[len(grammar.BATCH) + 1 :]
    assert prefix == grammar.BATCH and " " not in payload
    parsed, errors = grammar.parse_batch(payload)
    assert errors == []
    assert grammar.parse_batch(base64.b64decode(payload).decode()) == (parsed, [])  # JSON
    assert not set(payload) & set("[](),\t")  # nothing ExaBGP's line formatting rewrites
    expected = [
        AdvertChange(
            (c.advert if not c.withdraw else type(c.advert)(**{**_fields(c.advert), "rts": ()})),
            c.withdraw,
        )
        for c in changes
    ]
    assert parsed == expected


def _fields(advert: Any) -> dict[str, Any]:
    return dict(advert._asdict())


def _as_parsed(change: AdvertChange) -> AdvertChange:
    """What the launcher reads back for ``change``: a withdraw carries no route targets."""
    if not change.withdraw:
        return change
    return AdvertChange(type(change.advert)(**{**_fields(change.advert), "rts": ()}), True)


def _payload_json(line: str) -> list[Any]:
    return json.loads(base64.b64decode(line[len(grammar.BATCH) + 1 :]))


def test_a_vnis_new_macs_spell_rd_vtep_and_rts_once() -> None:
    other = RouteDistinguisher.parse(f"{ME}:2")
    changes = [mac(n) for n in range(1, 200)]
    changes.insert(50, AdvertChange(MacAdvert(other, 200, "02:00:5e:00:09:09", None, ME, RTS)))
    [(line, _)] = encode.batches(changes)
    entries = _payload_json(line)
    assert [len(entry) for entry in entries] == [8, 8]  # two groups: one per VNI
    assert entries[0][:7] == [0, f"{ME}:1", 100, ME, ["65000:100"], 0, 0]
    assert len(entries[0][7]) == 2 * 199
    parsed, errors = grammar.parse_batch(line[len(grammar.BATCH) + 1 :])
    assert errors == []
    assert Counter(parsed) == Counter(changes)


MACS = st.sampled_from([f"02:00:5e:00:00:{n:02x}" for n in range(1, 6)])


@st.composite
def some_change(draw: st.DrawFn) -> AdvertChange:
    if draw(st.integers(0, 5)) == 0:
        return AdvertChange(ImetAdvert(RD, draw(st.sampled_from([100, 200])), ME, RTS),
                            draw(st.booleans()))  # fmt: skip
    advert = MacAdvert(
        draw(st.sampled_from([RD, RouteDistinguisher.parse(f"{ME}:2")])),
        draw(st.sampled_from([100, 200])),
        draw(MACS),
        draw(st.sampled_from([None, "198.51.100.7", "2001:db8::7"])),
        ME,
        draw(st.sampled_from([RTS, (RouteTarget.parse("65000:200"),)])),
        draw(st.sampled_from([0, 3])),
        draw(st.booleans()),
    )
    return AdvertChange(advert, draw(st.booleans()))


def _route(change: AdvertChange) -> tuple[Any, ...]:
    advert = change.advert
    if isinstance(advert, MacAdvert):
        return (advert.rd, advert.mac, advert.ip)
    return (advert.rd, advert.vtep)


@given(st.lists(some_change(), max_size=40))
def test_grouped_lines_keep_every_change_and_each_routes_order(
    changes: list[AdvertChange],
) -> None:
    lines = encode.batches(changes)
    parsed = []
    for line, _ in lines:
        got, errors = grammar.parse_batch(line[len(grammar.BATCH) + 1 :])
        assert errors == []
        parsed += got
    expected = [_as_parsed(change) for change in changes]
    assert Counter(parsed) == Counter(expected)
    for route in {_route(change) for change in changes}:
        assert [c for c in parsed if _route(c) == route] == [
            c for c in expected if _route(c) == route
        ]


@given(st.lists(some_change(), max_size=40), st.lists(some_change(), max_size=40))
def test_withdraws_keyed_from_their_routes_leave_the_table_as_their_changes_do(
    before: list[AdvertChange], changes: list[AdvertChange]
) -> None:
    """The launcher keys a batch's type 2 withdraws without adverts: the table, and what a
    peer is sent, must be what the same changes, each prepared, give."""
    fast, slow = AdvertTable(), AdvertTable()
    for table in (fast, slow):
        table.apply(keyed(*before), ["a"])
        table.queue("a").take(table.routes)
    for line, _ in encode.batches(changes):
        items, errors = grammar.parse_batch_items(line[len(grammar.BATCH) + 1 :])
        good, refused = launcher.keyed(items)
        assert errors == [] and refused == []
        fast.apply(good, ["a"])
        parsed, _ = grammar.parse_batch(line[len(grammar.BATCH) + 1 :])
        slow.apply(keyed(*parsed), ["a"])
    assert fast.routes == slow.routes
    assert sent(fast, "a") == sent(slow, "a")


def test_a_batch_keeps_a_routes_withdraw_and_announce_in_order() -> None:
    table = AdvertTable()
    table.apply(keyed(mac(1), mac(2)), ["a"])
    table.queue("a").take(table.routes)
    [(line, _)] = encode.batches([mac(1, withdraw=True), mac(2, withdraw=True), mac(1, seq=3)])
    items, errors = grammar.parse_batch_items(line[len(grammar.BATCH) + 1 :])
    assert errors == [] and [type(item) for item in items] == [
        grammar.MacWithdraws,
        AdvertChange,
    ]
    good, refused = launcher.keyed(items)
    assert refused == [] and [item is None for _, item in good] == [True, True, False]
    table.apply(good, ["a"])
    assert sent(table, "a") == [("announce", 1), ("withdraw", 2)]


def test_a_withdraw_that_cannot_be_a_route_is_refused_alone() -> None:
    payload = json.dumps([[1, f"{ME}:1", 100, ME, [], 0, 0,
                           ["02:00:5e:00:00:01", None, "01:00:5e:00:00:02", None,
                            "02:00:5e:00:00:03", "not an ip"]]])  # fmt: skip
    items, errors = grammar.parse_batch_items(payload)
    good, refused = launcher.keyed(items)
    assert errors == [] and [route for route, _ in good] == [route_of(mac(1, withdraw=True))]
    assert len(refused) == 2 and "01:00:5e:00:00:02" in refused[0]
    assert "not an ip" in refused[1] and "VNI 100" in refused[1]


@pytest.mark.parametrize(
    "entry",
    [
        "[0]",
        '[2,"192.0.2.21:1",100,"192.0.2.21",["65000:1"]]',
        '[0,"nonsense",100,"192.0.2.21",["65000:1"]]',
        '[0,"192.0.2.21:1",100,"192.0.2.21",[7]]',
        '[0,"192.0.2.21:1",100,"192.0.2.21",["65000:1"],"02:00:5e:00:00:01",null,0,5]',
        '[0,"192.0.2.21:1",100,"192.0.2.21",["65000:1"],0,0,["02:00:5e:00:00:01"]]',
        '[0,"192.0.2.21:1",100,"192.0.2.21",["65000:1"],0,0,"02:00:5e:00:00:01"]',
        '[0,"192.0.2.21:1",100,"192.0.2.21",["65000:1"],0,2,["02:00:5e:00:00:01",null]]',
        '"text"',
    ],
)
def test_a_malformed_batch_entry_is_reported_alone(entry: str) -> None:
    good = '[0,"192.0.2.21:1",100,"192.0.2.21",["65000:1"]]'
    parsed, errors = grammar.parse_batch(f"[{good},{entry}]")
    assert len(parsed) == 1 and len(errors) == 1


def test_a_batch_that_is_not_a_json_list_is_a_grammar_error() -> None:
    for payload in ("{", '{"a":1}', "not base64!", base64.b64encode(b'{"a":1}').decode()):
        with pytest.raises(grammar.GrammarError):
            grammar.parse_batch(payload)


# ---------------------------------------------------------------- through ExaBGP's peer code


@pytest.fixture
def path(monkeypatch: pytest.MonkeyPatch) -> Iterator[launcher.AdvertPath]:
    """A fresh table, installed in ExaBGP's send path for the test, then unwrapped."""
    fresh = launcher.AdvertPath()
    monkeypatch.setattr(launcher, "ADVERTS", fresh)
    compat.install_advert_path(fresh)
    yield fresh
    originals = compat._advert_originals
    rib = compat.exa.OutgoingRIB
    rib.pending, rib.replace_restart = originals["pending"], originals["replace_restart"]
    compat.exa.Protocol.new_update = originals["new_update"]
    compat.exa.Peer.resend = originals["resend"]
    compat._advert_hooks[0] = compat.AdvertHooks()


class Processes:
    def __init__(self) -> None:
        self.answers: list[str] = []

    def answer_done(self, service: str) -> None:
        self.answers.append("done")

    def answer_error(self, service: str) -> None:
        self.answers.append("error")


class Reactor:
    """One l2vpn evpn peer, its adj-rib-out and a stand-in session of it."""

    NAME = "neighbor 192.0.2.1"

    def __init__(self, msg_size: int = 4096) -> None:
        family = compat.evpn_family()
        self.processes = Processes()
        self.outgoing = compat.exa.OutgoingRIB(True, [family])
        neighbor = type("N", (), {"families": lambda self: [family]})()
        neighbor.rib = type("Rib", (), {"outgoing": self.outgoing})()
        self.configuration = type("C", (), {"neighbors": {self.NAME: neighbor}})()
        negotiated = compat.exa.Negotiated(compat.exa.Neighbor())
        negotiated.families = [family]
        negotiated.asn4 = True
        negotiated.msg_size = msg_size
        self.negotiated = negotiated
        self.session = selftest._Session(self.outgoing, negotiated)

    def peers(self, service: str) -> list[str]:
        return [self.NAME]

    def command(self, line: str) -> str:
        launcher.handle(None, self, "agent", line, False)
        return self.processes.answers[-1]

    def batch(self, changes: list[AdvertChange]) -> list[str]:
        return [self.command(line) for line, _ in encode.batches(changes)]

    def connect(self) -> None:
        """A new session: what Peer._main does first."""
        self.session = selftest._Session(self.outgoing, self.negotiated)
        self.outgoing.replace_restart([], [])

    def send_cycle(self) -> list[bytes]:
        """What the peer loop sends now (it calls new_update only when pending says so)."""
        before = len(self.session.sent)
        if self.outgoing.pending():
            for _ in compat.exa.Protocol.new_update(self.session, True):
                pass
        return self.session.sent[before:]


def routes_in(messages: list[bytes]) -> tuple[set[str], set[str]]:
    """(MACs announced, MACs withdrawn) in UPDATE messages, by our decoder."""
    announced, withdrawn = set(), set()
    for message in messages:
        for event in one_per_route(wire_decode.decode_message(message, "192.0.2.1")):
            if isinstance(event, RouteAnnounced):
                announced.add(getattr(event.route.key, "mac", "imet"))
            elif isinstance(event, RoutesWithdrawn):
                withdrawn.update(getattr(key, "mac", "imet") for key in event.keys)
    return announced, withdrawn


def exabgp_routes(reactor: Reactor, messages: list[bytes]) -> int:
    """How many NLRIs ExaBGP's own decoder finds in the messages (the oracle)."""
    count = 0
    for raw in messages:
        if raw[18] == 2:
            update = compat.exa.Update.unpack_message(
                raw[19:], compat.exa.Direction.IN, reactor.negotiated
            )
            count += len(update.nlris)
    return count


@pytest.mark.usefixtures("_exabgp_logger")
@pytest.mark.parametrize(("msg_size", "most"), [(4096, 30), (65535, 3)])
def test_thousands_of_routes_go_out_packed_within_the_message_size(
    path: launcher.AdvertPath, msg_size: int, most: int
) -> None:
    reactor = Reactor(msg_size)
    reactor.connect()
    changes = [mac(n) for n in range(2000)]
    assert reactor.batch(changes) == ["done"] * len(encode.batches(changes))
    messages = reactor.send_cycle()
    assert 2 <= len(messages) <= most
    assert all(len(m) <= msg_size for m in messages)
    assert routes_in(messages) == ({c.advert.mac for c in changes}, set())  # type: ignore[union-attr]
    assert exabgp_routes(reactor, messages) == 2000
    assert reactor.send_cycle() == []  # nothing more until something changes

    assert reactor.batch([mac(n, withdraw=True) for n in range(1000)]) == ["done"]
    messages = reactor.send_cycle()
    assert len(messages) <= most
    assert routes_in(messages) == (set(), {mac(n).advert.mac for n in range(1000)})  # type: ignore[union-attr]


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_new_session_gets_the_table_before_exabgps_end_of_rib(
    path: launcher.AdvertPath,
) -> None:
    reactor = Reactor()
    assert reactor.batch([mac(1), mac(2), imet()]) == ["done"]  # session not up yet
    assert reactor.command(grammar.render(_withdraw_line(2))) == "done"
    reactor.connect()
    messages = reactor.send_cycle()
    assert routes_in(messages) == ({"02:00:5e:00:00:01", "imet"}, set())
    reactor.connect()  # the session resets: all again, no withdraw of what went before
    assert routes_in(reactor.send_cycle()) == ({"02:00:5e:00:00:01", "imet"}, set())


def _withdraw_line(n: int) -> grammar.Command:
    advert = mac(n).advert
    assert isinstance(advert, MacAdvert)
    return grammar.MacRoute(
        grammar.Action.WITHDRAW, RD, advert.mac, 100, grammar._ip(ME, "next-hop")
    )


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_route_refresh_resends_the_table_between_borr_and_eorr(
    path: launcher.AdvertPath,
) -> None:
    reactor = Reactor()
    reactor.connect()
    reactor.batch([mac(1), mac(2)])
    reactor.send_cycle()
    compat.exa.Peer.resend(reactor.session, True, compat.evpn_family())
    messages = reactor.send_cycle()
    kinds = [m[18] for m in messages]
    assert kinds == [5, 2, 5]  # BoRR, our routes, EoRR; ExaBGP's own refresh is not bracketed
    assert (messages[0][21], messages[-1][21]) == (1, 2)  # subtypes: begin, end
    assert routes_in(messages[1:2]) == ({"02:00:5e:00:00:01", "02:00:5e:00:00:02"}, set())
    compat.exa.Peer.resend(reactor.session, False, compat.evpn_family())
    assert [m[18] for m in reactor.send_cycle()] == [2]  # a plain refresh: no brackets


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_refresh_of_an_empty_table_still_sends_borr_and_eorr(
    path: launcher.AdvertPath,
) -> None:
    reactor = Reactor()
    reactor.connect()
    assert reactor.send_cycle() == []
    compat.exa.Peer.resend(reactor.session, True, compat.evpn_family())
    assert [(m[18], m[21]) for m in reactor.send_cycle()] == [(5, 1), (5, 2)]


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_session_without_l2vpn_evpn_is_sent_none_of_ours(path: launcher.AdvertPath) -> None:
    reactor = Reactor()
    reactor.negotiated.families = []  # configured with the family, the peer did not take it
    reactor.connect()
    assert reactor.batch([mac(1)]) == ["done"]
    assert reactor.outgoing.pending()
    assert reactor.send_cycle() == []
    assert not reactor.outgoing.pending()  # taken: the peer loop does not spin on it


@pytest.mark.usefixtures("_exabgp_logger")
def test_sync_end_withdraws_stale_routes_from_the_peers(path: launcher.AdvertPath) -> None:
    reactor = Reactor()
    reactor.connect()
    reactor.batch([mac(1), mac(2)])
    reactor.send_cycle()
    assert reactor.command(grammar.SYNC_BEGIN) == "done"
    reactor.batch([mac(1)])
    assert reactor.command(grammar.SYNC_END) == "done"
    assert routes_in(reactor.send_cycle()) == (set(), {"02:00:5e:00:00:02"})


@pytest.mark.usefixtures("_exabgp_logger")
def test_a_batch_with_a_bad_entry_keeps_the_good_ones_and_answers_error(
    path: launcher.AdvertPath, caplog: pytest.LogCaptureFixture
) -> None:
    reactor = Reactor()
    reactor.connect()
    bad = AdvertChange(MacAdvert(RD, 100, "01:00:5e:00:00:01", None, ME, RTS))
    with caplog.at_level(logging.ERROR, logger="evpn_agent.speaker"):
        assert reactor.batch([mac(1), bad]) == ["error"]
    assert "not a host address" in caplog.text
    assert routes_in(reactor.send_cycle()) == ({"02:00:5e:00:00:01"}, set())


@pytest.fixture
def _exabgp_logger() -> Iterator[None]:
    with selftest._exabgp_logger():
        yield
