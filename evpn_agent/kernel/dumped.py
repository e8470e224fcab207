"""A dump's entries kept as the kernel sent them, decoded each time they are walked.

A reconcile at 1,000 VNIs and 64 VTEPs dumps ~200,000 FDB entries. Decoded at once they
were ~30 MiB of small Python objects, alive together until the reconcile ended; whatever
long-lived object the core made meanwhile (the new mirror's per-device sets, a VNI's
links) landed among them, and Python's allocator could hand back none of those arenas
once the dump was freed: a reconcile during MAC churn left the core ~30 MiB larger for
good. Kept as bytes, a dump is one large buffer, which the system takes back whole; each
entry walked is decoded, used and freed before the next one.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Dumped(Generic[T]):
    """Messages of one dump, copied out of the receive buffer; iterating decodes them
    (``decode(buffer, offset)``, None for a message that holds no entry), every time."""

    __slots__ = ("_decode", "_offsets", "_raw")

    def __init__(self, decode: Callable[[bytearray, int], T | None]) -> None:
        self._decode = decode
        self._raw = bytearray()
        self._offsets = array("I")  # where each message starts in _raw

    def keep(self, buf: bytearray, offset: int, length: int) -> None:
        self._offsets.append(len(self._raw))
        self._raw += memoryview(buf)[offset : offset + length]

    def __len__(self) -> int:
        """Messages kept (an upper bound on the entries: some may decode to None)."""
        return len(self._offsets)

    def __iter__(self) -> Iterator[T]:
        decode, raw = self._decode, self._raw
        for offset in self._offsets:
            item = decode(raw, offset)
            if item is not None:
                yield item


class Joined(Generic[T]):
    """Several collections walked as one, as often as asked (``itertools.chain`` walks
    once): a dump and the entries looked up after it."""

    __slots__ = ("_parts",)

    def __init__(self, *parts: Iterable[T]) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[T]:
        for part in self._parts:
            yield from part
