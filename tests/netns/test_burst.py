"""Bursts: 50,000 local MACs appearing and leaving at once end with exactly the right set
advertised, and the BGP session never stalls while the agent works through them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from lab.fabric import AgentProcess, Box, Fabric, Host, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]

COUNT = 50_000


# The default netlink buffer (64 MiB) holds the whole burst; the smallest one allowed
# overflows many times, so the agent must notice the loss and resynchronise from a dump.
SMALL_BUFFER = 1 << 16


@pytest.fixture(scope="module", params=[None, SMALL_BUFFER], ids=["default-buffer", "overflow"])
def fabric(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Fabric, Box, Box, AgentProcess, Host, int | None]]:
    skip_unless_supported()
    with Fabric("evbu") as fab:
        rr = fab.add_route_reflector("rr", 1)
        a1 = fab.add_agent_vtep("a1", 21)
        a1.add_vni(100)
        host = fab.add_host("h1", a1, 100, "198.51.100.1/24")
        settings = {} if request.param is None else {"netlink-buffer-size": request.param}
        agent = fab.start_agent(a1, rrs=[rr], settings=settings)
        fab.wait_established(rr, a1.address)
        yield fab, rr, a1, agent, host, request.param


def _received_by_rr(rr: Box, peer: str) -> int:
    summary = rr.vtysh_json("show bgp l2vpn evpn summary json")
    return int(summary["peers"][peer]["pfxRcd"])


def _uptime_ms(rr: Box, peer: str) -> int:
    summary = rr.vtysh_json("show bgp l2vpn evpn summary json")
    return int(summary["peers"][peer]["peerUptimeMsec"])


def _batch(box: Box, verb: str, port: str) -> None:
    lines = "".join(
        f"fdb {verb} 02:01:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}:00 "
        f"dev {port} master{' static' if verb == 'add' else ''}\n"
        for i in range(COUNT)
    )
    path = box.directory / f"{verb}.batch"
    path.write_text(lines)
    box.netns.bridge("-batch", str(path))


def test_fifty_thousand_local_macs_come_and_go(
    fabric: tuple[Fabric, Box, Box, AgentProcess, Host, int | None],
) -> None:
    _fab, rr, a1, agent, host, buffer = fabric
    port = f"h-{host.name}"
    up_before = _uptime_ms(rr, a1.address)

    def advertised() -> int:
        [peer] = json.loads(agent.cli("show", "peers", "--json"))
        return int(peer["routesAdvertised"])

    def rr_agrees(predicate: Callable[[int], bool]) -> tuple[int, int] | None:
        """None until ``predicate`` holds for our count and the RR holds as many; the
        counts on the way show in a timeout's message."""
        ours, theirs = advertised(), _received_by_rr(rr, a1.address)
        return (ours, theirs) if predicate(ours) and theirs == ours else None

    def converge(predicate: Callable[[int], bool], what: str) -> None:
        try:
            wait_until(lambda: rr_agrees(predicate), 120, what, interval=0.5)
        except TimeoutError as exc:
            counts = f"advertised {advertised()}, RR holds {_received_by_rr(rr, a1.address)}"
            counters = agent.cli("show", "counters", "--json")
            raise AssertionError(f"{exc}\n{counts}\n{counters}\n{agent.logs()}") from None

    def sent() -> tuple[int, int]:
        counters = json.loads(agent.cli("show", "counters", "--json"))["counters"]
        return counters["bgp-announces"], counters["bgp-withdraws"]

    # The host's own MAC first (its ARP request is learned), so that the counts below
    # are the burst's alone.
    host.ping("198.51.100.99", timeout=0.2)
    converge(lambda n: n == 2, "a1's type 3 and its host's MAC on the RR")
    before = sent()
    started = time.monotonic()
    _batch(a1, "add", port)
    converge(lambda n: n == COUNT + 2, f"the RR to hold all {COUNT} MACs from a1")
    added, add_s = sent(), time.monotonic() - started

    started = time.monotonic()
    _batch(a1, "del", port)
    converge(lambda n: n == 2, "every burst MAC withdrawn from the RR")
    deleted, del_s = sent(), time.monotonic() - started
    print(f"burst on the RR: all added in {add_s:.1f}s, all withdrawn in {del_s:.1f}s")
    # One announce and one withdraw per MAC: none flapped on the way, lost events or not.
    assert (added[0] - before[0], added[1] - before[1]) == (COUNT, 0)
    assert (deleted[0] - added[0], deleted[1] - added[1]) == (0, COUNT)

    # The session never dropped: ExaBGP was read throughout the burst.
    assert _uptime_ms(rr, a1.address) > up_before
    counters = json.loads(agent.cli("show", "counters", "--json"))["counters"]
    overflows = counters.get("netlink-overflow", 0)
    print(f"netlink overflows during the burst: {overflows}")
    assert counters.get("commands-failed", 0) == 0
    if buffer == SMALL_BUFFER:
        assert overflows > 0, "the burst was meant to overflow the small netlink buffer"
