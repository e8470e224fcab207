"""The retry schedule for refused kernel writes (pure)."""

from __future__ import annotations

from evpn_agent.core.retries import LAST, Retries


def test_backoff_doubles_up_to_the_cap() -> None:
    retries: Retries[str] = Retries()
    delays = [retries.failed("k", 0.0) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, LAST, LAST, LAST]


def test_due_keys_are_in_flight_until_they_fail_succeed_or_are_forgotten() -> None:
    retries: Retries[str] = Retries()
    retries.failed("a", 10.0)
    retries.failed("b", 10.0)
    retries.failed("b", 10.0)  # second failure: due at 12
    assert retries.due(10.5) == []
    assert retries.due(11.0) == ["a"]
    assert retries.due(11.5) == []  # in flight: not handed out twice
    assert retries.in_flight() == ["a"]
    assert retries.failed("a", 11.0) == 2.0  # failed again: next at 13
    assert sorted(retries.due(13.0)) == ["a", "b"]
    retries.succeeded("a")
    retries.forget(["b"])
    assert len(retries) == 0 and "a" not in retries
