"""Packed adverts end to end: 2,000 local MACs appearing at once on an agent VTEP reach an
FRR VTEP's kernel through an FRR route reflector in few UPDATEs, survive the reflector's
route refresh (resent packed between BoRR and EoRR), and all go again.

The reflector's message counters for the agent's session show the packing: without it,
ExaBGP sent one UPDATE per EVPN route (2,000 each way).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from lab.fabric import AgentProcess, Box, Fabric, Host, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]

COUNT = 2_000
VNI = 100
# far below one per route: a 4096-byte UPDATE holds ~100 type-2 NLRIs
MOST_UPDATES = COUNT // 20


@pytest.fixture(scope="module")
def fabric() -> Iterator[tuple[Box, Box, Box, AgentProcess, Host]]:
    skip_unless_supported()
    with Fabric("evpk") as fab:
        rr = fab.add_route_reflector("rr", 1)
        frr_vtep = fab.add_frr_vtep("f1", 11, rrs=[rr])
        frr_vtep.add_vni(VNI)
        agent_vtep = fab.add_agent_vtep("a1", 21)
        agent_vtep.add_vni(VNI)
        host = fab.add_host("h1", agent_vtep, VNI, "198.51.100.1/24")
        agent = fab.start_agent(agent_vtep, rrs=[rr])
        fab.wait_established(rr, agent_vtep.address)
        fab.wait_established(rr, frr_vtep.address)
        yield rr, frr_vtep, agent_vtep, agent, host


def _macs() -> list[str]:
    return [f"02:02:00:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(COUNT)]


def _batch(box: Box, verb: str, port: str) -> None:
    static = " static" if verb == "add" else ""
    lines = "".join(f"fdb {verb} {mac} dev {port} master{static}\n" for mac in _macs())
    path = box.directory / f"packed-{verb}.batch"
    path.write_text(lines)
    box.netns.bridge("-batch", str(path))


def _updates_received(rr: Box, peer: str) -> int:
    stats = rr.vtysh_json(f"show bgp neighbor {peer} json")[peer]["messageStats"]
    return int(stats["updatesRecv"])


def _refreshes_received(rr: Box, peer: str) -> int:
    """ROUTE-REFRESH messages from ``peer``: our BoRR and EoRR after a refresh."""
    stats = rr.vtysh_json(f"show bgp neighbor {peer} json")[peer]["messageStats"]
    return int(stats["routeRefreshRecv"])


def _received_by_rr(rr: Box, peer: str) -> int:
    summary = rr.vtysh_json("show bgp l2vpn evpn summary json")
    return int(summary["peers"][peer]["pfxRcd"])


def _ours_in_kernel(frr_vtep: Box, vtep: str) -> int:
    """How many of the burst's MACs the FRR VTEP's kernel points at ``vtep``."""
    found = re.findall(
        rf"^(02:02:00:00:\S+) dst {re.escape(vtep)} ", frr_vtep.fdb("vxlan100"), re.M
    )
    return len(set(found))


def test_two_thousand_macs_travel_packed_and_reach_an_frr_kernel(
    fabric: tuple[Box, Box, Box, AgentProcess, Host],
) -> None:
    rr, frr_vtep, agent_vtep, agent, host = fabric
    port = f"h-{host.name}"
    me = agent_vtep.address

    before = _updates_received(rr, me)
    _batch(agent_vtep, "add", port)
    try:
        wait_until(
            lambda: _ours_in_kernel(frr_vtep, me) == COUNT,
            60,
            f"all {COUNT} MACs in the FRR VTEP's kernel",
            interval=0.2,
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {_ours_in_kernel(frr_vtep, me)}\n{agent.logs()}") from None
    announced = _updates_received(rr, me) - before
    print(f"{COUNT} MACs reached the reflector in {announced} UPDATEs")
    assert 0 < announced <= MOST_UPDATES

    # The reflector asks for our routes again (ROUTE-REFRESH): the table is resent, packed,
    # between BoRR and EoRR, so the reflector keeps every route through its stale sweep.
    before, refreshed = _updates_received(rr, me), _refreshes_received(rr, me)
    rr.vtysh(f"clear bgp l2vpn evpn {me} soft in")
    wait_until(lambda: _refreshes_received(rr, me) == refreshed + 2, 30, "our BoRR and EoRR")
    resent = _updates_received(rr, me) - before
    print(f"route refresh: {COUNT} MACs resent in {resent} UPDATEs")
    assert 0 < resent <= MOST_UPDATES
    assert _received_by_rr(rr, me) >= COUNT
    assert _ours_in_kernel(frr_vtep, me) == COUNT

    before = _updates_received(rr, me)
    _batch(agent_vtep, "del", port)
    wait_until(
        lambda: _ours_in_kernel(frr_vtep, me) == 0,
        60,
        f"all {COUNT} MACs gone from the FRR VTEP's kernel",
        interval=0.2,
    )
    withdrawn = _updates_received(rr, me) - before
    print(f"{COUNT} withdraws reached the reflector in {withdrawn} UPDATEs")
    assert 0 < withdrawn <= MOST_UPDATES
