"""When the agent dumps the kernel again: the periodic reconcile's pace (daemon.resync)."""

from __future__ import annotations

import pytest

from evpn_agent.daemon.resync import paced_interval


@pytest.mark.parametrize(
    ("interval", "budget", "cost", "expected"),
    [
        (60.0, 0.1, 0.7, 700.0),  # 137,000 entries: 0.7 s of CPU, once every 700 s
        (60.0, 0.1, 0.01, 60.0),  # a small table: as configured
        (1.0, 0.1, 0.002, 2.0),
        (60.0, 0.0, 5.0, 60.0),  # no budget: exactly as configured, whatever it costs
        (60.0, 1.0, 0.7, 70.0),
    ],
)
def test_reconciles_stay_within_their_share_of_a_core(
    interval: float, budget: float, cost: float, expected: float
) -> None:
    got = paced_interval(interval, budget, cost)
    assert got == pytest.approx(expected)
    if budget:
        assert cost / got <= budget / 100 + 1e-12
