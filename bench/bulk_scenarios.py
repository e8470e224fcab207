"""The scenarios of bench_bulk.py: what each sends or learns, at full and smoke size."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    """``kind`` "receive": the generator announces ``routes`` type 2 (plus one type 3 per
    VNI and VTEP) over ``vnis`` VNIs from ``vteps`` emulated VTEPs, through the RR, to the
    VTEP under test, then withdraws them. ``kind`` "advertise": ``routes`` local MACs
    appear on host ports of the VTEP under test (one port per VNI), then go; another FRR
    VTEP counts them in its kernel."""

    name: str
    kind: str
    routes: int
    vnis: int
    vteps: int = 1
    description: str = ""

    @property
    def type3_routes(self) -> int:
        return self.vnis * self.vteps if self.kind == "receive" else 0


FULL = (
    Scenario(
        "receive-10k", "receive", 10_000, 100,
        description="receive 10,000 type-2 over 100 VNIs (+100 type-3) with the session up, "
        "then withdraw them",
    ),
    Scenario(
        "receive-100k", "receive", 100_000, 100,
        description="receive 100,000 type-2 over 100 VNIs (+100 type-3) with the session up, "
        "then withdraw them",
    ),
    Scenario(
        "receive-1000vni", "receive", 31_000, 1_000, 31,
        description="62,000 routes over 1,000 VNIs from 31 emulated VTEPs (per VNI 31 type-3 "
        "+ 31 type-2, RT 65000:VNI each), received then withdrawn",
    ),
    Scenario(
        "advertise-10k", "advertise", 10_000, 10,
        description="10,000 local MACs appear at once on host ports (10 VNIs) of the VTEP "
        "under test, until all are in another FRR VTEP's kernel; then removed",
    ),
    Scenario(
        "advertise-50k", "advertise", 50_000, 10,
        description="50,000 local MACs appear at once on host ports (10 VNIs) of the VTEP "
        "under test, until all are in another FRR VTEP's kernel; then removed",
    ),
)  # fmt: skip

# --quick: the same paths at a size that runs in seconds
QUICK_SIZES = {
    "receive-10k": (2_000, 100, 1),
    "receive-100k": (5_000, 100, 1),
    "receive-1000vni": (1_000, 100, 10),
    "advertise-10k": (2_000, 10, 1),
    "advertise-50k": (5_000, 10, 1),
}


def scenarios(names: list[str] | None, quick: bool) -> list[Scenario]:
    """The scenarios by name (all when ``names`` is empty), smoke-sized with ``quick``."""
    by_name = {s.name: s for s in FULL}
    unknown = [n for n in names or [] if n not in by_name]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [by_name[n] for n in names] if names else list(FULL)
    if quick:
        chosen = [
            replace(s, routes=r, vnis=v, vteps=k, description=f"smoke size of: {s.description}")
            for s in chosen
            for r, v, k in [QUICK_SIZES[s.name]]
        ]
    return chosen
