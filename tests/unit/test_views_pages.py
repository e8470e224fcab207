"""``show routes`` by pages: a table of 100,000 routes need not travel in one answer."""

from __future__ import annotations

import pytest

from evpn_agent.control import answers
from evpn_agent.latency import Latency
from evpn_agent.model import (
    ImetKey,
    ImetRoute,
    MacKey,
    MacRoute,
    RouteAnnounced,
    RouteTarget,
    SessionUp,
)
from tests.unit.test_core_indexes import engine

RR = "192.0.2.1"


def loaded() -> object:
    state = engine(3)
    state.on_bgp([SessionUp(RR)], 1.0)
    events = []
    for i, vni in enumerate((100, 101, 102)):
        rts = (RouteTarget(65000, vni),)
        for host in range(1, 5):
            vtep = f"198.51.100.{host}"
            events.append(RouteAnnounced(RR, ImetRoute(ImetKey(f"{vtep}:{i}", 0, vtep), vni,
                                                       vtep, rts)))  # fmt: skip
            mac = f"02:00:5e:00:{i:02x}:{host:02x}"
            events.append(RouteAnnounced(RR, MacRoute(MacKey(f"{vtep}:{i}", 0, mac, None), vni,
                                                      vtep, rts)))  # fmt: skip
    state.on_bgp(events, 2.0)
    state.take_work()
    return state


def show(state: object, **request: object) -> dict[str, object]:
    latency = {"route-to-kernel": Latency(), "local-mac-to-bgp": Latency()}
    answer = answers.read(state, {"command": "show routes", **request}, 2.0, latency)  # type: ignore[arg-type]
    assert isinstance(answer, dict)
    return answer


def test_pages_cover_the_whole_table_in_order() -> None:
    state = loaded()
    whole = show(state)
    assert len(whole["received"]) == 24  # type: ignore[arg-type]
    assert "totalReceived" not in whole  # without a limit: the answer as before
    pages = []
    for offset in range(0, 30, 10):
        page = show(state, limit=10, offset=offset)
        assert page["totalReceived"] == 24
        assert page["totalAdvertised"] == len(whole["advertised"])  # type: ignore[arg-type]
        pages += page["received"]  # type: ignore[operator]
    assert pages == whole["received"]


def test_a_page_of_one_vni() -> None:
    page = show(loaded(), vni=101, limit=3)
    assert page["totalReceived"] == 8
    assert [row["vni"] for row in page["received"]] == [101, 101, 101]  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [{"limit": "10"}, {"limit": 5, "offset": "x"}])
def test_limits_are_numbers(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        show(loaded(), **bad)
