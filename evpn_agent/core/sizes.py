"""How large the core's tables are: entries, and the bytes of their own hash tables.

What ``show memory`` lists. The bytes are the tables' own (``sys.getsizeof`` of each dict
or set, nested ones included), not the keys and routes they hold, which several tables
share: that is where a table's growth shows that Python never hands back by itself (a
dict whose keys come and go keeps the size of its largest day). Asked rarely, by an
operator: it walks the nested tables (~65,000 per-MAC dicts at 64,000 MACs, ~20 ms).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from sys import getsizeof
from typing import Any, NamedTuple


class TableSize(NamedTuple):
    entries: int  # at the innermost level: paths, not the MACs they are indexed by
    bytes: int


def size_of(table: Collection[Any], depth: int = 0) -> TableSize:
    """``table``'s size with the tables nested ``depth`` levels deep in its values."""
    if depth == 0 or not isinstance(table, Mapping):
        return TableSize(len(table), getsizeof(table))
    entries, size = 0, getsizeof(table)
    for inner in table.values():
        inner_size = size_of(inner, depth - 1)
        entries += inner_size.entries
        size += inner_size.bytes
    return TableSize(entries, size)


def indexed(table: TableSize, *indexes: TableSize) -> TableSize:
    """A table with its indexes, under one name: its entries, all their bytes."""
    return TableSize(table.entries, table.bytes + sum(index.bytes for index in indexes))


def total(*tables: TableSize) -> TableSize:
    """Tables of one kind under one name (the sets of keys touched, say)."""
    return TableSize(sum(t.entries for t in tables), sum(t.bytes for t in tables))
