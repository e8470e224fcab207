"""Our own advertisements: the routes this VTEP wants announced, and what was sent.

Declarative, like MetalLB's speaker: the engine states the desired route per key; this
table diffs it against what the speaker was told and yields only the changes. How a change
is spelled for the speaker is the speaker's business.
"""

from __future__ import annotations

from collections.abc import Iterable

from evpn_agent.core.sizes import TableSize, indexed, size_of
from evpn_agent.model import Advert, AdvertChange, AdvertKey, build


class AdvertTable:
    def __init__(self) -> None:
        self.sent: dict[AdvertKey, Advert] = {}  # changed here only (keeps _by_vni)
        self._by_vni: dict[int, set[AdvertKey]] = {}
        self.announced = 0
        self.withdrawn = 0
        self.mac_routes = 0  # keys in sent with a MAC: none, and no MAC needs asking about

    def size(self) -> TableSize:
        return indexed(size_of(self.sent), size_of(self._by_vni, 1))

    def set(self, key: AdvertKey, advert: Advert | None) -> list[AdvertChange]:
        """Changes that move the speaker from what it was told to ``advert`` (None: none)."""
        return self.set_many([(key, advert)])

    def set_many(self, wanted: Iterable[tuple[AdvertKey, Advert | None]]) -> list[AdvertChange]:
        """:meth:`set` for each (key, advert) in turn: the changes of them all, in order."""
        sent, by_vni = self.sent, self._by_vni
        changes: list[AdvertChange] = []
        announced = 0
        for key, advert in wanted:
            old = sent.get(key)
            if old == advert:
                continue
            if old is not None and (
                advert is None
                or (old.rd, old.vni, old.vtep) != (advert.rd, advert.vni, advert.vtep)
            ):
                # Same NLRI and label: the new announce replaces the old one in place.
                changes.append(build(AdvertChange, (old, True)))
                self.withdrawn += 1
            if advert is None:
                self._remove(key)
                continue
            if old is None:
                if key.mac:
                    self.mac_routes += 1
                keys = by_vni.get(key.vni)
                if keys is None:  # not setdefault: no new set per advert
                    keys = by_vni[key.vni] = set()
                keys.add(key)
            sent[key] = advert
            changes.append(build(AdvertChange, (advert, False)))
            announced += 1
        self.announced += announced
        return changes

    def forget(self, key: AdvertKey, advert: Advert) -> bool:
        """The speaker refused ``advert``: it was not sent after all. True if it was current."""
        if self.sent.get(key) != advert:
            return False
        self._remove(key)
        self.announced -= 1
        return True

    def keys_of_vni(self, vni: int) -> list[AdvertKey]:
        return list(self._by_vni.get(vni, ()))

    def _remove(self, key: AdvertKey) -> None:
        del self.sent[key]
        if key.mac:
            self.mac_routes -= 1
        keys = self._by_vni[key.vni]
        keys.discard(key)
        if not keys:
            del self._by_vni[key.vni]
