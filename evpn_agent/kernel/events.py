"""What the kernel monitor reports: past-tense facts about devices, FDB and neighbours."""

from __future__ import annotations

from dataclasses import dataclass

from evpn_agent.kernel.links import Link
from evpn_agent.kernel.neighbours import FdbEntry, NeighEntry


@dataclass(frozen=True, slots=True)
class LinkUpdated:
    link: Link


@dataclass(frozen=True, slots=True)
class LinkRemoved:
    ifindex: int
    name: str


@dataclass(frozen=True, slots=True)
class FdbUpdated:
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class FdbRemoved:
    entry: FdbEntry


@dataclass(frozen=True, slots=True)
class NeighUpdated:
    entry: NeighEntry


@dataclass(frozen=True, slots=True)
class NeighRemoved:
    entry: NeighEntry


@dataclass(frozen=True, slots=True)
class MonitorOverflowed:
    """Events were lost (ENOBUFS): dump and reconcile."""


KernelEvent = (
    LinkUpdated
    | LinkRemoved
    | FdbUpdated
    | FdbRemoved
    | NeighUpdated
    | NeighRemoved
    | MonitorOverflowed
)
