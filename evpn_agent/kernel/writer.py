"""Apply plan steps to the kernel: a whole batch of netlink requests in one syscall, no acks.

The writer runs in a thread of its own while the owner thread runs Python, so what it costs
is mostly syscalls: each one releases the GIL, and taking it back may wait a switch interval.
Hence:

- Requests go without NLM_F_ACK: the kernel answers only the ones that fail (a successful
  request answers nothing), so a batch of 100,000 requests reads back its errors, not
  100,000 acks.
- Requests are packed ~8 KiB per datagram (measured fastest; 64 KiB was slower) and every
  datagram goes out in one sendmmsg() (:mod:`evpn_agent.kernel.sendmmsg`).
- rtnetlink handles a datagram synchronously in the sender's context, so when sendmmsg()
  returns every request has been handled and every error is queued on our socket. A
  NLMSG_NOOP with NLM_F_ACK ends the batch (the kernel acks control messages too): reading
  up to its ack collects every error of the batch, with one recv when nothing failed.
- Request k of a round has sequence number base+k and the barrier base+count, so an error
  maps to its op by arithmetic, and errors of an abandoned earlier round (numbered below
  base) are ignored.

When errors overflow the receive buffer (recv raises ENOBUFS), some were dropped and we cannot
tell whose: every op without an error read back is then reported as failed with an unknown
outcome, for the caller to retry (every op is idempotent).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from evpn_agent.kernel.encoder import encode, encode_self_delete
from evpn_agent.kernel.netlink import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSG_NOOP,
    NLMSGHDR,
    open_route_socket,
    parse_ack,
)
from evpn_agent.kernel.sendmmsg import send_datagrams
from evpn_agent.model import AddFdb, DelFdb, DelFlood, DelNeigh, Op

log = logging.getLogger(__name__)

_DELETES = (DelFdb, DelFlood, DelNeigh)
_FDB_OPS = (AddFdb, DelFdb)
_BOTH_PART = 0  # DelFdb's MASTER|SELF request (encode())
_SELF_PART = 1  # its follow-up for the VXLAN entry alone (encode_self_delete())
_SEQ_LIMIT = 0xFFFF_FFF0  # wrap well before u32 overflow
_MALFORMED = (ValueError, OSError, TypeError)  # what encoding a bad MAC/IP raises
# (errno, kernel message) of a request the kernel refused, by request number in its round
Errors = dict[int, tuple[int, str]]


class Encoder(Protocol):
    def __call__(self, op: Op, seq: int, *, ack: bool = True) -> bytes: ...


@dataclass(frozen=True, slots=True)
class OpFailure:
    """A plan step the kernel refused (or whose outcome is unknown)."""

    op: Op
    errno: int
    message: str


def barrier(seq: int) -> bytes:
    """A request the kernel acks without doing anything: its ack follows every earlier error."""
    return NLMSGHDR.pack(NLMSGHDR.size, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, seq, 0)


@dataclass(slots=True)
class Datagrams:
    """The requests of one round packed into datagrams, the barrier at the end of the last.

    Datagram j is ``data[ends[j-1]:ends[j]]`` and starts with request number ``firsts[j]``;
    a request that could not be encoded (None) keeps its number but is not in ``data``.
    """

    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    firsts: list[int] = field(default_factory=lambda: [0])


def pack(requests: Iterable[bytes | None], last: bytes, chunk_bytes: int) -> Datagrams:
    """Pack ``requests`` (numbered from 0) into datagrams of about ``chunk_bytes`` each, a
    datagram closing once it holds at least ``chunk_bytes``; ``last`` ends the last one."""
    packed = Datagrams()
    data, ends, firsts = packed.data, packed.ends, packed.firsts
    start = 0
    number = -1
    for number, request in enumerate(requests):
        if request is None:
            continue
        data += request
        if len(data) - start >= chunk_bytes:
            start = len(data)
            ends.append(start)
            firsts.append(number + 1)
    data += last
    ends.append(len(data))
    return packed


def read_errors(buf: bytearray, received: int, base: int, count: int, errors: Errors) -> bool:
    """Record in ``errors`` the failures among the NLMSG_ERROR messages in ``buf[:received]``
    that answer requests base..base+count-1; returns whether the barrier's ack (base+count)
    is among them. Answers to other sequence numbers are late ones of an earlier round."""
    barrier_seen = False
    offset = 0
    while offset + NLMSGHDR.size <= received:
        length, msg_type, _flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
        if length < NLMSGHDR.size:
            break
        if msg_type == NLMSG_ERROR:
            number = seq - base
            if number == count:
                barrier_seen = True
            elif 0 <= number < count:
                code, text = parse_ack(buf, offset)
                if code:
                    errors.setdefault(number, (code, text or os.strerror(code)))
        offset += (length + 3) & ~3
    return barrier_seen


class NetlinkWriter:
    """Synchronous, not thread-safe. Open it inside the network namespace it should write to."""

    def __init__(
        self,
        *,
        chunk_bytes: int = 8192,
        rcvbuf: int = 8 << 20,
        ack_timeout: float = 10.0,
        use_sendmmsg: bool = True,
    ) -> None:
        """``rcvbuf`` bounds the errors one batch can read back (~1 KiB each) before the
        kernel drops them; ``use_sendmmsg=False`` sends one datagram per syscall."""
        self._chunk_bytes = chunk_bytes
        self._ack_timeout = ack_timeout
        self._batched = use_sendmmsg
        self._sock = open_route_socket(rcvbuf)
        self._buf = bytearray(1 << 16)
        self._seq = 1

    @property
    def portid(self) -> int:
        """Our netlink port id: neighbour events caused by our writes carry it as nlmsg_pid."""
        portid: int = self._sock.getsockname()[0]
        return portid

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NetlinkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def apply(self, ops: Sequence[Op]) -> list[OpFailure]:
        """Apply `ops` in order; returns the ones that failed, in order.

        Deleting something already absent (ENOENT) counts as success, so every op is
        idempotent and a failed batch can simply be retried.
        """
        if not ops:
            return []
        started = time.perf_counter()
        failures: dict[int, OpFailure] = {}
        followups = self._round(ops, range(len(ops)), encode, _BOTH_PART, failures)
        if followups:
            # The VXLAN entries that MASTER|SELF deletes left behind (their bridge entry was
            # gone), unless a later op of the batch sets or deletes the same entry anyway.
            last = {_fdb_key(op): i for i, op in enumerate(ops) if type(op) in _FDB_OPS}
            again = [i for i in followups if last.get(_fdb_key(ops[i])) == i]
            if again:
                self._round(ops, again, encode_self_delete, _SELF_PART, failures)
        log.debug(
            "applied %d ops in %.3f s, %d failed",
            len(ops),
            time.perf_counter() - started,
            len(failures),
        )
        return [failures[index] for index in sorted(failures)]

    def _next_seq(self, count: int) -> int:
        if self._seq + count >= _SEQ_LIMIT:
            self._seq = 1
        seq = self._seq
        self._seq += count
        return seq

    def _round(
        self,
        ops: Sequence[Op],
        indices: Sequence[int],
        encoder: Encoder,
        part: int,
        failures: dict[int, OpFailure],
    ) -> list[int]:
        """Send request number k for ``ops[indices[k]]``, all at once, and record what
        failed. Returns the DelFdb ops whose MASTER|SELF request the kernel refused."""
        count = len(indices)
        base = self._next_seq(count + 1)
        requests = self._encode(ops, indices, encoder, base, failures)
        packed = pack(requests, barrier(base + count), self._chunk_bytes)
        sent, send_error = send_datagrams(
            self._sock, packed.data, packed.ends, batched=self._batched
        )
        errors: Errors = {}
        unknown: tuple[int, str] | None = None
        if sent:
            # After a failed send the barrier never went out: read what the sent datagrams
            # left queued (all of it is there already: the kernel handled them synchronously).
            unknown = self._collect(base, count, errors, barrier_sent=send_error is None)
        followups: list[int] = []
        for number in sorted(errors):
            code, text = errors[number]
            index = indices[number]
            op = ops[index]
            if part == _BOTH_PART and type(op) is DelFdb:
                followups.append(index)  # the VXLAN entry may be left: its own request settles it
            if not _already_absent(op, part, code):
                failures.setdefault(index, OpFailure(op, code, text))

        def fail(numbers: range, code: int, text: str) -> None:
            for number in numbers:
                if number not in errors:  # (and malformed ones keep their EINVAL)
                    failures.setdefault(
                        indices[number], OpFailure(ops[indices[number]], code, text)
                    )

        unsent = count if send_error is None else packed.firsts[sent]
        if unknown is not None:
            fail(range(unsent), *unknown)
        if send_error is not None:
            log.warning("sending netlink requests failed: %s", send_error)
            fail(range(unsent, count), send_error.errno or errno.EIO, f"send failed: {send_error}")
        return followups

    @staticmethod
    def _encode(
        ops: Sequence[Op],
        indices: Sequence[int],
        encoder: Encoder,
        base: int,
        failures: dict[int, OpFailure],
    ) -> Iterator[bytes | None]:
        for number, index in enumerate(indices):
            op = ops[index]
            try:
                yield encoder(op, base + number, ack=False)
            except _MALFORMED as exc:  # malformed MAC/IP: never sent
                failures[index] = OpFailure(op, errno.EINVAL, str(exc))
                yield None

    def _collect(
        self, base: int, count: int, errors: Errors, *, barrier_sent: bool
    ) -> tuple[int, str] | None:
        """Read the errors of a round into ``errors``. Returns None when every request
        without an error is known to have succeeded, else (errno, why) for those."""
        sock, buf = self._sock, self._buf
        overflowed = False
        deadline: float | None = None
        while True:
            try:
                received = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if overflowed:
                    return errno.ENOBUFS, "netlink errors lost (ENOBUFS), outcome unknown"
                if not barrier_sent:
                    return None  # handled synchronously: all that will come has come
                # Everything was handled before sendmmsg() returned: this wait is a guard.
                if deadline is None:
                    deadline = time.monotonic() + self._ack_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                    return errno.ETIMEDOUT, "no ack from kernel, outcome unknown"
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # Errors were dropped: read on what is queued (which also empties the
                    # socket for the next round), but trust no silence in this one.
                    if not overflowed:
                        log.warning("netlink errors overflowed the receive buffer")
                    overflowed = True
                    continue
                log.warning("reading netlink errors failed: %s", exc)
                code = exc.errno or errno.EIO
                return code, f"reading errors failed, outcome unknown: {exc}"
            if read_errors(buf, received, base, count, errors) and not overflowed:
                return None


def _already_absent(op: Op, part: int, code: int) -> bool:
    """Whether a delete failed only because there was nothing to delete (idempotent)."""
    if not isinstance(op, _DELETES):
        return False
    if code == errno.ENOENT:
        return True
    # A VXLAN device outside any bridge has no bridge entry: the kernel answers EOPNOTSUPP.
    return code == errno.EOPNOTSUPP and isinstance(op, DelFdb) and part == _BOTH_PART


def _fdb_key(op: Op) -> tuple[int, str, int | None]:
    assert isinstance(op, AddFdb | DelFdb)
    return op.ifindex, op.mac, op.vlan
