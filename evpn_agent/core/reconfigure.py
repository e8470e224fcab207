"""Live reconfiguration: the running Config and a new one -> a plan of changes, and
applying the plan's core part to the engine's state.

``diff`` is one function per key group, each answering what changed and whether it can
change live. A group that cannot refuses with the reason; any refusal refuses the whole
reload, so nothing is half applied. ``apply`` changes only what the plan names: a new
route target re-imports stored routes and re-exports our adverts, a VNI leaving the list
retires only that VNI (its adverts withdrawn, our entries on its devices removed), and
the kernel sees only the ops those changes plan. The daemon applies the rest (logging,
metrics socket, reconcile timer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evpn_agent.core import observe
from evpn_agent.core.state import State
from evpn_agent.core.targets import Importer
from evpn_agent.model import AdvertKey, Config, DadSettings
from evpn_agent.model.settings import VniTargets

RESTART = "needs evpn-agent restart"


@dataclass(frozen=True, slots=True)
class Change:
    """A key that changes live, with its old and new value as the YAML file spells them."""

    key: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A key that cannot change without a restart."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Running:
    """What the agent resolved at start for keys a file may leave unset."""

    router_id: str
    vtep_ip: str


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    refused: tuple[Refusal, ...]

    @property
    def applicable(self) -> bool:
        return not self.refused

    def touches(self, *keys: str) -> bool:
        return any(c.key == k or c.key.startswith(f"{k}.") for c in self.changes for k in keys)


Group = Callable[[Config, Config, Running], list[Change | Refusal]]


def diff(old: Config, new: Config, running: Running) -> Plan:
    found: list[Change | Refusal] = []
    for group in GROUPS:
        found.extend(group(old, new, running))
    return Plan(
        tuple(f for f in found if isinstance(f, Change)),
        tuple(f for f in found if isinstance(f, Refusal)),
    )


# -- key groups ----------------------------------------------------------------------------


def _text(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _simple(key: str, old: object, new: object) -> list[Change | Refusal]:
    return [] if old == new else [Change(key, _text(old), _text(new))]


def identity(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    """Keys the BGP sessions, ExaBGP's configuration or the core's sockets are built from."""
    out: list[Change | Refusal] = []
    # Unset means "derive at start": the same as now unless what it derives from changes.
    vtep = new.vtep_ip or running.vtep_ip
    if vtep != running.vtep_ip:
        out.append(Refusal("vtep-ip", f"{RESTART} (the VTEP address, {running.vtep_ip})"))
    router_id = new.router_id or vtep
    if router_id != running.router_id:
        out.append(Refusal("router-id", f"{RESTART} (the BGP identifier, {running.router_id})"))
    for key, before, after, what in (
        ("local-as", old.local_as, new.local_as, "the BGP sessions' AS"),
        ("local-address", old.local_address, new.local_address, "the sessions' source"),
        ("control-socket", old.control_socket, new.control_socket, "where reload is asked"),
        ("state-dir", old.state_dir, new.state_dir, "ExaBGP's configuration, RD indexes"),
        (
            "netlink-buffer-size",
            old.netlink_buffer_size,
            new.netlink_buffer_size,
            "set when the kernel monitor's socket opens",
        ),
    ):
        if before != after:
            out.append(Refusal(key, f"{RESTART} ({what}: {_text(before)} -> {_text(after)})"))
    return out


def route_reflectors(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    """ExaBGP's neighbors change live (the daemon re-renders ExaBGP's file and has it
    reload): an added reflector's session comes up and gets our routes, a removed one's
    closes, a changed one's (password, hold time, port) restarts; the others stay up."""
    before = {rr.address: rr for rr in old.route_reflectors}
    after = {rr.address: rr for rr in new.route_reflectors}
    if before == after:
        return []  # the order of the list means nothing
    what = [f"+{a}" for a in after if a not in before]
    what += [f"-{a}" for a in before if a not in after]
    what += [f"~{a}" for a in after if a in before and after[a] != before[a]]
    return [Change("route-reflectors", ", ".join(sorted(before)), " ".join(what))]


def _targets_text(t: VniTargets | None) -> str:
    if t is None:
        return "(default)"
    parts = []
    if t.import_rts:
        parts.append("import " + ",".join(str(rt) for rt in t.import_rts))
    if t.export_rts:
        parts.append("export " + ",".join(str(rt) for rt in t.export_rts))
    return "; ".join(parts) or "(default)"


def route_targets(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    out: list[Change | Refusal] = []
    for vni in sorted(old.route_targets.keys() | new.route_targets.keys()):
        before, after = old.route_targets.get(vni), new.route_targets.get(vni)
        if _targets_text(before) != _targets_text(after):
            out.append(Change(f"route-targets.{vni}", _targets_text(before), _targets_text(after)))
    return out


def vnis(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    if old.vnis == new.vnis:
        return []

    def text(v: frozenset[int] | None) -> str:
        return "(every bridged VXLAN device)" if v is None else ",".join(map(str, sorted(v)))

    return [Change("vnis", text(old.vnis), text(new.vnis))]


def limits(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    return _simple("mac-limit-per-vni", old.mac_limit_per_vni, new.mac_limit_per_vni) + _simple(
        "mac-limit", old.mac_limit, new.mac_limit
    )


def _freeze(d: DadSettings) -> str:
    if d.freeze is None:
        return "off"
    return "permanent" if math.isinf(d.freeze) else f"{d.freeze:g}"


def duplicate_detection(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    a, b = old.duplicate_detection, new.duplicate_detection
    path = "duplicate-detection"
    return (
        _simple(f"{path}.max-moves", a.max_moves, b.max_moves)
        + _simple(f"{path}.time", a.window, b.window)
        + ([] if _freeze(a) == _freeze(b) else [Change(f"{path}.freeze", _freeze(a), _freeze(b))])
    )


def logging_keys(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    return _simple("log-level", old.log_level, new.log_level) + _simple(
        "log-destination", old.log_destination, new.log_destination
    )


def timers(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    out: list[Change | Refusal] = []
    for key, before, after in (
        ("sweep-delay", old.sweep_delay, new.sweep_delay),
        ("reconcile-interval", old.reconcile_interval, new.reconcile_interval),
        ("reconcile-budget", old.reconcile_budget, new.reconcile_budget),
        ("route-hold-time", old.route_hold_time, new.route_hold_time),
    ):
        out.extend(_simple(key, before, after))
    return out


def metrics(old: Config, new: Config, running: Running) -> list[Change | Refusal]:
    return _simple("metrics-address", old.metrics_address, new.metrics_address)


GROUPS: Sequence[Group] = (
    identity,
    route_reflectors,
    route_targets,
    vnis,
    limits,
    duplicate_detection,
    logging_keys,
    timers,
    metrics,
)


# -- applying to the core ------------------------------------------------------------------


def apply(s: State, new: Config, plan: Plan) -> None:
    """Make ``new`` the state's configuration; mark dirty only what the plan changes.

    MAC limits bound new MACs only (MACs held stay), the route hold time and the sweep
    delay count from when they started, duplicate marks already made stay.
    """
    if not plan.applicable:
        raise ValueError("a plan with refusals cannot be applied")
    old = s.cfg
    s.cfg = new
    s.peers.sweep_delay = new.sweep_delay
    s.dad.settings = new.duplicate_detection
    if plan.touches("vnis"):
        s.view.wanted = new.vnis
        observe.relink(s)  # new VNIs start serving, removed ones retire
    if plan.touches("vnis", "route-targets"):
        overrides = {v: t.import_rts for v, t in new.route_targets.items()}
        s.importer = Importer(s.view.vnis.keys(), overrides)
        s.rib.reimport(s.import_rts, s.dirty)  # only paths whose VNI changes move
    for vni in s.view.vnis:
        before, after = old.route_targets.get(vni), new.route_targets.get(vni)
        if _targets_text(before) != _targets_text(after):
            # re-exported with the new RTs: same NLRI, announced again in place
            s.dirty_adverts.add(AdvertKey(vni, "", None))
            s.dirty_adverts.update(s.adverts.keys_of_vni(vni))
