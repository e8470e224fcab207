"""A kept dump: its messages are copied out of the receive buffer and decoded as walked."""

import struct
import weakref

from evpn_agent.kernel.dumped import Dumped, Joined

_MSG = struct.Struct("=IHH")  # length, value, padding: a stand-in for a netlink message


class Entry:
    __slots__ = ("__weakref__", "value")

    def __init__(self, value: int) -> None:
        self.value = value


def _decode(buf: bytearray, offset: int) -> Entry | None:
    _length, value, _pad = _MSG.unpack_from(buf, offset)
    return None if value == 0 else Entry(value)


def _datagram(*values: int) -> bytearray:
    return bytearray(b"".join(_MSG.pack(_MSG.size, v, 0) for v in values))


def _kept(*values: int) -> Dumped[Entry]:
    dumped: Dumped[Entry] = Dumped(_decode)
    buf = _datagram(*values)
    for i in range(len(values)):
        dumped.keep(buf, i * _MSG.size, _MSG.size)
    buf[:] = bytes(len(buf))  # the receive buffer is reused for the next datagram
    return dumped


def test_a_kept_dump_walks_its_entries_as_often_as_asked() -> None:
    dumped = _kept(5, 0, 7)  # 0: a message without an entry
    assert len(dumped) == 3
    assert [e.value for e in dumped] == [5, 7]
    assert [e.value for e in dumped] == [5, 7]


def test_a_kept_dump_holds_one_decoded_entry_at_a_time() -> None:
    # What the dump is for: 200,000 entries decoded at once pinned Python's arenas.
    alive: list[weakref.ref[Entry]] = []
    for entry in _kept(*range(1, 50)):
        assert all(ref() is None for ref in alive)
        alive.append(weakref.ref(entry))
    assert len(alive) == 49


def test_joined_walks_every_part_each_time() -> None:
    joined = Joined(_kept(1, 2), [Entry(3)])
    assert [e.value for e in joined] == [1, 2, 3]
    assert [e.value for e in joined] == [1, 2, 3]
