"""A kernel write that is refused is retried on its own, without waiting for a reconcile.

A bridge whose MTU is below IPv6's minimum has no IPv6: the kernel refuses IPv6
neighbours on it ("IPv6 is disabled on this device"). Once the MTU is raised, the agent's
retry installs the neighbour; the periodic reconcile is off, so nothing else would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.fabric import AgentProcess, Box, Fabric, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]

VNI = 100
REMOTE_MAC = "02:00:5e:00:31:01"
IP4, IP6 = "198.51.100.31", "2001:db8:100::31"


@dataclass
class Setup:
    fab: Fabric
    a1: Box
    agent: AgentProcess


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    skip_unless_supported()
    with Fabric("evkr") as fab:
        rr = fab.add_route_reflector("rr", 1)
        a1 = fab.add_agent_vtep("a1", 21)
        a1.add_vni(VNI)
        a1.netns.ip("link", "set", f"br{VNI}", "mtu", "1200")  # below 1280: no IPv6 here
        agent = fab.start_agent(a1, rrs=[rr], settings={"reconcile-interval": 0})
        fab.wait_established(rr, a1.address)
        ps_box = fab.add_box("ps", 31)
        vtep = ps_box.address
        fab.start_peer_script(
            ps_box,
            peers=[rr],
            on_up=[
                f"announce evpn mac rd {vtep}:{VNI} mac {REMOTE_MAC} ip {ip} label {VNI} "
                f"next-hop {vtep} rt 65000:{VNI}"
                for ip in (IP4, IP6)
            ],
        )
        yield Setup(fab, a1, agent)


def _neighbours(box: Box) -> dict[str, str]:
    rows = json.loads(box.netns.ip("-j", "neigh", "show", "dev", f"br{VNI}"))
    return {row["dst"]: row.get("lladdr", "") for row in rows}


def _counters(agent: AgentProcess) -> dict[str, int]:
    counters: dict[str, int] = json.loads(agent.cli("show", "counters", "--json"))["counters"]
    return counters


def test_refused_neighbour_is_installed_once_the_kernel_accepts_it(setup: Setup) -> None:
    wait_until(lambda: IP4 in _neighbours(setup.a1), 20, "the IPv4 binding installed")
    wait_until(
        lambda: _counters(setup.agent).get("kernel-failures", 0) >= 1,
        10,
        "the kernel refused the IPv6 binding",
    )
    # After the sweep nothing plans the binding again but the retry: the sweep also
    # re-plans every entry, so wait for it to have happened (and failed) first.
    wait_until(
        lambda: json.loads(setup.agent.cli("reconcile", "--dry-run", "--json"))["sweeping"],
        20,
        "the stale-entry sweep to have run",
    )
    assert IP6 not in _neighbours(setup.a1)

    setup.a1.netns.ip("link", "set", f"br{VNI}", "mtu", "1500")  # IPv6 comes back
    # Retries back off from 1 s, doubling: well within this deadline.
    wait_until(lambda: IP6 in _neighbours(setup.a1), 40, "the IPv6 binding installed by a retry")
    assert _neighbours(setup.a1)[IP6] == REMOTE_MAC
    assert _counters(setup.agent).get("kernel-retries", 0) >= 1
