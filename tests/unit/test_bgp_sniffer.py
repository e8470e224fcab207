"""The scale bench's BGP sniffer: which segments hold an EVPN withdraw (a VNI removed)."""

from __future__ import annotations

import ipaddress

from bench.probes.bgp_sniffer import evpn_withdraw
from evpn_agent.model import AdvertChange, ImetAdvert, RouteDistinguisher, RouteTarget
from evpn_agent.speaker.wire_encode import encode_changes

KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"
ADVERT = ImetAdvert(
    RouteDistinguisher(ipaddress.IPv4Address("192.0.2.11"), 5),
    100,
    "192.0.2.11",
    (RouteTarget(65000, 100),),
)


def _message(withdraw: bool) -> bytes:
    [message] = encode_changes([AdvertChange(ADVERT, withdraw)]).messages
    return bytes(message)


def test_a_type_3_withdraw_is_one() -> None:
    assert evpn_withdraw(_message(withdraw=True))
    assert evpn_withdraw(KEEPALIVE + _message(withdraw=True))  # behind another message


def test_an_announce_an_end_of_rib_and_keepalives_are_not() -> None:
    eor = b"\xff" * 16 + (19 + 10).to_bytes(2, "big") + b"\x02"
    eor += bytes.fromhex("0000 0006 800f03 001946")
    assert not evpn_withdraw(_message(withdraw=False))
    assert not evpn_withdraw(eor)
    assert not evpn_withdraw(KEEPALIVE * 3)
    assert not evpn_withdraw(_message(withdraw=True)[:24])  # cut before its attributes
