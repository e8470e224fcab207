"""The wire codec (speaker/wire_decode, wire_encode) against ExaBGP 5.0.15's own codec.

The oracle for decoding is today's whole receive path: ExaBGP decodes the UPDATE, writes
the JSON its API process reads, and the agent's JSON parser turns that into events. Our
decoder must give the same events for the same bytes. The oracle for encoding is ExaBGP's
decoder on our bytes, and ExaBGP's own encoder for the same routes (byte for byte for one
route). ExaBGP is taught IPv6 EVPN next hops and PMSI tunnels in this process exactly as the
launcher teaches it, so both underlays round-trip. No root, no network.
"""

from __future__ import annotations

import ipaddress
import json
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evpn_agent.model import (
    MAX_VNI,
    Advert,
    AdvertChange,
    BgpEvent,
    EndOfRib,
    ImetAdvert,
    ImetKey,
    ImetRoute,
    MacAdvert,
    MacKey,
    MacRoute,
    Route,
    RouteAnnounced,
    RouteDistinguisher,
    RouteRejected,
    RoutesAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    one_per_route,
    vtep_address,
)
from evpn_agent.speaker import encode, grammar, launcher
from evpn_agent.speaker.decode import parse_line
from evpn_agent.speaker.wire_decode import decode_message, decode_update
from evpn_agent.speaker.wire_encode import (
    encode_changes,
    encode_prepared,
    end_of_rib,
    mac_routes,
    prepare,
    prepare_many,
    route_of,
)
from evpn_agent.speaker.wire_format import RdTexts, ipv6_text, rd_text

PEER = "192.0.2.1"
OWN = "192.0.2.21"  # our router id, as in the captured fixtures
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REASONS = {  # everything the wire decoder may say about a route or an UPDATE
    "malformed-update",
    "malformed-nlri",
    "malformed-attribute",
    "unsupported-route-type",
    "bad-mac",
    "zero-mac",
    "multicast-mac",
    "bad-ip",
    "bad-label",
    "martian-nexthop",
    "no-route-target",
    "no-pmsi",
    "unsupported-pmsi",
}
FLAGS_OPTIONAL, FLAGS_TRANSITIVE = 0x80, 0x40


# ---------------------------------------------------------------- ExaBGP, taught as by the launcher


@pytest.fixture(autouse=True, scope="module")
def _exabgp() -> Iterator[None]:
    """ExaBGP's logger (its decoder logs) and the launcher's IPv6 teaching, undone after."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI
    from exabgp.environment import getenv
    from exabgp.logger import log
    from exabgp.protocol.family import AFI, SAFI, Family

    log.init(getenv())
    key = (AFI.l2vpn, SAFI.evpn)
    saved = Family.size[key], PMSI._pmsi_known[6]
    launcher.teach_ipv6_underlay()
    yield
    Family.size[key], PMSI._pmsi_known[6] = saved


def _negotiated(max_size: int = 4096) -> Any:
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI

    negotiated = Negotiated(Neighbor())
    negotiated.families = [(AFI.l2vpn, SAFI.evpn)]
    negotiated.asn4 = True
    negotiated.msg_size = max_size
    return negotiated


def _neighbor() -> Any:
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.routerid import RouterID
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.ip import IP

    neighbor = Neighbor()
    neighbor["peer-address"] = IP.create(PEER)
    neighbor["local-address"] = IP.create(OWN)
    neighbor["local-as"] = neighbor["peer-as"] = ASN(65000)
    neighbor["router-id"] = RouterID(OWN)
    return neighbor


def exabgp_events(message: bytes, router_id: str | None = OWN) -> list[BgpEvent]:
    """Today's receive path: ExaBGP's decoder, its JSON for the API process, our parser."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update
    from exabgp.bgp.message.update.attribute import Attribute
    from exabgp.reactor.api.response.json import JSON
    from exabgp.version import json as json_version

    update = Update.unpack_message(message[19:], Direction.IN, _negotiated())
    if Attribute.CODE.INTERNAL_TREAT_AS_WITHDRAW in update.attributes:
        for nlri in update.nlris:  # what ExaBGP's reactor does before the JSON
            nlri.action = Action.WITHDRAW
    line = JSON(json_version).update(_neighbor(), "receive", update, None, b"", b"")
    return parse_line(line, router_id)


def exabgp_message(changes: Sequence[AdvertChange], max_size: int = 4096) -> list[bytes]:
    """ExaBGP's UPDATEs for routes sharing one set of attributes, built as the launcher
    builds them from our API lines."""
    from exabgp.bgp.message.update import Update

    built = [launcher.build_change(grammar.parse(encode.render(c))) for c in changes]
    update = Update([c.nlri for c in built], built[0].attributes)
    return [bytes(m) for m in update.messages(_negotiated(max_size))]


def ours(message: bytes, router_id: str | None = OWN) -> list[BgpEvent]:
    """Our decoder's events, a route per announce (as ExaBGP's JSON gives them)."""
    return one_per_route(decode_message(message, PEER, router_id))


def outcome(events: Sequence[BgpEvent]) -> list[object]:
    """Events as compared between decoders: a rejection's detail is free text."""
    return [(e.peer, e.reason) if isinstance(e, RouteRejected) else e for e in events]


# ---------------------------------------------------------------- our adverts, generated


def _valid_vtep(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return vtep_address(str(address)) is not None and str(address) != "255.255.255.255"


def _host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        not (address.is_unspecified or address.is_multicast) and str(address) != "255.255.255.255"
    )


admin_numbers = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 0xFFFF)),
    st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.integers(0x10000, 0xFFFFFFFF), st.integers(0, 0xFFFF)),
)
rds = admin_numbers.map(lambda a: RouteDistinguisher(*a))
rts = admin_numbers.map(lambda a: RouteTarget(*a))
rt_tuples = st.lists(rts, min_size=1, max_size=4, unique=True).map(tuple)
macs = (
    st.binary(min_size=6, max_size=6)
    .filter(lambda b: b != bytes(6) and not b[0] & 1)
    .map(lambda b: b.hex(":"))
)
vteps = st.ip_addresses().filter(_valid_vtep).map(str)
host_ips = st.none() | st.ip_addresses().filter(_host).map(str)
vnis = st.integers(1, (1 << 24) - 1)
seqs = st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF))
mac_adverts = st.builds(MacAdvert, rds, vnis, macs, host_ips, vteps, rt_tuples, seqs, st.booleans())
imet_adverts = st.builds(ImetAdvert, rds, vnis, vteps, rt_tuples)
adverts = mac_adverts | imet_adverts


def _rt_wire(rt: RouteTarget) -> bytes:
    if isinstance(rt.admin, ipaddress.IPv4Address):
        return struct.pack("!BB4sH", 1, 2, rt.admin.packed, rt.number)
    if rt.type == 0:
        return struct.pack("!BBHI", 0, 2, rt.admin, rt.number)
    return struct.pack("!BBIH", 2, 2, rt.admin, rt.number)


def received(advert: Advert) -> Route:
    """The route a receiver decodes from one of our adverts (RTs in wire order)."""
    targets = tuple(sorted(advert.rts, key=_rt_wire))
    vtep = str(ipaddress.ip_address(advert.vtep))
    if isinstance(advert, ImetAdvert):
        return ImetRoute(ImetKey(str(advert.rd), 0, vtep), advert.vni, vtep, targets)
    ip = None if advert.ip is None else str(ipaddress.ip_address(advert.ip))
    key = MacKey(str(advert.rd), 0, advert.mac, ip)
    return MacRoute(key, advert.vni, vtep, targets, advert.seq, advert.sticky)


def key_of(route: Route) -> MacKey | ImetKey:
    return route.key


# ---------------------------------------------------------------- UPDATEs built by hand


def attr(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255 or flags & 0x10:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def message(attributes: bytes, withdrawn: bytes = b"", nlri: bytes = b"") -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn
    body += struct.pack("!H", len(attributes)) + attributes + nlri
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


def rd_wire(rd: RouteDistinguisher) -> bytes:
    return struct.pack("!H", rd.type) + _rt_wire(RouteTarget(rd.admin, rd.number))[2:]


def mac_nlri(
    rd: bytes, mac: bytes, label: int, ip: bytes = b"", etag: int = 0, esi: bytes = bytes(10)
) -> bytes:
    value = rd + esi + struct.pack("!IB", etag, 48) + mac + bytes([len(ip) * 8]) + ip
    value += label.to_bytes(3, "big")
    return bytes([2, len(value)]) + value


def imet_nlri(rd: bytes, origin: bytes, etag: int = 0) -> bytes:
    value = rd + struct.pack("!IB", etag, len(origin) * 8) + origin
    return bytes([3, len(value)]) + value


def mp_reach(next_hop: bytes, nlris: bytes, flags: int = FLAGS_OPTIONAL) -> bytes:
    return attr(flags, 14, b"\x00\x19\x46" + bytes([len(next_hop)]) + next_hop + b"\x00" + nlris)


def mp_unreach(nlris: bytes, flags: int = FLAGS_OPTIONAL) -> bytes:
    return attr(flags, 15, b"\x00\x19\x46" + nlris)


def communities(*values: bytes) -> bytes:
    return attr(0xC0, 16, b"".join(values))


def pmsi(vni: int, tunnel: bytes, kind: int = 6, flags: int = 0) -> bytes:
    return attr(0xC0, 22, bytes([flags, kind]) + vni.to_bytes(3, "big") + tunnel)


BASE = attr(0x40, 1, b"\x00") + attr(0x40, 2, b"") + attr(0x40, 5, struct.pack("!I", 100))
RT_100 = struct.pack("!BBHI", 0, 2, 65000, 100)
VXLAN = bytes.fromhex("030c000000000008")
RD = struct.pack("!H4sH", 1, bytes([192, 0, 2, 11]), 2)
VTEP = bytes([192, 0, 2, 11])
MAC_A = bytes.fromhex("02005e000001")


# ---------------------------------------------------------------- (a) our bytes, ExaBGP's decoder


def _group(advert: Advert) -> tuple[object, ...]:
    vtep = ipaddress.ip_address(advert.vtep)
    if isinstance(advert, ImetAdvert):
        return ("imet", vtep, frozenset(advert.rts), advert.vni)
    return ("mac", vtep, frozenset(advert.rts), advert.seq, advert.sticky)


@settings(max_examples=150, deadline=None)
@given(st.lists(adverts, min_size=1, max_size=40), st.sampled_from([4096, 65535]))
def test_our_updates_decode_in_exabgp_to_the_same_routes(
    batch: list[Advert], max_size: int
) -> None:
    encoded = encode_changes([AdvertChange(a) for a in batch], max_size)
    assert encoded.refused == []
    expected = {key_of(received(a)): received(a) for a in batch}  # the last one per route
    by_exabgp = [e for m in encoded.messages for e in exabgp_events(m, router_id=None)]
    assert by_exabgp == [e for m in encoded.messages for e in ours(m, router_id=None)]
    routes = [e.route for e in by_exabgp if isinstance(e, RouteAnnounced)]
    assert len(routes) == len(by_exabgp) == len(expected)
    assert {key_of(r): r for r in routes} == expected
    # one UPDATE per attribute set (40 routes fit in one), each within the size
    last = {key_of(received(a)): a for a in batch}
    assert len(encoded.messages) == len({_group(a) for a in last.values()})
    assert all(len(m) <= max_size for m in encoded.messages)


@settings(max_examples=150, deadline=None)
@given(adverts)
def test_one_route_is_byte_for_byte_what_exabgp_sends(advert: Advert) -> None:
    change = AdvertChange(advert)
    assert encode_changes([change]).messages == exabgp_message([change])


@settings(max_examples=100, deadline=None)
@given(st.lists(adverts, min_size=1, max_size=30))
def test_our_withdraws_decode_in_exabgp(batch: list[Advert]) -> None:
    encoded = encode_changes([AdvertChange(a, withdraw=True) for a in batch])
    keys = {key_of(received(a)) for a in batch}
    for m in encoded.messages:
        assert exabgp_events(m, router_id=None) == ours(m, router_id=None)
    events = [e for m in encoded.messages for e in ours(m, router_id=None)]
    assert all(isinstance(e, RoutesWithdrawn) for e in events)
    withdrawn = [key for e in events if isinstance(e, RoutesWithdrawn) for key in e.keys]
    assert sorted(map(repr, withdrawn)) == sorted(map(repr, keys))
    assert len(encoded.messages) == 1  # 30 withdraws fit one MP_UNREACH


def test_a_withdraw_repeats_the_announce_label() -> None:
    rd = RouteDistinguisher(ipaddress.IPv4Address(OWN), 100)
    advert = MacAdvert(rd, 4464, "02:00:5e:00:01:01", None, OWN, (RouteTarget(65000, 4464),))
    [withdraw] = encode_changes([AdvertChange(advert, withdraw=True)]).messages
    assert withdraw.endswith((4464).to_bytes(3, "big"))
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update

    [nlri] = Update.unpack_message(withdraw[19:], Direction.IN, _negotiated()).nlris
    assert nlri.label.raw_labels == [4464]
    # only MP_UNREACH_NLRI: no other attribute (RFC 4760 section 4)
    assert withdraw[21:23] == len(withdraw[23:]).to_bytes(2, "big") and withdraw[24] == 15


# ---------------------------------------------------------------- (b) ExaBGP's bytes, our decoder


@settings(max_examples=150, deadline=None)
@given(adverts)
def test_exabgp_updates_decode_in_ours_to_the_same_route(advert: Advert) -> None:
    [announce] = exabgp_message([AdvertChange(advert)])
    assert ours(announce, None) == exabgp_events(announce, None)
    assert ours(announce, None) == [RouteAnnounced(PEER, received(advert))]
    [withdraw] = exabgp_message([AdvertChange(advert, withdraw=True)])
    assert ours(withdraw, None) == exabgp_events(withdraw, None)
    assert ours(withdraw, None) == [RoutesWithdrawn(PEER, (key_of(received(advert)),))]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_exabgp_packed_updates_decode_in_ours(data: st.DataObject) -> None:
    """Many routes with one attribute set in ExaBGP's own MP_REACH packing, split at 4096."""
    first = data.draw(mac_adverts | imet_adverts)
    count = data.draw(st.integers(1, 300))
    if isinstance(first, MacAdvert):
        batch: list[Advert] = [
            MacAdvert(first.rd, first.vni, mac, ip, first.vtep, first.rts, first.seq, first.sticky)
            for mac, ip in data.draw(
                st.lists(st.tuples(macs, host_ips), min_size=count, max_size=count)
            )
        ]
    else:  # type 3 routes share attributes only for one VNI and VTEP: vary the RD
        batch = [
            ImetAdvert(rd, first.vni, first.vtep, first.rts)
            for rd in data.draw(st.lists(rds, min_size=count, max_size=count))
        ]
    messages = exabgp_message([AdvertChange(a) for a in batch])
    events = [e for m in messages for e in ours(m, None)]
    assert events == [e for m in messages for e in exabgp_events(m, None)]
    expected = {key_of(received(a)): received(a) for a in batch}
    assert {e.route.key: e.route for e in events if isinstance(e, RouteAnnounced)} == expected


# ---------------------------------------------------------------- both decoders on any UPDATE


def mostly(usual: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else one of ``rare``."""
    return st.integers(0, 4).flatmap(lambda i: usual if i else st.one_of(*rare))


OWN_RD = struct.pack("!H4sH", 1, ipaddress.IPv4Address(OWN).packed, 7)
UNKNOWN_TYPES = [t for t in range(256) if t not in (1, 2, 3, 4, 5)]  # ExaBGP parses 1-5

rd_bytes = st.one_of(
    st.sampled_from([RD, OWN_RD]),
    st.binary(min_size=8, max_size=8),  # any type, unknown ones too
    rds.map(rd_wire),
)
ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16)
martians = [bytes([127, 0, 0, 1]), bytes([224, 0, 0, 5]), bytes(4), b"\xff" * 4]
martians += [ipaddress.IPv6Address(a).packed for a in ("fe80::1", "::", "::1", "ff02::1")]
vtep_bytes = mostly(
    vteps.map(lambda a: ipaddress.ip_address(a).packed), st.sampled_from(martians), ipv4, ipv6
)
host_macs = macs.map(lambda m: bytes.fromhex(m.replace(":", "")))


any_mac = mostly(
    host_macs,
    st.sampled_from([bytes(6), b"\xff" * 6, bytes.fromhex("01005e000001")]),
    st.binary(min_size=6, max_size=6),
)
labels = mostly(vnis, st.just(0))
type2 = st.builds(
    mac_nlri,
    rd_bytes,
    any_mac,
    labels,
    st.sampled_from([b""]) | ipv4 | ipv6,
    st.integers(0, 0xFFFFFFFF) | st.just(0),
    st.binary(min_size=10, max_size=10),
)
type3 = st.builds(imet_nlri, rd_bytes, ipv4 | ipv6, st.integers(0, 0xFFFFFFFF) | st.just(0))
unknown_type = st.builds(
    lambda kind, value: bytes([kind, len(value)]) + value,
    st.sampled_from(UNKNOWN_TYPES),
    st.binary(max_size=40),
)
nlri_lists = st.lists(mostly(type2 | type3, unknown_type), min_size=1, max_size=12).map(b"".join)


def _community(kind: int, subtype: int, value: bytes) -> bytes:
    return bytes([kind, subtype]) + value


extended = st.one_of(
    st.builds(
        _community,
        st.sampled_from([0, 1, 2, 0x40, 0x41, 0x42]),
        st.just(2),
        st.binary(min_size=6, max_size=6),
    ),
    st.just(RT_100),
    st.just(VXLAN),
    st.builds(  # MAC mobility, any flags
        lambda flags, seq: bytes([6, 0, flags, 0]) + seq.to_bytes(4, "big"),
        st.integers(0, 255),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.just(bytes.fromhex("0603020000000001")),  # router MAC: ignored
    st.binary(min_size=8, max_size=8),
)
# Not type 6 with a tunnel of another size than 4 or 16: ExaBGP reads the VNI of those as
# 0 (bad-label), we refuse the tunnel (unsupported-pmsi): see test_pmsi_tunnels.
pmsi_attributes = mostly(
    st.builds(pmsi, vnis, vtep_bytes, st.just(6), st.integers(0, 255)),
    st.builds(pmsi, labels, ipv4 | ipv6, st.just(6)),
    st.builds(pmsi, labels, st.just(b""), st.just(0)),  # no tunnel
    st.builds(pmsi, labels, st.binary(max_size=20), st.integers(1, 5) | st.integers(7, 255)),
)


@st.composite
def updates(draw: st.DrawFn) -> bytes:
    """An UPDATE ExaBGP accepts (so no malformed attribute), with any EVPN content."""
    if draw(st.integers(0, 30)) == 0:
        return message(mp_unreach(b""))  # End-of-RIB
    parts = [BASE]
    if draw(st.booleans()):
        originator = draw(st.sampled_from([ipaddress.IPv4Address(OWN).packed, VTEP]) | ipv4)
        parts.append(attr(0x80, 9, originator))
        parts.append(attr(0x80, 10, draw(st.lists(ipv4, min_size=1, max_size=3).map(b"".join))))
    values = draw(st.lists(extended, max_size=6))
    if draw(st.integers(0, 3)):
        values.append(draw(st.just(RT_100) | rts.map(_rt_wire)))
    if values:
        parts.append(communities(*values))
    if draw(st.integers(0, 3)):
        parts.append(draw(pmsi_attributes))
    if draw(st.booleans()):  # an attribute nobody here knows, optional transitive
        parts.append(attr(0xC0, draw(st.integers(200, 254)), draw(st.binary(max_size=10))))
    withdrawn = draw(st.none() | nlri_lists)
    announced = draw(st.none() | nlri_lists)
    if withdrawn is not None:
        parts.append(mp_unreach(withdrawn))
    if announced is not None or withdrawn is None:
        parts.append(mp_reach(draw(vtep_bytes), announced or draw(nlri_lists)))
    return message(b"".join(draw(st.permutations(parts))))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates())
@example(message(BASE + communities(RT_100) + mp_reach(VTEP, mac_nlri(RD, MAC_A, 100))))
@example(message(mp_unreach(b"")))
def test_both_decoders_give_the_same_events(update: bytes) -> None:
    assert outcome(ours(update)) == outcome(exabgp_events(update))


def attribute_first(update: bytes, extra: bytes) -> bytes:
    """``update`` with ``extra`` put before its attributes (so it wins over a repeat)."""
    body = update[19:]
    withdrawn = int.from_bytes(body[:2], "big")
    start = 2 + withdrawn + 2
    length = int.from_bytes(body[start - 2 : start], "big")
    return message(extra + body[start : start + length], body[2 : 2 + withdrawn])


TREAT_AS_WITHDRAW = [  # malformed attributes ExaBGP and we both answer with treat-as-withdraw
    attr(0xC0, 16, RT_100 + b"\x00\x01\x02\x03"),  # not a whole number of communities
    attr(0xC0, 16, b""),
    attr(0x40, 16, RT_100),  # extended communities are optional
    attr(0x40, 5, b"\x00\x00\x64"),  # LOCAL_PREF of 3 bytes
    attr(0xC0, 5, struct.pack("!I", 100)),  # LOCAL_PREF is well-known
    attr(0x40, 1, b""),  # ORIGIN of no byte
    attr(0x80, 1, b"\x00"),  # ORIGIN is well-known
]


@settings(max_examples=200, deadline=None)
@given(updates(), st.sampled_from(TREAT_AS_WITHDRAW))
def test_a_malformed_attribute_withdraws_the_routes_as_exabgp_does(
    update: bytes, bad: bytes
) -> None:
    update = attribute_first(update, bad)
    events = ours(update)
    counted = [
        e for e in events if isinstance(e, RouteRejected) and e.reason == "malformed-attribute"
    ]
    assert len(counted) == 1
    assert not any(isinstance(e, RouteAnnounced) for e in events)
    assert outcome([e for e in events if e not in counted]) == outcome(exabgp_events(update))


# ---------------------------------------------------------------- (c) what FRR sent, captured


def rebuilt(line: str) -> bytes | None:
    """The UPDATE behind one captured JSON line: the NLRIs from their raw hex, the
    attributes from their JSON (extended communities from their 64-bit values)."""
    doc = json.loads(line)
    update = doc.get("neighbor", {}).get("message", {})
    if "eor" in update:
        return message(mp_unreach(b""))
    if "update" not in update:
        return None
    update = update["update"]
    found = update.get("attribute", {})
    parts = []
    if "origin" in found:
        parts.append(attr(0x40, 1, bytes([["igp", "egp", "incomplete"].index(found["origin"])])))
        parts.append(attr(0x40, 2, b""))
    if "med" in found:
        parts.append(attr(0x80, 4, struct.pack("!I", found["med"])))
    if "local-preference" in found:
        parts.append(attr(0x40, 5, struct.pack("!I", found["local-preference"])))
    if "originator-id" in found:
        parts.append(attr(0x80, 9, ipaddress.IPv4Address(found["originator-id"]).packed))
    if "cluster-list" in found:
        ids = b"".join(ipaddress.IPv4Address(c).packed for c in found["cluster-list"])
        parts.append(attr(0x80, 10, ids))
    if "extended-community" in found:
        values = [c["value"].to_bytes(8, "big") for c in found["extended-community"]]
        parts.append(communities(*values))
    if "pmsi" in found:
        kind, flags, _, raw, tunnel = re.fullmatch(
            r"pmsi:(\w+):(\d+):(\d+)\((\d+)\):(.+)", found["pmsi"]
        ).groups()  # type: ignore[union-attr]
        assert kind == "ingressreplication"
        parts.append(pmsi(int(raw), ipaddress.ip_address(tunnel).packed, 6, int(flags)))
    for next_hop, nlris in update.get("announce", {}).get("l2vpn evpn", {}).items():
        raw = b"".join(bytes.fromhex(n["raw"]) for n in nlris)
        parts.append(mp_reach(ipaddress.ip_address(next_hop).packed, raw))
    withdrawn = update.get("withdraw", {}).get("l2vpn evpn", [])
    if withdrawn:
        parts.append(mp_unreach(b"".join(bytes.fromhex(n["raw"]) for n in withdrawn)))
    return message(b"".join(parts))


def captured() -> list[str]:
    lines = (FIXTURES / "session.jsonl").read_text().splitlines()
    return [line for line in lines if '"type": "update"' in line]


def test_the_fixtures_hold_updates_with_raw_nlri() -> None:
    lines = captured()
    assert sum('"raw"' in line for line in lines) >= 8
    assert any('"eor"' in line for line in lines)
    events = [e for line in lines for e in parse_line(line, OWN)]
    assert {type(e) for e in events} == {RouteAnnounced, RoutesWithdrawn, EndOfRib}


@pytest.mark.parametrize("line", captured(), ids=lambda line: line[120:170])
def test_captured_frr_updates_decode_as_their_json(line: str) -> None:
    update = rebuilt(line)
    assert update is not None
    expected = parse_line(line, OWN)
    assert exabgp_events(update) == expected  # the rebuilt UPDATE says what FRR's did
    assert ours(update) == expected


def test_captured_own_routes_are_dropped_both_ways() -> None:
    own = [
        line
        for name in ("own_reflected_announce.jsonl", "own_reflected_withdraw.jsonl")
        for line in (FIXTURES / name).read_text().splitlines()
    ]
    for line in own:
        update = rebuilt(line)
        assert update is not None
        assert ours(update) == parse_line(line, OWN) == []
        assert ours(update, router_id=None) == parse_line(line, None) != []


# ---------------------------------------------------------------- (d) hostile input


def _sample_changes() -> list[AdvertChange]:
    rd = RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), 2)
    rt = (RouteTarget(65000, 100),)
    macs = [f"02:00:5e:00:01:{i:02x}" for i in range(1, 6)]
    out = [AdvertChange(MacAdvert(rd, 100, mac, None, "192.0.2.11", rt)) for mac in macs]
    out.append(AdvertChange(MacAdvert(rd, 100, macs[0], "2001:db8::1", "192.0.2.11", rt, 3)))
    return out


SAMPLE = encode_changes(_sample_changes()).messages
SAMPLE_ROUTES = [e for m in SAMPLE for e in ours(m)]


def test_the_sample_is_two_updates_of_routes() -> None:
    assert len(SAMPLE) == 2 and len(SAMPLE_ROUTES) == 6
    assert all(isinstance(e, RouteAnnounced) for e in SAMPLE_ROUTES)


@pytest.mark.parametrize("update", SAMPLE)
def test_a_truncated_update_is_refused_whole(update: bytes) -> None:
    body = update[19:]
    for cut in range(len(body)):
        assert outcome(decode_update(body[:cut], PEER, OWN)) == [(PEER, "malformed-update")]
    for cut in range(len(update)):
        assert outcome(ours(update[:cut])) == [(PEER, "malformed-update")]


def _nlris(update: bytes) -> tuple[bytes, bytes]:
    """(next hop, NLRIs) of an UPDATE of ours: MP_REACH is its last attribute."""
    at = update.index(b"\x00\x19\x46")
    next_hop = update[at + 4 : at + 4 + update[at + 3]]
    return next_hop, update[at + 5 + len(next_hop) :]


@pytest.mark.parametrize("update", SAMPLE)
def test_mp_reach_cut_anywhere_keeps_only_whole_routes(update: bytes) -> None:
    """The attribute is framed, its content is cut: whole NLRIs before the cut, or nothing."""
    next_hop, nlris = _nlris(update)
    head = b"\x00\x19\x46" + bytes([len(next_hop)]) + next_hop + b"\x00"
    whole = ours(update)
    boundaries, at = {0: 0}, 0
    while at < len(nlris):
        at += 2 + nlris[at + 1]
        boundaries[at] = len(boundaries)
    attributes = BASE + communities(RT_100)
    value = head + nlris
    for cut in range(len(value)):
        events = ours(message(attributes + attr(0x80, 14, value[:cut])))
        if cut < len(head):
            assert outcome(events) == [(PEER, "malformed-update")], cut
        elif cut - len(head) in boundaries:
            assert events == whole[: boundaries[cut - len(head)]], cut
        else:
            assert outcome(events) == [(PEER, "malformed-nlri")], cut


def _check_sane(events: list[BgpEvent]) -> None:
    for e in events:
        assert isinstance(
            e, RouteAnnounced | RoutesAnnounced | RoutesWithdrawn | RouteRejected | EndOfRib
        ), e
        if isinstance(e, RouteRejected):
            assert e.reason in REASONS, e  # never undecodable-update: that is a bug of ours


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SAMPLE), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255))))
def test_changed_bytes_never_raise(update: bytes, changes: list[tuple[int, int]]) -> None:
    """Lengths that lie, flags that are odd, values out of range: a reason, never a raise."""
    data = bytearray(update)
    for where, value in changes:
        data[19 + where % (len(data) - 19)] = value
    _check_sane(ours(bytes(data)))
    _check_sane(decode_update(bytes(data[19:]), PEER, None))


@settings(max_examples=300, deadline=None)
@given(updates(), st.data())
def test_inserted_and_removed_bytes_never_raise(update: bytes, data: st.DataObject) -> None:
    body = bytearray(update[19:])
    where = data.draw(st.integers(0, len(body)))
    if data.draw(st.booleans()):
        body[where:where] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        del body[where : where + data.draw(st.integers(1, 8))]
    _check_sane(decode_update(bytes(body), PEER, OWN))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bodies_never_raise(body: bytes) -> None:
    _check_sane(decode_update(body, PEER, OWN))
    _check_sane(decode_update(b"\x00\x00" + len(body).to_bytes(2, "big") + body, PEER, OWN))


OURS_READ = {1, 5, 9, 10, 14, 15, 16, 22}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(0, 255).filter(lambda code: code not in OURS_READ),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(SAMPLE),
)
def test_attributes_we_do_not_read_change_nothing(
    extra: list[tuple[int, int, bytes]], update: bytes
) -> None:
    unknown = b"".join(attr(flags, code, value) for flags, code, value in extra)
    assert ours(attribute_first(update, unknown)) == ours(update)


@pytest.mark.parametrize(
    ("flags", "code", "value"),
    [
        (0xE0, 16, RT_100),  # partial: allowed on an optional transitive attribute
        (0xD0, 16, RT_100),  # extended length for a short value
        (0xCF, 16, RT_100),  # the unused low bits: ignored (RFC 4271 4.3)
        (0x50, 1, b"\x00"),
    ],
)
def test_harmless_flag_bits_change_nothing(flags: int, code: int, value: bytes) -> None:
    route = mp_reach(VTEP, mac_nlri(RD, MAC_A, 100))
    plain = message(BASE + communities(RT_100) + route)
    odd = message(BASE + attr(flags, code, value) + communities(RT_100) + route)
    assert ours(odd) == ours(plain) and isinstance(ours(plain)[0], RouteAnnounced)


@pytest.mark.parametrize(
    "bad",
    [
        *TREAT_AS_WITHDRAW,
        attr(0x80, 9, b"\xc0\x00\x02"),  # ORIGINATOR_ID of 3 bytes
        attr(0x40, 9, VTEP),  # ORIGINATOR_ID is optional
        attr(0x80, 10, b"\xc0\x00\x02\x01\x00"),  # CLUSTER_LIST of 5 bytes
        attr(0xC0, 22, b"\x00\x06\x00\x00"),  # PMSI shorter than its header
        attr(0x80, 22, b"\x00\x06\x00\x00\x64" + VTEP),  # PMSI is optional transitive
        attr(0x40, 1, b"\x07"),  # ORIGIN 7
        attr(0x40, 1, b"\x00\x00"),
    ],
)
def test_a_malformed_attribute_we_read_turns_announces_into_withdraws(bad: bytes) -> None:
    nlris = mac_nlri(RD, MAC_A, 100) + imet_nlri(RD, VTEP)
    update = attribute_first(
        message(BASE + communities(RT_100) + pmsi(100, VTEP) + mp_reach(VTEP, nlris)), bad
    )
    [counted, *withdrawn] = ours(update)
    assert outcome([counted]) == [(PEER, "malformed-attribute")]
    assert withdrawn == [  # one event for the UPDATE's withdraws
        RoutesWithdrawn(
            PEER,
            (
                MacKey("192.0.2.11:2", 0, "02:00:5e:00:00:01", None),
                ImetKey("192.0.2.11:2", 0, "192.0.2.11"),
            ),
        )
    ]


@pytest.mark.parametrize(
    "update",
    [
        message(BASE + mp_reach(VTEP, mac_nlri(RD, MAC_A, 100), flags=0xC0)),
        message(BASE + mp_unreach(mac_nlri(RD, MAC_A, 100), flags=0x40)),
        message(BASE + mp_unreach(b"") + mp_unreach(b"")),
        message(BASE + mp_reach(VTEP, b"") + mp_reach(VTEP, b"")),
        message(BASE + attr(0x80, 14, b"\x00\x19\x46\x04")),  # no room for the next hop
        message(BASE + attr(0x80, 15, b"\x00\x19")),
        message(BASE + b"\x40\x05"),  # attribute header cut
        message(BASE + b"\x50\x05\x00"),
    ],
)
def test_an_unframed_update_is_refused_whole(update: bytes) -> None:
    assert outcome(ours(update)) == [(PEER, "malformed-update")]


GOOD = mac_nlri(RD, bytes.fromhex("02005e000099"), 100)


@pytest.mark.parametrize(
    ("nlri", "reason"),
    [
        (GOOD[:24] + b"\x2f" + GOOD[25:], "bad-mac"),  # MAC length 47 bits
        (
            mac_nlri(RD, MAC_A, 100, VTEP)[:31] + b"\x21" + mac_nlri(RD, MAC_A, 100, VTEP)[32:],
            "bad-ip",
        ),
        (b"\x02\x22" + GOOD[2:] + b"\x00", "malformed-nlri"),  # 34 bytes, no IP
        (b"\x02\x1d" + GOOD[2:31], "malformed-nlri"),  # shorter than any type 2
        (mac_nlri(RD, bytes(6), 100), "zero-mac"),
        (mac_nlri(RD, b"\xff" * 6, 100), "multicast-mac"),
        (mac_nlri(RD, MAC_A, 0), "bad-label"),
        (imet_nlri(RD, VTEP)[:14] + b"\x18" + VTEP, "bad-ip"),  # 24-bit IP
        (b"\x03\x12" + imet_nlri(RD, VTEP)[2:] + b"\x00", "malformed-nlri"),
        (b"\x03\x0c" + bytes(12), "malformed-nlri"),
        (b"\x05\x22" + bytes(34), "unsupported-route-type"),
        (b"\x2a\x00", "unsupported-route-type"),
    ],
)
def test_a_bad_route_costs_that_route_only(nlri: bytes, reason: str) -> None:
    attributes = BASE + communities(RT_100) + pmsi(100, VTEP)
    [bad, good] = ours(message(attributes + mp_reach(VTEP, nlri + GOOD)))
    assert outcome([bad]) == [(PEER, reason)]
    assert isinstance(good, RouteAnnounced) and good.route.key.mac == "02:00:5e:00:00:99"
    withdrawn = ours(message(mp_unreach(nlri + GOOD)))
    if reason in ("bad-label",):  # a withdraw's label is not read: both go, as one event
        [both] = withdrawn
        assert isinstance(both, RoutesWithdrawn) and len(both.keys) == 2
    else:
        [bad, good] = withdrawn
        assert outcome([bad]) == [(PEER, reason)]
        assert isinstance(good, RoutesWithdrawn) and len(good.keys) == 1


def test_an_updates_routes_come_as_one_run_split_only_by_a_refused_one() -> None:
    """A reflector packs ~1,000 routes in an UPDATE: the core gets them as one event (one
    dispatch, not one each), in order, a refused route between two runs."""
    attributes = BASE + communities(RT_100) + pmsi(100, VTEP)
    nlris = [mac_nlri(RD, bytes.fromhex(f"02005e0000{i:02x}"), 100) for i in range(1, 5)]
    [run] = decode_message(message(attributes + mp_reach(VTEP, b"".join(nlris))), PEER, OWN)
    assert isinstance(run, RoutesAnnounced) and run.peer == PEER
    assert [r.key.mac for r in run.routes] == [f"02:00:5e:00:00:0{i}" for i in range(1, 5)]
    zero = mac_nlri(RD, bytes(6), 100)
    mixed = nlris[0] + imet_nlri(RD, VTEP) + zero + nlris[1] + nlris[2]
    events = decode_message(message(attributes + mp_reach(VTEP, mixed)), PEER, OWN)
    assert [type(e) for e in events] == [RoutesAnnounced, RouteRejected, RoutesAnnounced]
    first, _, second = events
    assert isinstance(first, RoutesAnnounced) and isinstance(second, RoutesAnnounced)
    assert [type(r) for r in first.routes] == [MacRoute, ImetRoute]
    assert [r.key.mac for r in second.routes] == ["02:00:5e:00:00:02", "02:00:5e:00:00:03"]


# ---------------------------------------------------------------- details of the decoder


@pytest.mark.parametrize(
    ("tunnel", "kind", "vni", "expected"),
    [
        (VTEP, 6, 100, (100, "192.0.2.11")),
        (ipaddress.IPv6Address("2001:db8::11").packed, 6, 100, (100, "2001:db8::11")),
        (VTEP, 6, 0, "bad-label"),
        (b"", 6, 100, "unsupported-pmsi"),  # RFC 6514: the endpoint's address
        (VTEP + VTEP, 6, 100, "unsupported-pmsi"),
        (VTEP, 3, 100, "unsupported-pmsi"),  # PIM-SSM tree
        (bytes([127, 0, 0, 1]), 6, 100, "martian-nexthop"),
        (None, 6, 100, "no-pmsi"),
    ],
)
def test_pmsi_tunnels(tunnel: bytes | None, kind: int, vni: int, expected: object) -> None:
    tunnel_attribute = b"" if tunnel is None else pmsi(vni, tunnel, kind)
    origin = bytes([192, 0, 2, 12])  # not the tunnel: the tunnel is where floods go
    update = message(
        BASE + communities(RT_100) + tunnel_attribute + mp_reach(VTEP, imet_nlri(RD, origin))
    )
    [event] = ours(update)
    if isinstance(expected, str):
        assert outcome([event]) == [(PEER, expected)]
    else:
        assert isinstance(event, RouteAnnounced) and isinstance(event.route, ImetRoute)
        assert (event.route.vni, event.route.vtep, event.route.key.origin) == (
            *expected,
            "192.0.2.12",
        )


def test_a_global_and_link_local_next_hop_points_at_the_global_address() -> None:
    global_, link_local = (ipaddress.IPv6Address(a).packed for a in ("2001:db8::11", "fe80::11"))
    update = message(BASE + communities(RT_100) + mp_reach(global_ + link_local, GOOD))
    [event] = ours(update)
    assert isinstance(event, RouteAnnounced) and event.route.vtep == "2001:db8::11"
    [event] = ours(message(BASE + communities(RT_100) + mp_reach(VTEP + VTEP, GOOD)))
    assert outcome([event]) == [(PEER, "martian-nexthop")]


def test_a_second_label_is_the_l3_vni_and_not_read() -> None:
    two = b"\x02\x24" + GOOD[2:] + (4001).to_bytes(3, "big")
    [event] = ours(message(BASE + communities(RT_100) + mp_reach(VTEP, two)))
    assert isinstance(event, RouteAnnounced) and event.route.vni == 100
    assert ours(message(BASE + communities(RT_100) + mp_reach(VTEP, two))) == exabgp_events(
        message(BASE + communities(RT_100) + mp_reach(VTEP, two))
    )


def test_end_of_rib_only_when_nothing_else_is_there() -> None:
    assert ours(end_of_rib()) == exabgp_events(end_of_rib()) == [EndOfRib(PEER)]
    assert ours(message(BASE + mp_unreach(b""))) == []
    ipv4_eor = b"\xff" * 16 + b"\x00\x17\x02" + bytes(4)
    assert ours(ipv4_eor) == exabgp_events(ipv4_eor) == []


def test_other_messages_and_families_say_nothing() -> None:
    keepalive = b"\xff" * 16 + b"\x00\x13\x04"
    assert ours(keepalive) == []
    ipv6_unicast = attr(0x80, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00\x40\x20\x01\x0d\xb8")
    assert ours(message(BASE + ipv6_unicast)) == []
    assert ours(message(BASE + attr(0x80, 15, b"\x00\x02\x01"))) == []


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=16, max_size=16))
@example(ipaddress.IPv6Address("::ffff:192.0.2.1").packed)
@example(ipaddress.IPv6Address("::192.0.2.1").packed)
@example(ipaddress.IPv6Address("2001:db8:0:1:0:0:0:1").packed)
def test_ipv6_text_is_pythons(packed: bytes) -> None:
    assert ipv6_text(packed) == str(ipaddress.IPv6Address(packed))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=50), st.integers(1, 4))
def test_rd_texts_are_the_rd_texts_wherever_the_rd_sits(rds: list[bytes], limit: int) -> None:
    table = RdTexts(limit)
    data = b"\xff" + b"".join(rds)
    for _ in range(2):  # a second pass reads what the first kept (or started again)
        for i, raw in enumerate(rds):
            assert table.text(data, 1 + 8 * i) == rd_text(raw)
        assert len(table) <= limit


def test_a_fabrics_rds_take_a_few_blocks_and_one_string_each() -> None:
    # 64 VTEPs x 1,000 VNIs, numbered by VNI as this agent does (FRR numbers from 1 up)
    data = b"".join(
        b"\x00\x01" + bytes([192, 0, 2, vtep]) + (10_000 + vni).to_bytes(2, "big")
        for vni in range(1000)
        for vtep in range(64)
    )
    table = RdTexts(1 << 12)
    first = [table.text(data, start) for start in range(0, len(data), 8)]
    assert first[0] == "192.0.2.0:10000" and first[-1] == "192.0.2.63:10999"
    assert len(table) <= 64 * 5  # 1,000 numbers span at most 5 blocks of 256 per VTEP
    again = [table.text(data, start) for start in range(0, len(data), 8)]
    assert all(a is b for a, b in zip(first, again, strict=True))


# ---------------------------------------------------------------- details of the encoder


OTHER = "192.0.2.31"  # another VTEP: decoding with our router id keeps its routes


def _macs(count: int, **fields: Any) -> list[AdvertChange]:
    rd = RouteDistinguisher(ipaddress.IPv4Address(OTHER), 100)
    base: dict[str, Any] = {
        "vni": 100,
        "ip": None,
        "vtep": OTHER,
        "rts": (RouteTarget(65000, 100),),
    }
    base.update(fields)
    return [
        AdvertChange(
            MacAdvert(
                rd=rd, mac=f"02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01", **base
            )
        )
        for i in range(count)
    ]


def test_frr_sized_updates_fit_an_extended_message() -> None:
    changes = _macs(1700)
    [big] = encode_changes(changes, 65535).messages
    assert len(big) <= 65535
    small = encode_changes(changes, 4096).messages
    assert all(len(m) <= 4096 for m in small)
    assert all(len(m) + 35 > 4096 for m in small[:-1])  # each full: one more NLRI would not fit
    for messages in ([big], small):
        events = [e for m in messages for e in ours(m)]
        assert [e.route.key.mac for e in events if isinstance(e, RouteAnnounced)] == [
            c.advert.mac for c in changes if isinstance(c.advert, MacAdvert)
        ]
    assert len(exabgp_events(big)) == 1700


def test_type3_routes_group_per_vni() -> None:
    changes = [
        AdvertChange(
            ImetAdvert(
                RouteDistinguisher(ipaddress.IPv4Address(OTHER), vni),
                vni,
                OTHER,
                (RouteTarget(65000, 7),),
            )
        )
        for vni in range(1, 6)
    ]
    encoded = encode_changes(changes + _macs(3))
    assert len(encoded.messages) == 6  # a PMSI (with its VNI) per type 3, one group of MACs
    assert [len(ours(m)) for m in encoded.messages] == [1, 1, 1, 1, 1, 3]


def test_the_last_change_of_a_route_wins() -> None:
    [first] = _macs(1)
    withdraw = AdvertChange(first.advert, withdraw=True)
    [only] = encode_changes([first, withdraw]).messages
    assert [type(e) for e in ours(only)] == [RoutesWithdrawn]
    [only] = encode_changes([withdraw, first]).messages
    assert [type(e) for e in ours(only)] == [RouteAnnounced]
    [moved] = _macs(1, seq=2)
    [only] = encode_changes([first, moved]).messages
    [event] = ours(only)
    assert isinstance(event, RouteAnnounced) and isinstance(event.route, MacRoute)
    assert event.route.seq == 2


def test_withdraws_go_first() -> None:
    changes = _macs(3)
    messages = encode_changes([changes[0], AdvertChange(changes[1].advert, withdraw=True)]).messages
    assert [type(e) for m in messages for e in ours(m)] == [RoutesWithdrawn, RouteAnnounced]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"mac": "01:00:5e:00:00:01"}, "not a host address"),
        ({"mac": "00:00:00:00:00:00"}, "not a host address"),
        ({"mac": "02-00-5e-00-00-01"}, "six hex octets"),
        ({"mac": "02:00:5e:00:00:zz"}, "six hex octets"),
        ({"vni": 0}, "VNI"),
        ({"vni": 1 << 24}, "VNI"),
        ({"vtep": "224.0.0.5"}, "unicast"),
        ({"vtep": "not-an-address"}, "not an IP address"),
        ({"ip": "ff02::1"}, "unicast"),
        ({"rts": ()}, "route target"),
        ({"seq": 1 << 32}, "sequence"),
    ],
)
def test_what_cannot_be_encoded_is_refused_not_raised(fields: dict[str, Any], why: str) -> None:
    rd = RouteDistinguisher(ipaddress.IPv4Address(OWN), 100)
    values: dict[str, Any] = {
        "rd": rd, "vni": 100, "mac": "02:00:5e:00:00:01", "ip": None, "vtep": OWN,
        "rts": (RouteTarget(65000, 100),),
    }  # fmt: skip
    values.update(fields)
    bad = AdvertChange(MacAdvert(**values))
    [good] = _macs(1)
    encoded = encode_changes([bad, good])
    assert [(c, why in reason) for c, reason in encoded.refused] == [(bad, True)]
    assert [type(e) for m in encoded.messages for e in ours(m)] == [RouteAnnounced]


def test_attributes_too_large_for_a_message_are_refused() -> None:
    many = tuple(RouteTarget(65000, n) for n in range(600))  # 4,800 bytes of communities
    changes = _macs(2, rts=many)
    refused = encode_changes(changes).refused
    assert [c for c, _ in refused] == changes and "no room" in refused[0][1]
    [message_] = encode_changes(changes, 65535).messages
    assert len(ours(message_)) == 2


def test_prepare_many_is_prepare_for_each_even_when_runs_share_rd_and_attributes() -> None:
    """Its per-run reuse must never carry one change's check over to the next: True is
    not a sequence number although it equals 1, and a bad VTEP after a good one is bad."""
    good = _macs(4, seq=1)
    shared = good[0].advert
    odd = [
        AdvertChange(shared._replace(mac="02:00:5e:00:09:01", seq=True)),
        AdvertChange(shared._replace(mac="02:00:5e:00:09:02", vtep="224.0.0.5")),
        AdvertChange(shared._replace(mac="02:00:5e:00:09:03", seq=2, sticky=True)),
        AdvertChange(shared, withdraw=True),
        AdvertChange(ImetAdvert(shared.rd, 100, OTHER, shared.rts)),
        AdvertChange(ImetAdvert(shared.rd, 1 << 24, OTHER, shared.rts)),
        # type 2s packed from their RD and VNI's bytes: another VNI of the same RD object
        # has its own label, a VNI out of range or a group MAC is refused all the same
        AdvertChange(shared._replace(mac="02:00:5e:00:09:04", vni=101)),
        AdvertChange(shared._replace(mac="02:00:5e:00:09:05", ip="198.51.100.7")),
        AdvertChange(shared._replace(mac="02:00:5e:00:09:06", ip="2001:db8::6", vni=101)),
        AdvertChange(shared._replace(mac="02:00:5e:00:09:07", vni=1 << 24)),
        AdvertChange(shared._replace(mac="01:00:5e:00:09:08")),
    ]
    changes = [*good, *odd, good[1]]
    prepared, refused = prepare_many(changes)
    one_by_one = []
    for change in changes:
        try:
            one_by_one.append(prepare(change))
        except ValueError:
            continue
    assert prepared == one_by_one
    assert [c for c, _ in refused] == [odd[0], odd[1], odd[5], odd[9], odd[10]]
    assert encode_prepared([item for _, item in prepared[:4]]) == encode_changes(good)


_ODD_MACS = st.one_of(
    st.sampled_from(["02:00:5e:00:00:01", "02:00:5E:00:00:02", "01:00:5e:00:00:01",
                     "00:00:00:00:00:00", "02-00-5e-00-00-01", "02:00:5e:00:00", "",
                     "zz:zz:zz:zz:zz:zz"]),
    st.integers(), st.none(), st.lists(st.integers(), max_size=2),
)  # fmt: skip
_ODD_IPS = st.one_of(
    st.none(),
    st.sampled_from(["198.51.100.7", "2001:db8::7", "224.0.0.5", "ff02::1", "0.0.0.0",
                     "not an address", "198.51.100.7/32", "::ffff:198.51.100.7"]),
    st.integers(), st.lists(st.integers(), max_size=2),
)  # fmt: skip
_ODD_VNIS = st.one_of(st.sampled_from([1, 100, MAX_VNI, 0, MAX_VNI + 1, -1, True]),
                      st.text(max_size=3), st.none())  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_ODD_VNIS, st.lists(st.tuples(_ODD_MACS, _ODD_IPS), max_size=8))
def test_a_withdraws_route_from_its_mac_and_ip_is_route_of_its_change(
    vni: Any, pairs: list[tuple[Any, Any]]
) -> None:
    """The launcher keys a batch's withdraws without making adverts of them: each route
    (or refusal, with its reason) must be what route_of gives for the whole change."""
    rd = RouteDistinguisher(ipaddress.IPv4Address(OWN), 7)
    routes, refused = mac_routes(rd, vni, [value for pair in pairs for value in pair])
    expected_routes, expected_refused = [], []
    for n, (mac, ip) in enumerate(pairs):
        change = AdvertChange(MacAdvert(rd, vni, mac, ip, OWN, (), 0, False), True)
        try:
            expected_routes.append(route_of(change))
        except (ValueError, TypeError) as exc:
            expected_refused.append((n, str(exc)))
    assert (routes, refused) == (expected_routes, expected_refused)


def test_message_size_is_bounded_by_the_rfcs() -> None:
    for size in (4095, 65536):
        with pytest.raises(ValueError, match="max_size"):
            encode_changes([], size)
    assert encode_changes([]).messages == []


def test_the_codec_imports_with_exabgp_blocked() -> None:
    """The codec is ours alone: it must work in a process that never imports ExaBGP."""
    import subprocess
    import sys

    modules = [f"evpn_agent.speaker.wire_{name}" for name in ("format", "attributes")]
    modules += ["evpn_agent.speaker.wire_decode", "evpn_agent.speaker.wire_encode"]
    code = f"""
import importlib, importlib.abc, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "exabgp":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocker())
for module in {modules!r}:
    importlib.import_module(module)
print(sorted(m for m in sys.modules if m.startswith("exabgp")))
"""
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_update_with_ipv4_routes_is_no_evpn_end_of_rib() -> None:
    ipv4_withdrawn = bytes([24, 198, 51, 100])
    update = message(mp_unreach(b""), withdrawn=ipv4_withdrawn)
    assert ours(update) == exabgp_events(update) == []
