"""When a process hands its free heap back (evpn_agent.heap.TrimWhenQuiet): once per burst
of work, after the burst, and never while idle."""

from __future__ import annotations

from evpn_agent.heap import TrimWhenQuiet


def quiet_trim() -> tuple[TrimWhenQuiet, list[int]]:
    trims: list[int] = []
    return TrimWhenQuiet(lambda: trims.append(1)), trims


def test_nothing_is_due_before_any_work() -> None:
    heap, trims = quiet_trim()
    assert heap.due_in(1000.0) is None
    assert not heap.trim_if_due(1000.0)
    assert trims == []


def test_the_heap_goes_back_once_the_work_has_stopped_for_the_quiet_time() -> None:
    heap, trims = quiet_trim()
    heap.worked(100.0)
    heap.worked(103.0)  # still the same burst: the quiet time counts from here
    assert heap.due_in(105.0) == 3.0
    assert not heap.trim_if_due(107.9)
    assert trims == []
    assert heap.trim_if_due(108.0)
    assert trims == [1]


def test_one_trim_per_burst_and_none_after_it() -> None:
    heap, trims = quiet_trim()
    heap.worked(100.0)
    assert heap.trim_if_due(200.0)
    assert heap.due_in(300.0) is None
    assert not heap.trim_if_due(400.0)
    heap.worked(500.0)
    assert heap.trim_if_due(505.0)
    assert trims == [1, 1]
