"""The benchmark's ratio interval: what a run can and cannot tell apart."""

from __future__ import annotations

from bench.results import ratio_range


def test_sides_far_apart_give_a_range_that_excludes_one() -> None:
    span = ratio_range([2.0, 2.1, 1.9, 2.05, 1.95], [1.0, 1.05, 0.95, 1.02, 0.98])
    assert span is not None
    low, high = span
    assert 1.7 < low <= 2.0 <= high < 2.3


def test_overlapping_sides_give_a_range_across_one() -> None:
    span = ratio_range([1.0, 1.2, 0.9, 1.1, 1.05], [1.1, 0.95, 1.0, 1.15, 1.02])
    assert span is not None
    assert span[0] < 1.0 < span[1]


def test_the_same_trials_give_the_same_range() -> None:
    agent, frr = [0.3, 0.35, 0.4, 0.33, 0.38], [0.36, 0.31, 0.42, 0.37, 0.35]
    assert ratio_range(agent, frr) == ratio_range(list(agent), list(frr))


def test_too_few_trials_or_a_zero_median_give_no_range() -> None:
    assert ratio_range([1.0, 1.1], [1.0, 1.0, 1.0]) is None
    assert ratio_range([1.0, 1.1, 1.2], [0.0, 0.0, 0.0]) is None
