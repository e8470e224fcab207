import ipaddress

import pytest

from evpn_agent.core.targets import Importer, assign_rd_indexes, default_export_rt
from evpn_agent.model import RouteTarget
from evpn_agent.speaker.decode import parse_line

parse_route_target = RouteTarget.parse


def test_default_export_rt_is_frr_auto_rt() -> None:
    assert str(default_export_rt(65000, 100)) == "65000:100"
    # FRR uses the low 16 bits of a 4-byte AS.
    assert str(default_export_rt(4200000001, 10100)) == f"{4200000001 & 0xFFFF}:10100"


def test_parse_route_target_forms() -> None:
    assert parse_route_target("65000:100") == RouteTarget(65000, 100)
    assert parse_route_target("192.0.2.1:7") == RouteTarget(ipaddress.IPv4Address("192.0.2.1"), 7)
    for bad in ("65000", "x:1", "192.0.2.1:70000", "4200000000:70000", ":5"):
        with pytest.raises(ValueError):
            parse_route_target(bad)


def test_import_by_vni_part_like_frr() -> None:
    imp = Importer([100, 200], {})
    assert imp.vni_for([RouteTarget(65001, 100)]) == 100
    assert imp.vni_for([RouteTarget(1, 300)]) is None


def test_import_override_is_exact() -> None:
    imp = Importer([100, 200], {100: [RouteTarget(65000, 5100)]})
    assert imp.vni_for([RouteTarget(65000, 5100)]) == 100
    assert imp.vni_for([RouteTarget(65000, 100)]) is None  # auto import replaced
    assert imp.vni_for([RouteTarget(65000, 200)]) == 200


def test_received_rts_skip_other_communities() -> None:
    line = (
        '{"type": "update", "neighbor": {"address": {"peer": "192.0.2.1"}, "message": '
        '{"update": {"attribute": {"extended-community": [{"string": "target:65000:100"}, '
        '{"string": "encap:VXLAN"}, {"string": "mac-mobility:1"}, {"string": "target:bad"}], '
        '"pmsi": "pmsi:ingressreplication:0:6(100):192.0.2.11"}, '
        '"announce": {"l2vpn evpn": {"192.0.2.11": [{"code": 3, "rd": "192.0.2.11:1", '
        '"ethernet-tag": 0, "ip": "192.0.2.11"}]}}}}}}'
    )
    (event,) = parse_line(line)
    assert event.route.rts == (RouteTarget(65000, 100),)  # type: ignore[union-attr]


def test_rd_index_small_vnis_are_themselves() -> None:
    assert assign_rd_indexes([100, 200], {}) == {100: 100, 200: 200}


def test_rd_index_large_vnis_are_stable_and_unique() -> None:
    first = assign_rd_indexes([100, 70000, 80000], {})
    assert first[100] == 100
    assert len({first[70000], first[80000], 100}) == 3
    assert all(0 < first[v] <= 0xFFFF for v in first)
    again = assign_rd_indexes([80000, 100], first)
    assert again[80000] == first[80000]
    # A new large VNI never takes an index remembered for another VNI.
    later = assign_rd_indexes([90000], first)
    assert later[90000] not in (first[70000], first[80000])
