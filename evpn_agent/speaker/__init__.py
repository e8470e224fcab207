"""The ExaBGP edge: everything that knows ExaBGP lives in this package.

- ``channel``: the API process's side of the pipe (stdin reader, stdout writer, acks tied
  to the commands they answer), behind the :class:`Speaker` port below;
- ``decode`` (ExaBGP's JSON into events), ``encode`` and ``grammar`` (our API lines);
- ``wire_decode``, ``wire_encode`` (with ``wire_attributes``, ``wire_format``): EVPN UPDATEs
  as bytes, both ways, for the bulk path (tested against ExaBGP's codec; not wired in yet);
- ``conf``: the rendered ExaBGP configuration; ``process``: starting ExaBGP;
- ``launcher``, ``compat`` and ``selftest``: ExaBGP itself, taught to announce EVPN (its
  internals behind a version gate, checked in-process before its main runs).

Importing this package does not import ExaBGP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from evpn_agent.model import AdvertChange, BgpEvent


class Decoded(NamedTuple):
    """A line the speaker's reader thread decoded already: its events and timestamp."""

    events: list[BgpEvent]
    stamp: float | None
    size: int = 0  # bytes of the line, newline included (the reader's account of its lead)


# What the speaker delivers per line: opaque to the daemon, which hands it back to decode().
Line = bytes | Decoded
# Lines from the speaker, in order, as many as one read brought; None: it closed.
Deliver = Callable[[list[Line] | None], None]


class Speaker(Protocol):
    """What the daemon needs of a BGP speaker (ExaBGP, or a fake in tests)."""

    def start(self, deliver: Deliver) -> None:
        """Start reading; ``deliver`` is called (from any thread) with the lines read, in
        order (one call per read, not per line), None at the end."""

    def decode(self, line: Line, router_id: str) -> tuple[list[BgpEvent], float | None]:
        """Events in one delivered line, and the speaker's timestamp of it if any."""

    def decode_ahead(self, router_id: str) -> None:
        """From now on, decode what needs no state of ours (received routes) on the reader's
        thread, as lines arrive: that work then overlaps the owner's kernel writes."""

    def hold_decoding(self, held: bool) -> None:
        """While held, deliver received routes undecoded (``decode`` decodes them when the
        owner takes them): the owner holds a whole kernel dump as objects meanwhile."""

    def send(self, changes: Sequence[AdvertChange]) -> None:
        """Announce or withdraw; a refusal comes back later as an ``AdvertRefused`` event."""

    def begin_sync(self) -> None:
        """What is sent until end_sync() is all we advertise: the speaker withdraws the rest
        (routes a predecessor announced that we no longer want)."""

    def end_sync(self) -> None: ...

    def ask_refresh(self) -> None:
        """Ask every peer to send its table again (route refresh)."""

    def ask_sessions(self) -> None:
        """Ask for the speaker's account of every session: ``SessionReported`` events."""

    def reset_session(self, peer: str) -> None:
        """Close the session with ``peer`` and connect again, as after any session loss
        (ExaBGP: a NOTIFICATION, Cease / administrative reset, unless graceful restart
        was negotiated: then only the connection closes, and the peer keeps our routes)."""
