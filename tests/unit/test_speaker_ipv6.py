"""The launcher's IPv6-underlay teaching of ExaBGP, with ExaBGP's own classes, no network.

Round trip: our command -> ExaBGP's UPDATE bytes -> ExaBGP's decoder -> its JSON -> the
agent's parser. IPv4 must encode and decode exactly as before the teaching.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from evpn_agent.model import ImetRoute, MacRoute, RouteAnnounced
from evpn_agent.speaker import grammar, launcher
from evpn_agent.speaker.decode import parse_line

V6 = "2001:db8::21"
V4 = "192.0.2.21"
TYPE3_V6 = f"announce evpn multicast rd 192.0.2.21:1 ip {V6} label 100 next-hop {V6} rt 65000:100"
TYPE3_V4 = f"announce evpn multicast rd 192.0.2.21:1 ip {V4} label 100 next-hop {V4} rt 65000:100"
MAC = "02:00:5e:00:01:01"
# flags 0, type 6 (ingress replication), 3-byte raw VNI 100, then the tunnel identifier
PMSI_V6 = bytes.fromhex("0006000064") + bytes.fromhex("20010db8000000000000000000000021")
PMSI_V4 = bytes.fromhex("0006000064c0000215")


def _type2(ip: str, vtep: str = V6) -> str:
    return (
        f"announce evpn mac rd 192.0.2.21:1 mac {MAC} ip {ip} label 100 next-hop {vtep}"
        " rt 65000:100"
    )


@pytest.fixture(autouse=True)
def _exabgp_logger() -> None:
    # ExaBGP's decoder logs through a logger its main() sets up
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())


@pytest.fixture
def untaught() -> Iterator[None]:
    """ExaBGP as released, whatever an earlier test taught it; restored afterwards."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI, PMSIIngressReplication
    from exabgp.protocol.family import AFI, SAFI, Family

    key = (AFI.l2vpn, SAFI.evpn)
    size, klass = Family.size[key], PMSI._pmsi_known[6]
    Family.size[key], PMSI._pmsi_known[6] = ((4,), 0), PMSIIngressReplication
    yield
    Family.size[key], PMSI._pmsi_known[6] = size, klass


@pytest.fixture
def taught(untaught: None) -> None:
    launcher.teach_ipv6_underlay()


def _negotiated() -> Any:
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI

    negotiated = Negotiated(Neighbor())
    negotiated.families = [(AFI.l2vpn, SAFI.evpn)]
    negotiated.asn4 = True
    return negotiated


def _wire(line: str) -> bytes:
    """The UPDATE message ExaBGP sends for one of our commands (header included)."""
    from exabgp.bgp.message.update import Update

    change = launcher.build_change(grammar.parse(line))
    [message] = list(Update([change.nlri], change.attributes).messages(_negotiated()))
    return bytes(message)


def _decode(message: bytes) -> Any:
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update

    return Update.unpack_message(message[19:], Direction.IN, _negotiated())


def _json(update: Any) -> str:
    """The line ExaBGP's JSON encoder writes to the agent core for ``update``."""
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.routerid import RouterID
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.ip import IP
    from exabgp.reactor.api.response.json import JSON
    from exabgp.version import json as json_version

    neighbor = Neighbor()
    neighbor["peer-address"] = IP.create("2001:db8::1")
    neighbor["local-address"] = IP.create("2001:db8::22")
    neighbor["local-as"] = neighbor["peer-as"] = ASN(65000)
    neighbor["router-id"] = RouterID("192.0.2.22")
    line: str = JSON(json_version).update(neighbor, "receive", update, _negotiated(), b"", b"")
    return line


def _pmsi(value: bytes) -> Any:
    from exabgp.bgp.message.update.attribute.pmsi import PMSI

    return PMSI.unpack(value, None, None)


# ---------------------------------------------------------------- sending


def test_ipv6_type3_on_the_wire() -> None:
    message = _wire(TYPE3_V6).hex()
    v6 = "20010db8000000000000000000000021"
    # MP_REACH_NLRI: AFI 25 SAFI 70, next hop length 16, the VTEP, reserved 0
    assert f"00194610{v6}00" in message
    # type 3 NLRI: length 29, RD, ethernet tag 0, IP length 128, the VTEP
    assert "031d" + "0001c00002150001" + "00000000" + "80" + v6 in message
    # PMSI: optional transitive, type 22, length 21
    assert "c01615" + PMSI_V6.hex() in message


def test_ipv6_type2_next_hop_is_16_bytes() -> None:
    message = _wire(_type2("198.51.100.21")).hex()
    assert "0019461020010db8000000000000000000000021" + "00" in message


def test_ipv4_encoding_is_unchanged_by_the_teaching(untaught: None) -> None:
    before = [_wire(line) for line in (TYPE3_V4, _type2("198.51.100.21", V4))]
    launcher.teach_ipv6_underlay()
    assert [_wire(line) for line in (TYPE3_V4, _type2("198.51.100.21", V4))] == before
    assert bytes.fromhex("c01609") + PMSI_V4 in before[0]
    assert bytes.fromhex("00194604" + "c0000215" + "00") in before[0]


# ---------------------------------------------------------------- what ExaBGP 5.0.15 lacks


def test_untaught_exabgp_ends_the_session_on_an_ipv6_next_hop(untaught: None) -> None:
    from exabgp.bgp.message.notification import Notify

    with pytest.raises(Notify, match="next-hop length 16 expected 4"):
        _decode(_wire(_type2("198.51.100.21")))


def test_untaught_exabgp_misreads_an_ipv6_pmsi(untaught: None) -> None:
    pmsi = _pmsi(PMSI_V6)
    # the generic form: address in hex and the VNI (raw label) gone
    assert repr(pmsi) == "pmsi:ingressreplication:0:6:0x20010DB8000000000000000000000021"


# ---------------------------------------------------------------- receiving


def test_ipv6_pmsi_round_trip(taught: None) -> None:
    from exabgp.bgp.message.update.attribute.pmsi import PMSIIngressReplication

    pmsi = _pmsi(PMSI_V6)
    assert type(pmsi) is PMSIIngressReplication
    assert (pmsi.ip, pmsi.label, pmsi.raw_label, pmsi.flags) == (V6, 6, 100, 0)
    assert repr(pmsi) == f"pmsi:ingressreplication:0:6(100):{V6}"
    assert pmsi.pack(None) == bytes.fromhex("c01615") + PMSI_V6


@pytest.mark.parametrize(
    "value",
    [
        PMSI_V4,
        bytes.fromhex("0006ffffffc0000215"),  # VNI 16777215
        bytes.fromhex("8006001170c6336415"),  # flags set, VNI 4464, other address
        bytes.fromhex("0006000064c0000215c0000216"),  # 8-byte tunnel: generic form
        bytes.fromhex("0003000064c0000215c0000216"),  # other tunnel type
    ],
)
def test_other_pmsi_decode_exactly_as_before(untaught: None, value: bytes) -> None:
    def seen() -> tuple[Any, ...]:
        pmsi = _pmsi(value)
        return (type(pmsi), repr(pmsi), pmsi.pack(None), vars(pmsi))

    before = seen()
    launcher.teach_ipv6_underlay()
    assert seen() == before


def test_teaching_twice_is_harmless(taught: None) -> None:
    launcher.teach_ipv6_underlay()
    assert repr(_pmsi(PMSI_V6)) == f"pmsi:ingressreplication:0:6(100):{V6}"


def test_agent_reads_what_an_ipv6_vtep_sends(taught: None) -> None:
    [type3] = parse_line(_json(_decode(_wire(TYPE3_V6))), "192.0.2.22")
    assert isinstance(type3, RouteAnnounced) and isinstance(type3.route, ImetRoute)
    assert (type3.route.vni, type3.route.vtep, type3.route.key.origin) == (100, V6, V6)
    for tenant in ("198.51.100.21", "2001:db8:100::21"):
        [type2] = parse_line(_json(_decode(_wire(_type2(tenant)))), "192.0.2.22")
        assert isinstance(type2, RouteAnnounced) and isinstance(type2.route, MacRoute)
        assert (type2.route.vtep, type2.route.key.ip, type2.route.vni) == (V6, tenant, 100)


def test_main_teaches_before_exabgp_runs(untaught: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import exabgp.application.main
    from exabgp.protocol.family import AFI, SAFI, Family

    seen: list[Any] = []

    def exabgp_main() -> None:
        seen.append(Family.size[(AFI.l2vpn, SAFI.evpn)])

    monkeypatch.setattr(exabgp.application.main, "main", exabgp_main)
    monkeypatch.setattr(launcher, "_configure_logging", lambda: None)  # keeps caplog working
    monkeypatch.setattr("os.environ", {})
    monkeypatch.setattr("sys.argv", ["launcher"])
    assert launcher.main(["/nonexistent.conf"]) == 0
    assert seen == [((4, 16), 0)]
