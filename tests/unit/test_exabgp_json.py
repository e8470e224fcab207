import json

from evpn_agent.model import (
    EndOfRib,
    ImetKey,
    ImetRoute,
    LineRejected,
    MacKey,
    MacRoute,
    RefreshBegun,
    RouteAnnounced,
    RouteRejected,
    RoutesWithdrawn,
    RouteTarget,
    SessionDown,
    SessionUp,
)
from evpn_agent.speaker.decode import parse_line

PEER = "192.0.2.1"
RT = [{"value": 1, "string": "target:65000:100"}, {"value": 2, "string": "encap:VXLAN"}]


def envelope(kind: str, body: dict[str, object]) -> str:
    neighbor = {
        "address": {"local": "192.0.2.21", "peer": PEER},
        "asn": {"local": 65000, "peer": 65000},
        **body,
    }
    return json.dumps({"exabgp": "5.0.0", "time": 1.0, "type": kind, "neighbor": neighbor})


def update(announce=None, withdraw=None, attribute=None) -> str:  # type: ignore[no-untyped-def]
    upd: dict[str, object] = {}
    if attribute is not None:
        upd["attribute"] = attribute
    if announce is not None:
        upd["announce"] = {"l2vpn evpn": announce}
    if withdraw is not None:
        upd["withdraw"] = {"l2vpn evpn": withdraw}
    return envelope("update", {"direction": "receive", "message": {"update": upd}})


def mac_nlri(mac: str = "02:00:5E:00:01:01", ip: str | None = None, label=None) -> dict:  # type: ignore[no-untyped-def]
    n = {
        "code": 2,
        "parsed": True,
        "rd": "192.0.2.11:2",
        "esi": "-",
        "ethernet-tag": 0,
        "mac": mac,
        "label": label if label is not None else [[6, 100]],
    }
    if ip:
        n["ip"] = ip
    return n


def test_type2_announce_with_mobility() -> None:
    attrs = {
        "origin": "igp",
        "local-preference": 100,
        "originator-id": "192.0.2.11",
        "extended-community": [*RT, {"value": 3, "string": "mac-mobility:4:sticky"}],
    }
    events = parse_line(update({"192.0.2.11": [mac_nlri(ip="198.51.100.1")]}, attribute=attrs))
    key = MacKey("192.0.2.11:2", 0, "02:00:5e:00:01:01", "198.51.100.1")
    assert events == [
        RouteAnnounced(PEER, MacRoute(key, 100, "192.0.2.11", (RouteTarget(65000, 100),), 4, True))
    ]


def test_type3_takes_vni_and_vtep_from_pmsi() -> None:
    attrs = {"extended-community": RT, "pmsi": "pmsi:ingressreplication:0:6(100):192.0.2.12"}
    nlri = {"code": 3, "parsed": True, "rd": "192.0.2.12:3", "ethernet-tag": 0, "ip": "192.0.2.12"}
    events = parse_line(update({"192.0.2.12": [nlri]}, attribute=attrs))
    route = ImetRoute(
        ImetKey("192.0.2.12:3", 0, "192.0.2.12"), 100, "192.0.2.12", (RouteTarget(65000, 100),)
    )
    assert events == [RouteAnnounced(PEER, route)]


def test_type3_without_pmsi_is_rejected() -> None:
    nlri = {"code": 3, "rd": "192.0.2.12:3", "ethernet-tag": 0, "ip": "192.0.2.12"}
    [ev] = parse_line(update({"192.0.2.12": [nlri]}, attribute={"extended-community": RT}))
    assert isinstance(ev, RouteRejected) and ev.reason == "no-pmsi"


def test_withdraw_is_keyed_without_label() -> None:
    events = parse_line(update(withdraw=[mac_nlri(label=[[0]])]))
    assert events == [
        RoutesWithdrawn(PEER, (MacKey("192.0.2.11:2", 0, "02:00:5e:00:01:01", None),))
    ]


def test_own_reflected_routes_are_dropped() -> None:
    attrs = {"originator-id": "192.0.2.21", "extended-community": RT}
    line = update({"192.0.2.21": [mac_nlri()]}, attribute=attrs)
    assert parse_line(line, router_id="192.0.2.21") == []
    assert len(parse_line(line, router_id="192.0.2.99")) == 1


def test_bad_routes_are_rejected_one_by_one() -> None:
    nlris = [
        mac_nlri(mac="00:00:00:00:00:00"),
        mac_nlri(mac="01:00:5E:00:00:01"),
        mac_nlri(mac="FF:FF:FF:FF:FF:FF"),
        mac_nlri(mac="zz"),
        mac_nlri(label=[[0, 0]]),
        mac_nlri(label=[[1048575, 16777216]]),
        {"code": 5, "rd": "192.0.2.11:2", "ethernet-tag": 0},
        {"code": 42, "parsed": False, "raw": "2A0400000000"},  # as ExaBGP shows unknown types
        mac_nlri(),  # the one good route survives its bad neighbours
    ]
    events = parse_line(update({"192.0.2.11": nlris}, attribute={"extended-community": RT}))
    reasons = [e.reason for e in events if isinstance(e, RouteRejected)]
    assert reasons == [
        "zero-mac",
        "multicast-mac",
        "multicast-mac",
        "bad-mac",
        "bad-label",
        "bad-label",
        "unsupported-route-type",
        "unsupported-route-type",
    ]
    assert isinstance(events[-1], RouteAnnounced)


def test_martian_next_hops() -> None:
    for nh in ("127.0.0.1", "0.0.0.0", "224.0.0.1", "fe80::1", "not-an-ip"):
        [ev] = parse_line(update({nh: [mac_nlri()]}, attribute={"extended-community": RT}))
        assert isinstance(ev, RouteRejected) and ev.reason == "martian-nexthop", nh


def test_route_without_rt() -> None:
    [ev] = parse_line(update({"192.0.2.11": [mac_nlri()]}, attribute={}))
    assert isinstance(ev, RouteRejected) and ev.reason == "no-route-target"


def test_state_eor_and_acks() -> None:
    assert parse_line(envelope("state", {"state": "up"})) == [SessionUp(PEER)]
    assert parse_line(envelope("state", {"state": "down", "reason": "x"})) == [
        SessionDown(PEER, "x")
    ]
    assert parse_line(envelope("state", {"state": "connected"})) == []
    eor = envelope("update", {"message": {"eor": {"afi": "l2vpn", "safi": "evpn"}}})
    assert parse_line(eor) == [EndOfRib(PEER)]
    eor4 = envelope("update", {"message": {"eor": {"afi": "ipv4", "safi": "unicast"}}})
    assert parse_line(eor4) == []


def test_enhanced_route_refresh_begin_and_end() -> None:
    def refresh(subtype: str, safi: str = "evpn") -> str:
        return envelope(
            "refresh",
            {
                "direction": "receive",
                "route-refresh": {"afi": "l2vpn", "safi": safi, "subtype": subtype},
            },
        )

    assert parse_line(refresh("begin")) == [RefreshBegun(PEER)]
    assert parse_line(refresh("end")) == [EndOfRib(PEER, refresh=True)]
    assert parse_line(refresh("end", safi="vpls")) == []


def test_garbage_lines() -> None:
    for line in (
        "{",
        "[1,2]",
        '{"type": "update", "neighbor": {"address": 5}}',
        "\x00\xff",
        '{"type": "update", "neighbor": {"address": {"peer": "x"}, "message": {"update": '
        '{"announce": {"l2vpn evpn": {"192.0.2.1": "nope"}}}}}}',
    ):
        events = parse_line(line)
        assert all(isinstance(e, LineRejected) for e in events), line
