"""The writer's pure parts: no-ack requests, packing into datagrams, mapping errors to
requests by sequence number; and sendmmsg() on a local socket pair."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from evpn_agent.kernel.encoder import encode, encode_self_delete
from evpn_agent.kernel.sendmmsg import AVAILABLE, send_datagrams
from evpn_agent.kernel.writer import Errors, barrier, pack, read_errors
from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op

HEADER = struct.Struct("=IHHII")
NLM_F_ACK = 0x4
MAC = "02:00:5e:00:01:0a"
OPS: list[Op] = [
    AddFdb(7, MAC, "198.51.100.1"),
    AddFdb(7, MAC, "2001:db8::1", vlan=100),
    DelFdb(7, MAC),
    DelFdb(7, MAC, vlan=4094),
    AddFlood(7, "203.0.113.9"),
    DelFlood(7, "2001:db8::9"),
    AddNeigh(4, "198.51.100.20", MAC),
    AddNeigh(4, "2001:db8::20", MAC),
    DelNeigh(4, "198.51.100.20"),
    DelNeigh(4, "2001:db8::20"),
]


def without_ack(message: bytes) -> bytes:
    (flags,) = struct.unpack_from("=H", message, 6)
    return message[:6] + struct.pack("=H", flags & ~NLM_F_ACK) + message[8:]


@pytest.mark.parametrize("op", OPS, ids=repr)
def test_no_ack_request_differs_only_by_the_ack_flag(op: Op) -> None:
    with_ack = encode(op, 5)
    assert HEADER.unpack_from(with_ack)[2] & NLM_F_ACK
    assert encode(op, 5, ack=False) == without_ack(with_ack)
    if isinstance(op, DelFdb):
        assert encode_self_delete(op, 9, ack=False) == without_ack(encode_self_delete(op, 9))


def test_barrier_is_a_noop_request_asking_for_an_ack() -> None:
    assert HEADER.unpack(barrier(42)) == (16, 1, 0x1 | 0x4, 42, 0)  # NLMSG_NOOP, REQUEST|ACK


def test_pack_closes_a_datagram_once_it_holds_chunk_bytes() -> None:
    requests = [bytes([n]) * (40 + n % 3 * 8) for n in range(100)]  # 40, 48 or 56 bytes
    packed = pack(requests, b"B" * 16, chunk_bytes=200)
    assert bytes(packed.data) == b"".join(requests) + b"B" * 16
    assert len(packed.ends) == len(packed.firsts) > 1
    starts = [0, *packed.ends[:-1]]
    for j, (start, end) in enumerate(zip(starts, packed.ends, strict=True)):
        datagram = packed.data[start:end]
        first = packed.firsts[j]
        assert datagram.startswith(requests[first])  # request numbers line up with the bytes
        if j < len(packed.ends) - 1:
            assert 200 <= len(datagram) < 200 + 56
    assert packed.data[starts[-1] :].endswith(b"B" * 16)  # the barrier ends the last one


def test_pack_keeps_the_numbers_of_requests_left_out() -> None:
    requests: list[bytes | None] = [b"a" * 8, None, b"c" * 8, None, b"e" * 8]
    packed = pack(requests, b"!", chunk_bytes=16)
    assert bytes(packed.data) == b"a" * 8 + b"c" * 8 + b"e" * 8 + b"!"
    assert packed.ends == [16, 25]
    assert packed.firsts == [0, 3]  # the second datagram starts at request 3 (none), then 4


def test_pack_sends_the_barrier_alone_when_the_last_request_closes_a_datagram() -> None:
    packed = pack([b"x" * 10, b"y" * 10], b"!", chunk_bytes=10)
    assert packed.ends == [10, 20, 21] and packed.firsts == [0, 1, 2]
    assert pack([], b"!", chunk_bytes=10).ends == [1]


def error_ack(seq: int, error: int) -> bytes:
    """An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK (request header only)."""
    request = HEADER.pack(40, 28, 0x1, seq, 0)
    body = struct.pack("=i", -error) + request
    return HEADER.pack(16 + len(body), 2, 0x100, seq, 77) + body


def test_errors_map_to_requests_by_sequence_number() -> None:
    base, count = 1000, 50
    buf = bytearray(
        error_ack(base - 1, errno.ENODEV)  # late, from an earlier round
        + error_ack(base, errno.ENODEV)
        + error_ack(base + 7, errno.EINVAL)
        + error_ack(base + 8, 0)  # a success ack: not an error
        + error_ack(base + count + 1, errno.ENOENT)  # beyond the barrier: not ours
    )
    errors: Errors = {}
    assert not read_errors(buf, len(buf), base, count, errors)
    assert errors == {0: (errno.ENODEV, "No such device"), 7: (errno.EINVAL, "Invalid argument")}
    ack = bytearray(error_ack(base + count, 0) + b"\0" * 64)
    assert read_errors(ack, len(ack) - 64, base, count, errors)  # the barrier's ack
    assert len(errors) == 2


def datagram_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "send-each"])
def test_send_datagrams_keeps_boundaries_and_order(batched: bool) -> None:
    assert AVAILABLE  # glibc has had sendmmsg since 2.14
    data = bytearray(b"one" + b"two!" + b"three")
    sender, receiver = datagram_pair()
    with sender, receiver:
        assert send_datagrams(sender, data, [3, 7, 12], batched=batched) == (3, None)
        assert [receiver.recv(64) for _ in range(3)] == [b"one", b"two!", b"three"]
    data += b"more"  # the buffer is released again after the call


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "send-each"])
def test_send_datagrams_reports_how_many_went_out_before_an_error(batched: bool) -> None:
    """A non-blocking sender whose peer's queue fills up: sendmmsg() returns a partial count,
    the next call fails with EAGAIN."""
    count = 2_000
    data = bytearray(b"".join(n.to_bytes(4, "big") for n in range(count)))
    sender, receiver = datagram_pair()
    with sender, receiver:
        sender.setblocking(False)
        sent, error = send_datagrams(sender, data, range(4, 4 * count + 1, 4), batched=batched)
        assert 0 < sent < count
        assert error is not None and error.errno == errno.EAGAIN
        receiver.setblocking(False)
        got = []
        while True:
            try:
                got.append(int.from_bytes(receiver.recv(16), "big"))
            except BlockingIOError:
                break
        assert got == list(range(sent))


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "send-each"])
def test_send_datagrams_on_a_closed_socket(batched: bool) -> None:
    sender, receiver = datagram_pair()
    sender.close()
    with receiver:
        sent, error = send_datagrams(sender, bytearray(b"abc"), [3], batched=batched)
    assert sent == 0 and error is not None and error.errno == errno.EBADF
