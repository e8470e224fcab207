"""The launcher's advert table: every route the agent cores announce, and what each peer
still has to be sent. Pure: no ExaBGP; the launcher ties it to ExaBGP's sessions.

The table is the source of truth. A peer's queue holds only route keys to look at; what
is sent for a key is decided when the peer's session sends (:meth:`PeerQueue.take`): the
table's advert if it has one and the peer was not sent exactly that, else a withdraw if
the peer was sent the route, else nothing. So the last command for a route wins, a
withdraw never reaches a peer that was never sent the route, and a new session or a route
refresh sends exactly what the table holds.

Routes are keyed by :func:`wire_encode.route_of` (the NLRI without its label). The table
outlives the agent cores: a respawned core re-announces between :meth:`AdvertTable.begin`
and :meth:`AdvertTable.end` (mark and sweep).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from evpn_agent.model import Advert, AdvertChange


class PeerQueue:
    """One peer's view: the routes its session was sent, the keys it has to look at."""

    __slots__ = ("bracket", "pending", "refresh", "sent")

    def __init__(self) -> None:
        self.sent: dict[bytes, Advert] = {}  # route key -> the advert this session was sent
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

    def take(self, routes: dict[bytes, Advert]) -> list[AdvertChange]:
        """The changes to send now, given the table ``routes``; the queue is then empty."""
        pending, self.pending = self.pending, {}
        resend, self.refresh = self.refresh, False
        sent = self.sent
        changes: list[AdvertChange] = []
        for key in pending:
            advert = routes.get(key)
            if advert is not None:
                if resend or sent.get(key) != advert:
                    sent[key] = advert
                    changes.append(AdvertChange(advert))
            else:
                previous = sent.pop(key, None)
                if previous is not None:
                    changes.append(AdvertChange(previous, withdraw=True))
        return changes


class AdvertTable:
    """Route key -> advert for every route the cores announce, and one queue per peer."""

    def __init__(self) -> None:
        self.routes: dict[bytes, Advert] = {}
        self.queues: dict[Hashable, PeerQueue] = {}
        self.unconfirmed: set[bytes] | None = None  # between begin() and end()

    def queue(self, peer: Hashable) -> PeerQueue:
        found = self.queues.get(peer)
        if found is None:
            found = self.queues[peer] = PeerQueue()
        return found

    def apply(
        self, changes: Sequence[tuple[bytes, AdvertChange]], peers: Iterable[Hashable]
    ) -> None:
        """Record ``(route key, change)`` pairs and queue their keys for ``peers``."""
        routes = self.routes
        unconfirmed = self.unconfirmed
        for key, change in changes:
            if change.withdraw:
                routes.pop(key, None)
            else:
                routes[key] = change.advert
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
