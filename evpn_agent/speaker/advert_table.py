"""The launcher's advert table: every route the agent cores announce, and what each peer
still has to be sent. Pure: no ExaBGP; the launcher ties it to ExaBGP's sessions.

The table is the source of truth. A peer's queue holds only route keys to look at; what
is sent for a key is decided when the peer's session sends (:meth:`PeerQueue.take`): the
table's advert if it has one and the peer was not sent exactly that, else a withdraw if
the peer was sent the route, else nothing. So the last command for a route wins, a
withdraw never reaches a peer that was never sent the route, and a new session or a route
refresh sends exactly what the table holds.

Routes are keyed by :func:`wire_encode.route_of` (the NLRI without its label) and kept
as :class:`wire_encode.Prepared`: each route is encoded once, when it arrives, and packed
from those bytes for every peer it is sent to. The table outlives the agent cores: a
respawned core re-announces between :meth:`AdvertTable.begin` and :meth:`AdvertTable.end`
(mark and sweep).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from evpn_agent.speaker.wire_encode import Prepared, withdrawal


class PeerQueue:
    """One peer's view: the routes its session was sent, the keys it has to look at."""

    __slots__ = ("bracket", "pending", "refresh", "sent")

    def __init__(self) -> None:
        self.sent: dict[bytes, Prepared] = {}  # route key -> the announce this session was sent
        self.pending: dict[bytes, None] = {}  # route keys to look at, in arrival order
        self.refresh = False  # resend every route, even those sent unchanged
        self.bracket = False  # an enhanced route refresh: BoRR/EoRR around the resend

    def has_work(self) -> bool:
        # a refresh of an empty table still owes the peer its BoRR and EoRR
        return bool(self.pending) or self.bracket

    def new_session(self, routes: Iterable[bytes]) -> None:
        """A session came up: it was sent nothing, and is to be sent the whole table."""
        self.sent.clear()
        self.refresh = self.bracket = False
        self.pending = dict.fromkeys(routes)

    def resend(self, routes: Iterable[bytes], bracket: bool = False) -> None:
        """Route refresh: send every route of the table again (pending withdraws stay)."""
        self.refresh = True
        self.bracket = bracket
        self.pending.update(dict.fromkeys(routes))

    def take(self, routes: dict[bytes, Prepared]) -> list[Prepared]:
        """The changes to send now (one per route), given the table ``routes``; the queue
        is then empty."""
        pending, self.pending = self.pending, {}
        resend, self.refresh = self.refresh, False
        sent = self.sent
        changes: list[Prepared] = []
        for key in pending:
            item = routes.get(key)
            if item is not None:
                old = sent.get(key)
                if resend or old is None or old.change.advert != item.change.advert:
                    sent[key] = item
                    changes.append(item)
            else:
                previous = sent.pop(key, None)
                if previous is not None:
                    changes.append(withdrawal(previous))
        return changes


class AdvertTable:
    """Route key -> advert for every route the cores announce, and one queue per peer."""

    def __init__(self) -> None:
        self.routes: dict[bytes, Prepared] = {}  # announces only
        self.queues: dict[Hashable, PeerQueue] = {}
        self.unconfirmed: set[bytes] | None = None  # between begin() and end()

    def queue(self, peer: Hashable) -> PeerQueue:
        found = self.queues.get(peer)
        if found is None:
            found = self.queues[peer] = PeerQueue()
        return found

    def apply(
        self, changes: Sequence[tuple[bytes, Prepared | None]], peers: Iterable[Hashable]
    ) -> None:
        """Record ``(route key, prepared change)`` pairs and queue their keys for ``peers``.
        A withdraw may come as its key alone (None): the table holds what was sent."""
        routes = self.routes
        unconfirmed = self.unconfirmed
        for key, item in changes:
            if item is None or item.group is None:
                routes.pop(key, None)
            else:
                routes[key] = item
            if unconfirmed is not None:
                unconfirmed.discard(key)
        keys = dict.fromkeys(key for key, _ in changes)
        for peer in peers:
            self.queue(peer).pending.update(keys)

    def begin(self) -> None:
        self.unconfirmed = set(self.routes)

    def end(self) -> int:
        """Drop every route not re-announced since begin(), queue its withdraw for every
        peer; the number dropped."""
        stale = self.unconfirmed or set()
        self.unconfirmed = None
        for key in stale:
            del self.routes[key]
        if stale:
            keys = dict.fromkeys(stale)
            for queue in self.queues.values():
                queue.pending.update(keys)
        return len(stale)
