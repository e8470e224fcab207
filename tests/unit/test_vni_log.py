"""What the log says about VNIs: one line for a start of 1,000 VNIs, a line per VNI that an
operator changes (not one per link message of its devices)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from evpn_agent.config import parse
from evpn_agent.core.engine import Engine
from evpn_agent.model import BridgeDevice, KernelSnapshot, LinkUpdated, VxlanDevice
from evpn_agent.model.net import vni_ranges

ME = "192.0.2.21"


def devices(i: int, *, master: bool = True, up: bool = True) -> tuple[Any, Any]:
    bridge = BridgeDevice(10 + 2 * i, f"br{i}", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                          False, True)  # fmt: skip
    vxlan = VxlanDevice(11 + 2 * i, f"vx{i}", 100 + i, ME, bridge.ifindex if master else None,
                        False, up)  # fmt: skip
    return bridge, vxlan


def start(vnis: range) -> Engine:
    links = [d for i in vnis for d in devices(i)]
    state = Engine(parse("local-as: 65000\nroute-reflectors: [192.0.2.1]\n"), router_id=ME,
                   vtep_ip=ME, now=0.0)  # fmt: skip
    state.load_snapshot(KernelSnapshot(tuple(links), (), ()))
    state.take_work()
    return state


def info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
            and "VNI" in r.getMessage()]  # fmt: skip


def test_ranges() -> None:
    assert vni_ranges([]) == ""
    assert vni_ranges([7, 3, 1, 2, 3]) == "1-3, 7"
    assert vni_ranges(range(100, 1100)) == "100-1099"
    assert vni_ranges([5, 9, 10]) == "5, 9-10"


def test_a_start_of_1000_vnis_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    start(range(1000))
    assert info(caplog) == ["1000 VNIs added: 100-1099"]


def test_a_few_vnis_are_logged_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    start(range(2))
    assert sorted(info(caplog)) == ["VNI 100 on vx0 in bridge br0", "VNI 101 on vx1 in bridge br1"]


def test_adding_one_vni_logs_it_once_however_many_link_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = start(range(3))
    caplog.set_level(logging.INFO)
    caplog.clear()
    bridge, vxlan = devices(3, up=False)
    # as the kernel reports an operator's three commands: created, enslaved, set up
    state.on_kernel([LinkUpdated(bridge), LinkUpdated(devices(3, master=False, up=False)[1])])
    state.on_kernel([LinkUpdated(vxlan)])
    state.on_kernel([LinkUpdated(devices(3)[1])])
    assert info(caplog) == ["VNI 103 on vx3 in bridge br3 (down)", "VNI 103: vx3 is up"]
