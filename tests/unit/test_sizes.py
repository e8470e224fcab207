import os
import sys

from evpn_agent import heap
from evpn_agent.control import show_text
from evpn_agent.core.sizes import TableSize, indexed, size_of, total


def test_a_nested_table_counts_its_innermost_entries_and_every_level_of_hash_table() -> None:
    inner = [{n: None for n in range(k)} for k in (1, 2, 3)]
    outer = {"a": {1: inner[0], 2: inner[1]}, "b": {3: inner[2]}}
    assert size_of(outer) == TableSize(2, sys.getsizeof(outer))
    assert size_of(outer, 1).entries == 3 and size_of(outer, 2).entries == 6
    assert size_of(outer, 2).bytes > size_of(outer, 1).bytes > size_of(outer).bytes
    assert indexed(TableSize(5, 100), TableSize(9, 50)) == TableSize(5, 150)
    assert total(TableSize(5, 100), TableSize(9, 50)) == TableSize(14, 150)


def test_a_table_keeps_the_size_of_its_busiest_moment_and_shows_it() -> None:
    """What the command is for: a dict whose keys came and went is as large as it was."""
    busy = {n: n for n in range(100_000)}
    for n in range(100_000 - 10):
        del busy[n]
    fresh = dict(busy)
    assert size_of(busy).entries == size_of(fresh).entries == 10
    assert size_of(busy).bytes > 100 * size_of(fresh).bytes


def test_process_memory_reads_proc_and_says_none_for_a_process_gone() -> None:
    own = heap.process_memory(os.getpid())
    assert own is not None and 0 < own["rss_mib"] <= own["peak_rss_mib"]
    assert heap.process_memory(2**22 + 1) is None  # above pid_max's limit: never a process
    glibc = heap.allocator()
    assert glibc is not None and glibc["in_use_mib"] <= glibc["heap_mib"] + glibc["mapped_mib"]


def test_show_memory_text_lists_processes_heap_and_tables() -> None:
    data = {
        "processes": {
            "core": {"pid": 10, "rss_mib": 170.5, "peak_rss_mib": 190.0,
                     "allocator": {"heap_mib": 37.4, "in_use_mib": 34.9, "free_mib": 2.5,
                                   "mapped_mib": 0.4},
                     "python": {"allocated_blocks": 1603940, "collections": [12, 1, 0]}},
            "speaker": {"pid": 9},  # gone: no figures
        },
        "tables": {"paths": {"entries": 259950, "bytes": 10 << 20}},
    }  # fmt: skip
    text = show_text.memory(data)
    assert "core     10   170.5    190.0" in text and "speaker  9    -" in text
    assert "34.9 in use, 2.5 free within it" in text and "1,603,940 blocks" in text
    assert "paths  259,950  10.00" in text
