"""Duplicate address detection's bookkeeping (core.dad): moves counted per window, as zebra."""

from __future__ import annotations

from evpn_agent.core.dad import DuplicateDetector
from evpn_agent.model import DadSettings
from evpn_agent.model.keys import VniMac


def test_max_moves_within_the_window_make_a_duplicate() -> None:
    dad = DuplicateDetector(DadSettings(max_moves=3, window=60))
    key = VniMac(100, "02:00:5e:00:00:01")
    assert not dad.moved(key, 0, "192.0.2.22")
    assert not dad.moved(key, 30, "192.0.2.23")
    assert dad.moved(key, 59, "192.0.2.22")
    assert key in dad.duplicates and dad.count(key) == 3


def test_a_move_after_the_window_starts_counting_again() -> None:
    dad = DuplicateDetector(DadSettings(max_moves=3, window=60))
    key = VniMac(100, "02:00:5e:00:00:01")
    for now in (0, 30, 61, 100):  # 0 and 30, then a new window at 61
        assert not dad.moved(key, now, "192.0.2.22")
    assert dad.count(key) == 2 and not dad.duplicates


def test_macs_that_stopped_moving_are_forgotten_once_their_window_is_over() -> None:
    """A churn across many MACs must not leave a record per MAC ever moved."""
    dad = DuplicateDetector(DadSettings(max_moves=5, window=180))
    for n in range(10_000):
        dad.moved(VniMac(100, f"02:00:5e:00:{n >> 8:02x}:{n & 255:02x}"), n / 100, "192.0.2.22")
    assert len(dad.moves) == 10_000  # all within the window
    last = VniMac(200, "02:00:5e:00:00:01")
    dad.moved(last, 400.0, "192.0.2.22")
    assert set(dad.moves) == {last}


def test_the_last_moves_are_forgotten_on_the_timer_when_moves_stop() -> None:
    dad = DuplicateDetector(DadSettings(max_moves=5, window=180))
    assert dad.next_prune() is None  # nothing recorded: no timer
    for n in range(100):
        dad.moved(VniMac(100, f"02:00:5e:00:00:{n:02x}"), 10.0 + n, "192.0.2.22")
    due = dad.next_prune()
    assert due == 190.0  # a window after the first record
    dad.prune(due)
    assert len(dad.moves) == 100  # moved at 10..109: within the window at 190
    due = dad.next_prune()
    assert due == 370.0
    dad.prune(due)
    assert dad.moves == {} and dad.next_prune() is None
