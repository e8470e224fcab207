"""The parser against ExaBGP output captured from a live FRR session (tests/fixtures)."""

import io
from pathlib import Path

from evpn_agent.model import (
    AdvertChange,
    AdvertRefused,
    EndOfRib,
    ImetAdvert,
    ImetRoute,
    LineRejected,
    MacRoute,
    PeerOpened,
    RouteAnnounced,
    RouteDistinguisher,
    RouteRejected,
    RoutesWithdrawn,
    RouteTarget,
    SessionDown,
    SessionReported,
    SessionUp,
)
from evpn_agent.speaker.channel import ExabgpChannel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OWN = "192.0.2.21"


def events(name: str) -> list[object]:
    """Every event in a capture, read as the daemon reads it (acks included)."""
    channel = ExabgpChannel(io.BytesIO(), io.BytesIO())
    out: list[object] = []
    for line in (FIXTURES / name).read_text().splitlines():
        out.extend(channel.decode(line.encode() + b"\n", OWN)[0])
    return out


def test_frr_type3() -> None:
    [ev] = events("frr_type3_announce.jsonl")
    assert isinstance(ev, RouteAnnounced) and isinstance(ev.route, ImetRoute)
    assert (ev.route.vni, ev.route.vtep, ev.route.key.origin) == (100, "192.0.2.11", "192.0.2.11")
    assert [str(rt) for rt in ev.route.rts] == ["65000:100"]


def test_frr_type2_mac_and_mac_ip() -> None:
    evs = events("frr_type2_announce.jsonl")
    routes = [e.route for e in evs if isinstance(e, RouteAnnounced)]
    assert all(isinstance(r, MacRoute) for r in routes) and len(routes) == len(evs) == 3
    assert {(r.key.mac, r.key.ip, r.vni, r.vtep) for r in routes if isinstance(r, MacRoute)} == {
        ("02:00:5e:00:00:01", None, 100, "192.0.2.11"),
        ("02:00:5e:00:00:01", "198.51.100.1", 100, "192.0.2.11"),
        ("02:00:5e:00:00:01", "2001:db8:100::1", 100, "192.0.2.11"),
    }


def test_frr_withdraws_match_announce_keys() -> None:
    announced = {
        e.route.key for e in events("frr_type2_announce.jsonl") if isinstance(e, RouteAnnounced)
    }
    withdrawn = {
        key
        for e in events("frr_type2_withdraw.jsonl")
        if isinstance(e, RoutesWithdrawn)
        for key in e.keys
    }
    assert withdrawn == announced
    announced3 = {
        e.route.key for e in events("frr_type3_announce.jsonl") if isinstance(e, RouteAnnounced)
    }
    withdrawn3 = {
        key
        for e in events("frr_type3_withdraw.jsonl")
        if isinstance(e, RoutesWithdrawn)
        for key in e.keys
    }
    assert withdrawn3 == announced3


def test_own_reflected_routes_and_withdraws_are_dropped() -> None:
    assert events("own_reflected_announce.jsonl") == []
    assert events("own_reflected_withdraw.jsonl") == []


def test_session_stream_has_no_rejects() -> None:
    evs = events("session.jsonl")
    assert not [e for e in evs if isinstance(e, LineRejected | RouteRejected)]
    assert SessionUp("192.0.2.1") in evs
    assert any(isinstance(e, SessionDown) for e in evs)
    assert EndOfRib("192.0.2.1") in evs


def test_session_stream_acks_are_tied_to_the_commands_sent() -> None:
    """The capture answers three commands with done, a bad one with error, then more with
    done: through the channel, the error becomes a refusal of the fourth change sent."""
    channel = ExabgpChannel(io.BytesIO(), io.BytesIO())
    sent = [
        AdvertChange(
            ImetAdvert(
                RouteDistinguisher.parse(f"192.0.2.21:{vni}"), vni, OWN, (RouteTarget(65000, vni),)
            )
        )
        for vni in range(1, 9)
    ]
    for change in sent:  # one line each, as the capture answered them
        channel.send([change])
    out: list[object] = []
    for line in (FIXTURES / "session.jsonl").read_text().splitlines():
        out.extend(channel.decode(line.encode() + b"\n", OWN)[0])
    refused = [e for e in out if isinstance(e, AdvertRefused)]
    assert refused == [AdvertRefused(sent[3])]


def test_shutdown_line_is_ignored() -> None:
    assert events("shutdown.jsonl") == []


def test_opens_tell_what_each_reflector_negotiated() -> None:
    # FRR 8.4 (graceful restart helper, enhanced route refresh), GoBGP 3.10 as configured
    # by default (neither), GoBGP with graceful restart (no enhanced route refresh)
    assert events("open.jsonl") == [
        PeerOpened("192.0.2.1", graceful_restart=True, enhanced_refresh=True),
        PeerOpened("192.0.2.2", graceful_restart=False, enhanced_refresh=False),
        PeerOpened("192.0.2.3", graceful_restart=True, enhanced_refresh=False),
    ]


def test_neighbor_report_gives_uptime_and_graceful_restart() -> None:
    report = {ev.peer: ev for ev in events("neighbor_report.jsonl")}  # type: ignore[attr-defined]
    assert set(report) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert all(isinstance(ev, SessionReported) and ev.up for ev in report.values())
    assert {peer: ev.graceful_restart for peer, ev in report.items()} == {
        "192.0.2.1": True,
        "192.0.2.2": False,
        "192.0.2.3": True,
    }
    assert all(0 <= ev.uptime < 60 for ev in report.values())


def test_the_late_ack_of_a_report_request_is_paired_with_it() -> None:
    """ExaBGP answers "show neighbor json" after the acks of lines written later: a refusal
    of such a line must still come back as that line's refusal."""
    channel = ExabgpChannel(io.BytesIO(), io.BytesIO())
    change = AdvertChange(
        ImetAdvert(RouteDistinguisher.parse(f"{OWN}:100"), 100, OWN, (RouteTarget(65000, 100),))
    )
    channel.ask_sessions()
    channel.send([change])
    assert channel.decode(b"error\n", OWN)[0] == [AdvertRefused(change)]
    report = (FIXTURES / "neighbor_report.jsonl").read_bytes()
    assert len(channel.decode(report, OWN)[0]) == 3
    assert channel.decode(b"done\n", OWN)[0] == []
    assert not channel._pending and channel.refused == 1


def test_a_refresh_waits_for_the_report_request_to_be_answered() -> None:
    """Both are answered late: the refresh is written only once nothing is outstanding."""
    out = io.BytesIO()
    channel = ExabgpChannel(io.BytesIO(), out)
    channel.ask_sessions()
    channel.ask_refresh()
    assert out.getvalue() == b"show neighbor json\n"
    channel.decode((FIXTURES / "neighbor_report.jsonl").read_bytes(), OWN)
    channel.decode(b"done\n", OWN)
    assert out.getvalue() == b"show neighbor json\nannounce route-refresh l2vpn evpn\n"
