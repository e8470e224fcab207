"""The API process's side of ExaBGP's pipe: lines in on stdin, commands out on stdout.

ExaBGP blocks when our stdin fills up (its reactor, keepalives included, with it), so stdin
is drained by a thread of its own from the first moment. With ``api.ack`` ExaBGP answers
every command line with ``done`` or ``error``: a FIFO of what was sent ties each answer to
its command, so a refused announce becomes an event the engine retries. Our changes go as
``announce evpn batch`` lines (up to encode.BATCH_SIZE each, one answer per line: an
``error`` refuses every change of the line, and the engine retries each). ExaBGP answers our
EVPN commands (and sync begin/end) at once, in order; it answers a route refresh later, from
its asynchronous queue. So a refresh is written only when no answer is outstanding, and what
we send meanwhile is held until its answer arrives (milliseconds; at most REFRESH_WAIT).
``show neighbor json`` (asked once, at start) is answered late too, but its ack always
follows its JSON answer: that pairs them, and other acks pass it by.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import re
import threading
import time
from binascii import unhexlify
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, cast

from evpn_agent.model import AdvertChange, AdvertRefused, BgpEvent, LineRejected, route_count
from evpn_agent.speaker import Decoded, Deliver, Line, decode, encode
from evpn_agent.speaker.wire_decode import decode_update
from evpn_agent.speaker.wire_format import WIRE_EVENTS, WIRE_UPDATE
from evpn_agent.speaker.wire_records import decode_events

log = logging.getLogger(__name__)

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, Linux
PIPE_SIZE = 1 << 20  # the default per-user limit (/proc/sys/fs/pipe-max-size)
READ_SIZE = PIPE_SIZE  # bytes read from the pipe at once, at most
# Bytes of lines read and not yet taken by the owner before the reader stops reading (once
# the engine runs): a backlog then stays in the pipe, where the launcher sees it (FIONREAD)
# and decodes the next UPDATEs itself (contract.md section 3a) instead of the core decoding
# all. Bytes, not lines: a line of a reflector's large UPDATEs holds thousands of routes.
AHEAD_BYTES = 1 << 18
AHEAD_WAIT = 0.5  # seconds the reader waits for the owner at most, then reads on
PART_ROUTES = 512  # routes of a decoded line handed to the owner as one item (_parts)
# Unanswered commands remembered; bounded in case an operator turned ExaBGP's acks off.
MAX_PENDING = 1 << 20
REFRESH_WAIT = 2.0  # seconds to hold our commands for a refresh's answer, at most
_TIME = re.compile(rb'"time": ([0-9.]+)')
_WIRE = WIRE_UPDATE.encode() + b" "
_EVENTS = WIRE_EVENTS.encode() + b" "
# What a line we wrote was, for its answer: one change (a route line), the changes of an
# ``announce evpn batch`` line, or a command of the channel itself.
Sent = AdvertChange | tuple[AdvertChange, ...] | str


def _read_chunk(read: Callable[[int], bytes]) -> bytes:
    """Up to READ_SIZE bytes of the pipe; b"" (its end) when it broke or was closed under
    us (ValueError: a shutdown, a test's closed file), with a warning."""
    try:
        return read(READ_SIZE)
    except (OSError, ValueError) as exc:
        log.warning("the channel from ExaBGP broke: %s", exc)
        return b""


class ExabgpChannel:
    """The :class:`~evpn_agent.speaker.Speaker` port over ExaBGP's API pipe."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.stdin = stdin
        self.stdout = stdout
        # What each line we wrote was: a change of ours, a batch line's changes, or a
        # command of the channel.
        self._pending: deque[Sent] = deque(maxlen=MAX_PENDING)
        self.refused = 0  # commands answered "error"
        self._refresh_wanted = False
        self._refresh_sent: float | None = None  # while its answer is outstanding
        self._held: list[AdvertChange] = []  # sent while a refresh's answer is outstanding
        # ExaBGP answers "show neighbor json" late (from its scheduler, after the acks of
        # lines written since), but always as its JSON list line followed by its ack.
        self._report_ack_next = False
        self._ahead: str | None = None  # the router id, once UPDATEs are decoded on reading
        self._decoding_held = False  # see hold_decoding
        self._unread = 0  # bytes of lines delivered that the owner has not decoded yet
        self._room = threading.Condition()

    def start(self, deliver: Deliver) -> None:
        threading.Thread(target=self._read, args=(deliver,), name="exabgp-in", daemon=True).start()

    def _read(self, deliver: Deliver) -> None:
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            # A deeper pipe lets ExaBGP hand over a burst while we install the last one,
            # instead of blocking on its write (measured: ~8% of its time at 100k routes).
            fcntl.fcntl(self.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        # Whatever the pipe holds, up to READ_SIZE, in one read and one delivery: a line
        # (and a wake-up of the owner) at a time cost ~10 us each, and a 1,000-VNI table
        # comes as ~60,000 UPDATEs of one or two routes.
        read = getattr(self.stdin, "read1", self.stdin.read)
        tail = b""
        try:
            while chunk := _read_chunk(read):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if lines:
                    deliver(self._lines(lines))
                    self._wait_for_room(sum(map(len, lines)) + len(lines))
            if tail:
                deliver([tail])  # the last line, without its newline
        finally:
            deliver(None)

    def decode_ahead(self, router_id: str) -> None:
        self._ahead = router_id

    def hold_decoding(self, held: bool) -> None:
        # Routes decoded here are long-lived objects; made between a dump's objects, they
        # pin the dump's memory once it is freed (a reconcile during churn at 1,000 VNIs
        # left the core 26 MiB larger). Undecoded lines die when the owner decodes them.
        self._decoding_held = held

    def _wait_for_room(self, delivered: int) -> None:
        """Count the bytes delivered; while the owner is AHEAD_BYTES behind, wait (at most
        AHEAD_WAIT: ExaBGP blocks on a full pipe, keepalives included). Not before the
        engine runs: the kernel dump takes seconds at scale, and ExaBGP must not wait."""
        with self._room:
            self._unread += delivered
            if self._ahead is not None:
                self._room.wait_for(lambda: self._unread <= AHEAD_BYTES, AHEAD_WAIT)

    def _lines(self, lines: list[bytes]) -> list[Line]:
        """What one read delivers. Received UPDATEs are decoded here, on the reader's
        thread, once the router id is known: decoding is pure, and Python lets this thread
        run while the owner waits on the kernel for its writes (most of a burst is both)."""
        router_id = None if self._decoding_held else self._ahead
        if router_id is None:
            return [line + b"\n" for line in lines]
        out: list[Line] = []
        for line in lines:
            if line.startswith(_WIRE):
                out += _parts(*_wire_update(line, router_id), len(line) + 1)
            else:
                out.append(line + b"\n")
        return out

    def decode(self, line: Line, router_id: str) -> tuple[list[BgpEvent], float | None]:
        with self._room:
            self._unread -= line.size if isinstance(line, Decoded) else len(line)
            if self._unread <= AHEAD_BYTES:
                self._room.notify()
        if isinstance(line, Decoded):
            return line.events, line.stamp
        if line.startswith(_WIRE) or line.startswith(_EVENTS):
            return _wire_update(line, router_id)
        if line in (b"done\n", b"error\n", b"done", b"error"):
            return self._answered(line.startswith(b"done")), None
        if line.startswith(b"[") and encode.SESSIONS in self._pending:
            self._report_ack_next = True
        events = decode.parse_line(line.decode("utf-8", "replace"), router_id)
        stamp = None
        if events and (found := _TIME.search(line, 0, 200)):
            stamp = float(found.group(1))
        return events, stamp

    def _answered(self, ok: bool) -> list[BgpEvent]:
        if not self._pending:
            return []  # an answer to a command of a predecessor, or acks turned off
        sent: Sent = encode.SESSIONS
        if self._report_ack_next:
            self._report_ack_next = False
            self._pending.remove(encode.SESSIONS)
        elif self._pending[0] != encode.SESSIONS:
            sent = self._pending.popleft()
        else:
            # The oldest unanswered line is a report request: this ack is a later line's.
            index = next((i for i, x in enumerate(self._pending) if x != encode.SESSIONS), None)
            if index is None:
                return []
            sent = self._pending[index]
            del self._pending[index]
        if sent == encode.REFRESH:
            self._release()
        elif not self._pending:
            self._refresh_if_wanted()
        if ok:
            return []
        self.refused += 1
        if isinstance(sent, AdvertChange):
            return [AdvertRefused(sent)]
        if isinstance(sent, tuple):
            # one answer for a whole batch line: every change in it is planned again
            batch = cast("tuple[AdvertChange, ...]", sent)  # an AdvertChange went above
            return [AdvertRefused(change) for change in batch]
        log.warning("ExaBGP refused %r (see its log)", sent)
        return []

    def send(self, changes: Sequence[AdvertChange]) -> None:
        if not changes:
            return
        if self._refresh_sent is not None:
            if time.monotonic() - self._refresh_sent < REFRESH_WAIT:
                self._held.extend(changes)
                return
            log.warning("ExaBGP did not answer the route refresh: sending on")
            self._release()
        lines = encode.batches(changes)
        self._write([line for line, _ in lines], [chunk for _, chunk in lines])

    def _release(self) -> None:
        self._refresh_sent = None
        held, self._held = self._held, []
        self.send(held)

    def begin_sync(self) -> None:
        self._write([encode.SYNC_BEGIN], [encode.SYNC_BEGIN])

    def end_sync(self) -> None:
        self._write([encode.SYNC_END], [encode.SYNC_END])

    def ask_refresh(self) -> None:
        self._refresh_wanted = True
        self._refresh_if_wanted()

    def _refresh_if_wanted(self) -> None:
        if self._refresh_wanted and not self._pending:
            self._refresh_wanted = False
            self._refresh_sent = time.monotonic()
            self._write([encode.REFRESH], [encode.REFRESH])

    def ask_sessions(self) -> None:
        self._write([encode.SESSIONS], [encode.SESSIONS])

    def reset_session(self, peer: str) -> None:
        line = encode.reset(peer)
        self._write([line], [line])

    def _write(self, lines: list[str], what: Sequence[Sent]) -> None:
        self._pending.extend(what)
        self.stdout.write("".join(f"{line}\n" for line in lines).encode())
        self.stdout.flush()


def _parts(events: list[BgpEvent], stamp: float | None, size: int) -> list[Decoded]:
    """A decoded line's events in parts of about PART_ROUTES routes, split between events
    (an UPDATE's run is one): a line holds up to ~3,400 routes, and the owner closes a
    round, so that the kernel starts on it, only between two items. The first part counts
    the line's bytes, the last carries its stamp (one latency sample a line, as before)."""
    parts: list[Decoded] = []
    start = count = 0
    for at, event in enumerate(events):
        count += route_count((event,))
        if count >= PART_ROUTES and at + 1 < len(events):
            parts.append(Decoded(events[start : at + 1], None, 0 if parts else size))
            start, count = at + 1, 0
    parts.append(Decoded(events[start:], stamp, 0 if parts else size))
    return parts


def _wire_update(line: bytes, router_id: str) -> tuple[list[BgpEvent], float | None]:
    """UPDATEs the launcher handed over, in the order they arrived, stamped with the time
    ExaBGP read them: ``wire-update PEER TIME HEX...`` (their bytes, decoded here) or
    ``wire-events PEER TIME PAYLOAD`` (decoded by the launcher: wire_records). All their
    events at once, or one ``LineRejected`` for a line that is neither."""
    try:
        kind, peer_field, stamp, *fields = line.split()
        when = float(stamp)
        peer = peer_field.decode("ascii")
        if kind == _EVENTS[:-1]:
            if len(fields) != 1:
                raise ValueError("not one payload")
            events = decode_events(fields[0], peer)
        else:
            raw = [unhexlify(body) for body in fields]  # all or nothing: checked before use
            if not raw:
                raise ValueError("no UPDATE")
            events = [event for body in raw for event in decode_update(body, peer, router_id)]
    except ValueError:  # also UnicodeDecodeError, binascii.Error, BadRecords
        return [LineRejected("malformed-line", f"{line[:120]!r}")], None
    return events, when if events else None
