"""Unit tests for the EVPN command grammar (pure: no ExaBGP, no root)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evpn_agent.speaker.grammar import (
    MAX_LABEL,
    Action,
    GrammarError,
    MacMobility,
    MacRoute,
    MulticastRoute,
    RouteDistinguisher,
    RouteTarget,
    parse,
    render,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

ROUND_TRIP = [
    "announce evpn mac rd 192.0.2.11:3 mac 02:00:5e:00:01:01 label 100 next-hop 192.0.2.11"
    " rt 65000:100",
    "announce evpn mac rd 192.0.2.11:3 mac 02:00:5e:00:01:01 ip 198.51.100.1 label 100"
    " next-hop 192.0.2.11 rt 65000:100 rt 65000:200 mobility 3 sticky",
    "announce evpn mac rd 192.0.2.11:65535 mac 02:00:5e:00:01:01 ip 2001:db8::1 label 16777215"
    " next-hop 2001:db8::11 rt 192.0.2.11:100 mobility 4294967295",
    "announce evpn mac rd 65000:4294967295 mac de:ad:be:ef:00:01 label 0 next-hop 192.0.2.11"
    " rt 4200000000:65535",
    "withdraw evpn mac rd 192.0.2.11:3 mac 02:00:5e:00:01:01 ip 198.51.100.1 label 100"
    " next-hop 192.0.2.11",
    "announce evpn multicast rd 192.0.2.11:3 ip 192.0.2.11 label 100 next-hop 192.0.2.11"
    " rt 65000:100",
    "withdraw evpn multicast rd 4200000000:7 ip 2001:db8::11 label 100 next-hop 2001:db8::11",
]


@pytest.mark.parametrize("line", ROUND_TRIP)
def test_round_trip(line: str) -> None:
    command = parse(line)
    assert render(command) == line
    assert parse(render(command)) == command


def test_parse_builds_typed_values() -> None:
    command = parse(
        "announce evpn mac rd 192.0.2.11:3 mac 02:00:5E:00:01:01 ip 198.51.100.1 label 100"
        " next-hop 192.0.2.11 rt 65000:100 mobility 3 sticky"
    )
    assert command == MacRoute(
        Action.ANNOUNCE,
        RouteDistinguisher(V4("192.0.2.11"), 3),
        "02:00:5e:00:01:01",  # normalised to lower case
        100,
        V4("192.0.2.11"),
        ip=V4("198.51.100.1"),
        route_targets=(RouteTarget(65000, 100),),
        mobility=MacMobility(3, sticky=True),
    )


def test_keywords_in_any_order_and_extra_spaces() -> None:
    line = (
        "announce  evpn multicast  next-hop 192.0.2.11 rt 65000:100 label 100"
        " ip 192.0.2.11 rd 192.0.2.11:3 "
    )
    assert render(parse(line)) == (
        "announce evpn multicast rd 192.0.2.11:3 ip 192.0.2.11 label 100 next-hop 192.0.2.11"
        " rt 65000:100"
    )


def test_withdrawal_keeps_key_and_label_and_drops_attributes() -> None:
    announce = parse(ROUND_TRIP[1])
    assert isinstance(announce, MacRoute)
    withdraw = announce.withdrawal()
    assert render(withdraw) == ROUND_TRIP[4]
    multicast = parse(ROUND_TRIP[5])
    assert isinstance(multicast, MulticastRoute)
    assert render(multicast.withdrawal()) == (
        "withdraw evpn multicast rd 192.0.2.11:3 ip 192.0.2.11 label 100 next-hop 192.0.2.11"
    )


@pytest.mark.parametrize(
    ("text", "rd_type"),
    [("65535:4294967295", 0), ("192.0.2.1:65535", 1), ("65536:65535", 2), ("0:0", 0)],
)
def test_route_distinguisher_types(text: str, rd_type: int) -> None:
    rd = RouteDistinguisher.parse(text)
    assert rd.type == rd_type
    assert str(rd) == text


MAC_LINE = "announce evpn mac rd 192.0.2.11:3 mac {mac} label 100 next-hop 192.0.2.11 rt 65000:100"
BASE = "announce evpn mac rd 192.0.2.11:3 mac 02:00:5e:00:01:01 label 100 next-hop 192.0.2.11"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "expected 'announce|withdraw"),
        ("announce evpn", "expected 'announce|withdraw"),
        ("modify evpn mac", "action must be announce or withdraw"),
        ("announce route mac", "expected 'evpn'"),
        ("announce evpn prefix rd 1:1", "route type must be mac or multicast"),
        (MAC_LINE.format(mac="02:00:5e:00:01"), "six hex octets"),
        (MAC_LINE.format(mac="02:00:5e:00:01:1"), "six hex octets"),
        (MAC_LINE.format(mac="02-00-5e-00-01-01"), "six hex octets"),
        (MAC_LINE.format(mac="02:00:5e:00:01:0g"), "six hex octets"),
        (MAC_LINE.format(mac="00:00:00:00:00:00"), "not a host address"),
        (MAC_LINE.format(mac="01:00:5e:00:00:01"), "multicast or broadcast"),
        (MAC_LINE.format(mac="ff:ff:ff:ff:ff:ff"), "multicast or broadcast"),
        (BASE.replace("label 100", "label 16777216") + " rt 1:1", "out of range (0..16777215)"),
        (BASE.replace("label 100", "label -1") + " rt 1:1", "decimal number"),
        (BASE.replace("label 100", "label 1_0") + " rt 1:1", "decimal number"),
        (BASE.replace("label 100", "label +1") + " rt 1:1", "decimal number"),
        (BASE.replace("label 100", "label \u0661") + " rt 1:1", "decimal number"),
        (
            BASE.replace(":3 ", ":65536 ") + " rt 1:1",
            "must be 0..65535 when the administrator is an IPv4",
        ),
        (BASE.replace("192.0.2.11:3", "65536:65536") + " rt 1:1", "4-byte AS number"),
        (BASE.replace("192.0.2.11:3", "4294967296:1") + " rt 1:1", "out of range"),
        (BASE.replace("192.0.2.11:3", "65000:4294967296") + " rt 1:1", "out of range"),
        (BASE.replace("192.0.2.11:3", "192.0.2.11") + " rt 1:1", "must look like"),
        (BASE.replace("192.0.2.11:3", ":3") + " rt 1:1", "must look like"),
        (BASE.replace("192.0.2.11:3", "192.0.2.300:3") + " rt 1:1", "is not an IPv4 address"),
        (BASE.replace("192.0.2.11:3", "2001:db8::1:3") + " rt 1:1", "decimal number"),
        (BASE + " rt 65000", "route target must look like"),
        (BASE + " rt 65000:x", "decimal number"),
        (BASE + " rt 192.0.2.1:65536", "route target 192.0.2.1:65536"),
        (BASE, "announce needs at least one rt"),
        (BASE.replace("next-hop 192.0.2.11", "next-hop 0.0.0.0") + " rt 1:1", "unicast"),
        (BASE.replace("next-hop 192.0.2.11", "next-hop 224.0.0.1") + " rt 1:1", "unicast"),
        (BASE.replace("next-hop 192.0.2.11", "next-hop 255.255.255.255") + " rt 1:1", "unicast"),
        (BASE.replace("next-hop 192.0.2.11", "next-hop vtep1") + " rt 1:1", "IPv4 or IPv6"),
        (BASE + " ip ff02::1 rt 1:1", "ip must be a unicast address"),
        (BASE + " rt 1:1 mobility 4294967296", "out of range"),
        (BASE + " rt 1:1 sticky", "sticky may only follow"),
        (BASE + " rt 1:1 mobility 1 sticky sticky", "sticky may only follow"),
        (BASE + " rt 1:1 label 100", "label given twice"),
        (BASE + " rt 1:1 color 7", "unknown keyword 'color'"),
        (BASE + " rt", "rt needs a value"),
        ("announce evpn mac rd 1:1 label 1 next-hop 192.0.2.1 rt 1:1", "missing: mac"),
        ("announce evpn multicast rd 1:1 label 1 next-hop 192.0.2.1 rt 1:1", "missing: ip"),
        ("announce evpn multicast rd 1:1 ip 192.0.2.1 label 1 rt 1:1", "missing: next-hop"),
        (
            "announce evpn multicast rd 1:1 ip 192.0.2.1 label 1 next-hop 192.0.2.1 rt 1:1"
            " mobility 1",
            "unknown keyword 'mobility'",
        ),
        (BASE.replace("announce", "withdraw") + " rt 1:1", "withdraw carries no attributes"),
        (BASE.replace("announce", "withdraw") + " mobility 1", "withdraw carries no attributes"),
    ],
)
def test_parse_errors(line: str, message: str) -> None:
    with pytest.raises(GrammarError, match=None) as caught:
        parse(line)
    assert message in str(caught.value)


def test_grammar_error_is_a_value_error() -> None:
    assert issubclass(GrammarError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"label": MAX_LABEL + 1},
        {"label": True},
        {"mac": "not-a-mac"},
        {"next_hop": "192.0.2.11"},  # a str, not an address object
        {"ip": V4("0.0.0.0")},
        {"route_targets": [RouteTarget(65000, 100)]},  # a list, not a tuple
        {"route_targets": ()},
        {"mobility": 3},
        {"rd": "192.0.2.11:3"},
        {"action": "announce"},
    ],
)
def test_constructor_validates(kwargs: dict[str, object]) -> None:
    values: dict[str, object] = {
        "action": Action.ANNOUNCE,
        "rd": RouteDistinguisher(V4("192.0.2.11"), 3),
        "mac": "02:00:5e:00:01:01",
        "label": 100,
        "next_hop": V4("192.0.2.11"),
        "route_targets": (RouteTarget(65000, 100),),
    }
    values.update(kwargs)
    with pytest.raises(GrammarError):
        MacRoute(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("admin", "number"),
    [(-1, 1), (1 << 32, 1), (65000, -1), (65000, 1 << 32), (70000, 1 << 16), (True, 1)],
)
def test_admin_number_validates(admin: int, number: int) -> None:
    with pytest.raises(ValueError):
        RouteTarget(admin, number)


def test_mobility_validates() -> None:
    with pytest.raises(GrammarError):
        MacMobility(1 << 32)
    with pytest.raises(GrammarError):
        MacMobility(-1)


def test_render_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        render("announce evpn")  # type: ignore[arg-type]


# ---------------------------------------------------------------- property tests

unicast_v4 = st.ip_addresses(v=4).filter(
    lambda a: not (a.is_unspecified or a.is_multicast or a == V4("255.255.255.255"))
)
unicast_v6 = st.ip_addresses(v=6).filter(lambda a: not (a.is_unspecified or a.is_multicast))
unicast = st.one_of(unicast_v4, unicast_v6)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def admin_numbers(cls: type[RouteDistinguisher] | type[RouteTarget]) -> st.SearchStrategy:  # type: ignore[type-arg]
    return st.one_of(
        st.builds(cls, st.ip_addresses(v=4), u16),
        st.builds(cls, u16, u32),
        st.builds(cls, st.integers(0x10000, 0xFFFFFFFF), u16),
    )


macs = (
    st.binary(min_size=6, max_size=6)
    .map(lambda b: ":".join(f"{x:02x}" for x in bytes([b[0] & 0xFE]) + b[1:]))
    .filter(lambda m: m != "00:00:00:00:00:00")
)
labels = st.integers(0, MAX_LABEL)
rts = st.lists(admin_numbers(RouteTarget), min_size=1, max_size=4).map(tuple)
mac_routes = st.builds(
    MacRoute,
    st.just(Action.ANNOUNCE),
    admin_numbers(RouteDistinguisher),
    macs,
    labels,
    unicast,
    ip=st.none() | unicast,
    route_targets=rts,
    mobility=st.none() | st.builds(MacMobility, u32, st.booleans()),
)
multicast_routes = st.builds(
    MulticastRoute,
    st.just(Action.ANNOUNCE),
    admin_numbers(RouteDistinguisher),
    unicast,
    labels,
    unicast,
    route_targets=rts,
)
commands = st.one_of(mac_routes, multicast_routes)
commands = st.one_of(commands, commands.map(lambda c: c.withdrawal()))


@given(commands)
def test_render_parse_round_trip(command: MacRoute | MulticastRoute) -> None:
    line = render(command)
    assert "\n" not in line
    assert parse(line) == command
