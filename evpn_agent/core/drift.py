"""Drift: our kernel entries differing from what the routes want although no change of
routes explains it (an entry deleted or added behind the agent's back, a write the kernel
lost or refused). Events cannot show it (the monitor drops every event on entries we own:
our writes' echoes), so a full dump does. The plan after a complete dump compares every
key; a write it needs for a key with no change pending is a repair. Some deletions do
come as events (flood entries, neighbours): an entry of ours that goes although we did not
remove it is drift too, and so is the write that restores it.

Repairs are counted by kind and action once the kernel acknowledges them; so are removals
of entries no route of this run ever backed (the sweep of what an earlier run left). Per
VNI we remember when a full comparison last found the kernel exactly as the routes want.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field

from evpn_agent.core.rib import Dirty
from evpn_agent.model import DelFdb, DelFlood, DelNeigh, Op
from evpn_agent.model.keys import VniIp, VniMac, VniVtep

KINDS = ("remote-mac", "flood", "neighbour")
ACTIONS = ("restored", "removed")


def counter_name(kind: str, action: str) -> str:
    return f"repairs:{kind}:{action}"


@dataclass(frozen=True, slots=True)
class Repair:
    vni: int
    kind: str  # one of KINDS
    action: str  # one of ACTIONS
    drift: bool  # found by a full comparison (else: a stale entry from before, swept)


@dataclass
class Drift:
    compare: Dirty = field(default_factory=Dirty)  # every key, after a dump: plan them
    checking: bool = False  # the dump was complete: the next plan is a check
    noticed: Dirty = field(default_factory=Dirty)  # ours, deleted by someone else (events)
    differs: set[int] = field(default_factory=set)  # VNIs that differ, in this check
    pending: dict[Op, Repair] = field(default_factory=dict)  # planned, not yet acked
    refused: dict[Op, Repair] = field(default_factory=dict)  # refused: counted when retried
    checked_at: dict[int, float] = field(default_factory=dict)
    matched_at: dict[int, float] = field(default_factory=dict)
    repaired_at: dict[int, float] = field(default_factory=dict)
    repairs: dict[int, Counter[str]] = field(default_factory=dict)  # VNI -> action -> n
    # the last full comparison found every VNI as the routes want it and repaired nothing
    # (cleared by anything it did not see: a write that failed, a deletion by others)
    all_matched: bool = False

    def dump_loaded(self, compare: Dirty, complete: bool) -> None:
        """A dump became the mirror: ``compare`` holds every key. An incomplete dump may
        lack entries that never changed: the plan still writes, but checks nothing."""
        self.compare.update(compare)
        self.checking = complete
        self.refused.clear()  # whatever is still wrong, this check finds again

    def take_compare(self) -> Dirty:
        compare, self.compare = self.compare, Dirty()
        return compare

    def watching(self) -> bool:
        """Whether any write of the coming plan may be a repair; if not, only removals and
        kept entries concern us (the writes of a burst of new routes are none of those)."""
        return self.checking or bool(self.refused) or bool(self.noticed)

    def planned(
        self,
        key: VniMac | VniVtep | VniIp,
        op: Op | None,
        *,
        kept: bool,
        explained: bool,
        wanted_before: bool,
    ) -> None:
        """One step of a plan that writes (``op``) or keeps a stale entry (``kept``);
        ``explained``: the key changed since the last plan (a route, a local MAC)."""
        unexplained = (self.checking and not explained) or key in (
            self.noticed.fdb
            if isinstance(key, VniMac)
            else self.noticed.flood
            if isinstance(key, VniVtep)
            else self.noticed.neigh
        )
        if op is not None:
            removal = isinstance(op, DelFdb | DelFlood | DelNeigh)
            repair = self.refused.pop(op, None) if self.refused else None
            if repair is None and (unexplained or (removal and not wanted_before)):
                repair = Repair(key.vni, _kind(key), "removed" if removal else "restored",
                                unexplained)  # fmt: skip
            if repair is not None:
                self.pending[op] = repair
        if self.checking and (kept or (op is not None and not explained)):
            self.differs.add(key.vni)

    def plan_done(self, vnis: Iterable[int], now: float) -> None:
        if self.checking:
            for vni in vnis:
                self.checked_at[vni] = now
                if vni not in self.differs:
                    self.matched_at[vni] = now
            self.all_matched = not self.differs and not self.pending
        elif self.noticed or self.pending:
            self.all_matched = False
        self.checking = False
        self.differs.clear()
        self.noticed = Dirty()

    def still_matched(self, vnis: Iterable[int], now: float) -> None:
        """A complete dump found the kernel exactly as we believed, with nothing pending
        since a comparison that matched: a check that matches, without comparing again."""
        for vni in vnis:
            self.checked_at[vni] = self.matched_at[vni] = now
        self.checking = False

    def applied(self, ops: Sequence[Op], failed: Set[Op], now: float) -> list[tuple[Op, Repair]]:
        """The repairs among ``ops`` that the kernel acknowledged."""
        done = []
        for op in ops:
            repair = self.pending.pop(op, None)
            if repair is None:
                continue
            if op in failed:
                self.refused[op] = repair
                continue
            done.append((op, repair))
            self.repaired_at[repair.vni] = now
            self.repairs.setdefault(repair.vni, Counter())[repair.action] += 1
        return done

    def forget_vni(self, vni: int) -> None:
        for table in (self.checked_at, self.matched_at, self.repaired_at, self.repairs):
            table.pop(vni, None)


def _kind(key: VniMac | VniVtep | VniIp) -> str:
    if isinstance(key, VniMac):
        return "remote-mac"
    return "flood" if isinstance(key, VniVtep) else "neighbour"
