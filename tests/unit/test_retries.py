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


def test_the_next_due_skips_settled_and_rescheduled_keys() -> None:
    retries: Retries[str] = Retries()
    retries.failed("a", 0.0)  # due at 1
    retries.failed("b", 0.0)
    retries.failed("b", 0.0)  # rescheduled: due at 2, no longer at 1
    retries.failed("c", 0.0)
    retries.succeeded("a")
    retries.forget(["c"])
    assert retries.next_due() == 2.0
    assert retries.due(1.5) == []
    assert retries.due(2.0) == ["b"]
    assert retries.next_due() is None  # in flight: no time is due


def test_many_settled_keys_leave_no_backlog() -> None:
    # a burst of refused writes that later succeed: the schedule keeps no trace of them
    retries: Retries[int] = Retries()
    for key in range(10_000):
        retries.failed(key, 0.0)
        retries.succeeded(key)
    retries.failed(-1, 5.0)
    assert len(retries._heap) < 200
    assert retries.next_due() == 6.0
    assert retries.due(6.0) == [-1]
