"""Indexes that keep one change's cost independent of the table sizes (issue 10: 1,000
VNIs). Each test makes the full scan impossible, so a regression fails, not only slows."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from evpn_agent.config import parse
from evpn_agent.core.adverts import AdvertTable
from evpn_agent.core.engine import Engine
from evpn_agent.core.local import LocalView
from evpn_agent.model import (
    AdvertKey,
    BridgeDevice,
    ImetAdvert,
    KernelSnapshot,
    LinkUpdated,
    OtherLink,
    RouteDistinguisher,
    RouteTarget,
    VxlanDevice,
)
from evpn_agent.model.keys import DeviceIp

ME = "192.0.2.21"


class NoScan(dict[Any, Any]):
    """A dict that may be looked up but not walked."""

    def items(self) -> Any:
        raise AssertionError("walked the whole table")

    def __iter__(self) -> Any:
        raise AssertionError("walked the whole table")


def engine(vnis: int) -> Engine:
    links: list[Any] = []
    for i in range(vnis):
        links.append(BridgeDevice(10 + 2 * i, f"br{i}", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                                  False, True))  # fmt: skip
        links.append(VxlanDevice(11 + 2 * i, f"vx{i}", 100 + i, ME, 10 + 2 * i, False, True))
    state = Engine(parse("local-as: 65000\nroute-reflectors: [192.0.2.1]\n"), router_id=ME,
                   vtep_ip=ME, now=0.0)  # fmt: skip
    state.load_snapshot(KernelSnapshot(tuple(links), (), ()))
    state.take_work()
    return state


def test_the_ips_of_a_mac_come_from_an_index() -> None:
    view = LocalView()
    svi, other = 10, 12
    view.set_neigh(DeviceIp(svi, "198.51.100.1"), "02:00:5e:00:00:01")
    view.set_neigh(DeviceIp(svi, "198.51.100.2"), "02:00:5e:00:00:01")
    view.set_neigh(DeviceIp(other, "198.51.100.3"), "02:00:5e:00:00:01")
    assert view.set_neigh(DeviceIp(svi, "198.51.100.2"), "02:00:5e:00:00:02") == (
        "02:00:5e:00:00:01"
    )  # the IP moved to another MAC
    lv = engine(1).vnis[100]
    lv = dataclasses.replace(lv, svi_ifindex=svi)
    view.neigh = NoScan(view.neigh)
    assert view.ips_of(lv, "02:00:5e:00:00:01") == ["198.51.100.1"]
    assert view.ips_of(lv, "02:00:5e:00:00:02") == ["198.51.100.2"]
    assert view.pop_neigh(DeviceIp(svi, "198.51.100.1")) == "02:00:5e:00:00:01"
    assert view.ips_of(lv, "02:00:5e:00:00:01") == []
    view.clear_neigh()
    assert view.ips_of(lv, "02:00:5e:00:00:02") == []


def test_the_adverts_of_a_vni_come_from_an_index() -> None:
    table = AdvertTable()
    rd, rt = RouteDistinguisher(65000, 1), RouteTarget(65000, 100)
    for vni in (100, 101):
        table.set(AdvertKey(vni, "", None), ImetAdvert(rd, vni, ME, (rt,)))
    table.sent = NoScan(table.sent)
    assert table.keys_of_vni(100) == [AdvertKey(100, "", None)]
    table.set(AdvertKey(100, "", None), None)
    assert table.keys_of_vni(100) == []
    assert table.keys_of_vni(101) == [AdvertKey(101, "", None)]


def test_a_link_event_that_changes_nothing_does_not_rederive_the_vnis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = engine(50)
    calls: list[int] = []
    relink = state.view.relink

    def counted() -> Any:
        calls.append(1)
        return relink()

    monkeypatch.setattr(state.view, "relink", counted)
    same = state.view.links[11]
    assert state.on_kernel([LinkUpdated(same)])
    assert calls == []
    port = OtherLink(999, "h-port", 10, "veth", up=True)
    assert state.on_kernel([LinkUpdated(port)])  # a new port: looked at
    assert calls == [1]
    assert state.on_kernel([LinkUpdated(port)])
    assert calls == [1]
    down = VxlanDevice(11, "vx0", 100, ME, 10, False, False)
    assert state.on_kernel([LinkUpdated(down)])
    assert calls == [1, 1]
    assert not state.vnis[100].up


def test_show_peers_counts_routes_without_walking_the_paths() -> None:
    from evpn_agent.control import views
    from evpn_agent.core.rib import Dirty
    from evpn_agent.model import MacKey, MacRoute

    state = engine(1)
    dirty = Dirty()
    for i in range(3):
        route = MacRoute(MacKey("192.0.2.9:100", 0, f"02:00:00:00:00:0{i}", None), 100,
                         "192.0.2.9", (RouteTarget(65000, 100),), 0, False)  # fmt: skip
        state.rib.announce("192.0.2.1", route, dirty)
    state.rib.paths = NoScan(state.rib.paths)
    [row] = views.peers(state, state.cfg, now=1.0)
    assert row["peer"] == "192.0.2.1" and row["routesReceived"] == 3
