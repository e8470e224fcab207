"""The engine's tables in one record: every part of the core state, and the pending work.

Plain data with a few identity helpers; the modules that change it are ``observe``
(kernel observations), ``receive`` (speaker events), ``work`` (planning and what was
applied) and ``timers``. ``Engine`` puts their entry points together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from evpn_agent.core.adverts import AdvertTable
from evpn_agent.core.dad import DuplicateDetector
from evpn_agent.core.drift import Drift
from evpn_agent.core.local import LocalView, LocalVni
from evpn_agent.core.mirror import Mirror
from evpn_agent.core.peers import Peers
from evpn_agent.core.retries import Retries
from evpn_agent.core.rib import Dirty, Rib
from evpn_agent.core.sizes import TableSize, indexed, size_of, total
from evpn_agent.core.targets import Importer, default_export_rts, route_distinguisher
from evpn_agent.model import (
    Advert,
    AdvertKey,
    Config,
    ImetAdvert,
    Op,
    PathId,
    RouteDistinguisher,
    RouteTarget,
)
from evpn_agent.model.keys import DeviceIp, DeviceMac, VniIp, VniMac, VniVtep


@dataclass(frozen=True, slots=True)
class RetryKey:
    """A refused write or announce, by the dirty key that plans it again."""

    kind: str  # "fdb", "flood", "neigh" or "advert"
    key: VniMac | VniVtep | VniIp | AdvertKey


class State:
    def __init__(self, cfg: Config, *, router_id: str, vtep_ip: str, now: float) -> None:
        self.cfg = cfg
        self.router_id = router_id
        self.vtep_ip = vtep_ip
        self.rd_index: dict[int, int] = {}  # persisted by the caller (large VNIs)
        self.view = LocalView(cfg.vnis)
        self.importer = Importer((), {})
        self.rib = Rib(self.import_rts)
        self.mirror = Mirror()
        self.adverts = AdvertTable()
        self.peers = Peers(started=now, sweep_delay=cfg.sweep_delay)
        self.dad = DuplicateDetector(cfg.duplicate_detection)
        self.counters: Counter[str] = Counter()
        self.now = now
        self.held: set[PathId] = set()  # paths kept while no route reflector is up
        self.held_since: float | None = None
        self.dirty = Dirty()
        self.dirty_adverts: set[AdvertKey] = set()
        self.retired: list[Op] = []  # removals of a VNI that left, planned when it left
        # entries wanted at some point in this run: stale ones may go before the sweep
        self.touched_fdb: set[DeviceMac] = set()
        self.touched_flood: set[tuple[int, str]] = set()
        self.touched_neigh: set[DeviceIp] = set()
        self.retries: Retries[RetryKey] = Retries()
        self.drift = Drift()  # what full dumps found changed behind our back, and repairs

    def table_sizes(self) -> dict[str, TableSize]:
        """Every table of the core by name (``show memory``)."""
        touched = (self.touched_fdb, self.touched_flood, self.touched_neigh)
        return {
            **self.rib.sizes(),
            **self.mirror.sizes(),
            **self.view.sizes(),
            "adverts": self.adverts.size(),
            "kernel-keys-wanted": total(*(size_of(keys) for keys in touched)),
            "changes-to-plan": total(self.dirty.size(), size_of(self.dirty_adverts)),
            "mac-moves": indexed(size_of(self.dad.moves), size_of(self.dad.duplicates)),
            "kernel-retries": self.retries.size(),
        }

    @property
    def vnis(self) -> dict[int, LocalVni]:
        return self.view.vnis

    def rd(self, vni: int) -> RouteDistinguisher:
        return route_distinguisher(self.router_id, self.rd_index.get(vni, vni & 0xFFFF))

    def export_rts(self, vni: int) -> tuple[RouteTarget, ...]:
        override = self.cfg.route_targets.get(vni)
        if override is not None and override.export_rts:
            return override.export_rts
        return default_export_rts(self.cfg.local_as, vni)

    def import_rts(self, rts: tuple[RouteTarget, ...]) -> int | None:
        return self.importer.vni_for(rts)


def advert_key(advert: Advert) -> AdvertKey:
    if isinstance(advert, ImetAdvert):
        return AdvertKey(advert.vni, "", None)
    return AdvertKey(advert.vni, advert.mac, advert.ip)
