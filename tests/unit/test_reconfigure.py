"""Live reconfiguration in the core: the plan from two configurations, and what applying it
does to the kernel ops and the adverts (only what the change requires)."""

from __future__ import annotations

import dataclasses

import pytest

from evpn_agent.config import parse
from evpn_agent.core import reconfigure
from evpn_agent.core.engine import Engine
from evpn_agent.core.reconfigure import Change, Running
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    BridgeDevice,
    Config,
    DadSettings,
    DelFdb,
    DelFlood,
    FdbEntry,
    ImetKey,
    ImetRoute,
    KernelSnapshot,
    MacKey,
    MacRoute,
    OtherLink,
    RouteAnnounced,
    RouteTarget,
    VxlanDevice,
)
from evpn_agent.model.settings import RouteReflector, VniTargets
from evpn_agent.speaker import encode

ME, RR, REMOTE = "192.0.2.21", "192.0.2.1", "192.0.2.22"
RUNNING = Running(router_id=ME, vtep_ip=ME)
BASE = f"local-as: 65000\nroute-reflectors: [{RR}]\nsweep-delay: 0\n"
HOST = "02:00:5e:00:00:21"
LINKS = (
    BridgeDevice(10, "br100", "02:00:00:00:00:10", False, True),
    VxlanDevice(11, "vxlan100", 100, ME, 10, False, True),
    OtherLink(12, "h100", 10, "veth", up=True),
    BridgeDevice(20, "br200", "02:00:00:00:00:20", False, True),
    VxlanDevice(21, "vxlan200", 200, ME, 20, False, True),
    OtherLink(22, "h200", 20, "veth", up=True),
)


def cfg(extra: str = "") -> Config:
    return parse(BASE + extra)


def engine(extra: str = "") -> Engine:
    e = Engine(cfg(extra), router_id=ME, vtep_ip=ME, now=0.0)
    learned = (FdbEntry(12, HOST, None, None, 10, 0, 0x02),)
    e.load_snapshot(KernelSnapshot(LINKS, learned, ()))
    take(e)
    return e


def mac(vni: int, n: int, rt: RouteTarget | None = None) -> MacRoute:
    m = f"02:00:5e:00:{vni // 100:02x}:{n:02x}"
    return MacRoute(
        MacKey(f"{REMOTE}:{vni}", 0, m, None), vni, REMOTE, (rt or RouteTarget(65000, vni),)
    )


def imet(vni: int) -> ImetRoute:
    return ImetRoute(ImetKey(f"{REMOTE}:{vni}", 0, REMOTE), vni, REMOTE, (RouteTarget(65000, vni),))


def take(e: Engine) -> tuple[set[object], list[str]]:
    work = e.take_work()
    e.kernel_applied(work.ops, [])
    return set(work.ops), sorted(encode.render(c) for c in work.changes)


def reload(e: Engine, extra: str) -> tuple[set[object], list[str]]:
    plan = reconfigure.diff(e.cfg, cfg(extra), RUNNING)
    assert plan.applicable, plan.refused
    reconfigure.apply(e, cfg(extra), plan)
    return take(e)


# -- the plan --------------------------------------------------------------------------


def test_same_file_plans_nothing() -> None:
    text = "vnis: [100]\nroute-targets: {100: {both: ['65000:1100']}}\nmetrics-address: 127.0.0.1:9"
    plan = reconfigure.diff(cfg(text), cfg(text), RUNNING)
    assert plan.changes == () and plan.refused == ()


OTHER_RR = "local-as: 65000\nsweep-delay: 0\nroute-reflectors: "


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "router-id: 192.0.2.99", "router-id"),
        (BASE + "vtep-ip: 192.0.2.99", "vtep-ip"),  # and the router-id derived from it
        (BASE + "local-address: 192.0.2.21", "local-address"),
        (BASE + "control-socket: /run/other.sock", "control-socket"),
        (BASE + "state-dir: /var/lib/other", "state-dir"),
        (BASE + "netlink-buffer-size: 1048576", "netlink-buffer-size"),
        (BASE.replace("65000", "65001"), "local-as"),
    ],
)
def test_restart_keys_are_refused_with_the_reason(text: str, key: str) -> None:
    new = parse(text + "\nlog-level: debug")  # a live change beside it is refused too
    plan = reconfigure.diff(cfg(), new, RUNNING)
    assert key == plan.refused[0].key
    assert all("needs evpn-agent restart" in r.reason for r in plan.refused)
    with pytest.raises(ValueError, match="refusals"):
        reconfigure.apply(engine(), new, plan)


def test_every_key_is_either_live_or_refused() -> None:
    """A key added to Config later must be put in a group, or reload would ignore it."""
    other = {
        "local_as": 65001,
        "route_reflectors": (RouteReflector("192.0.2.2"),),
        "router_id": "192.0.2.99",
        "vtep_ip": "192.0.2.99",
        "local_address": ME,
        "vnis": frozenset({100}),
        "route_targets": {100: VniTargets((RouteTarget(1, 1),), ())},
        "control_socket": "/run/x.sock",
        "state_dir": "/var/lib/x",
        "log_level": "debug",
        "log_destination": "syslog",
        "sweep_delay": 1.0,
        "reconcile_interval": 1.0,
        "reconcile_budget": 1.0,
        "netlink_buffer_size": 1 << 20,
        "metrics_address": "127.0.0.1:9",
        "route_hold_time": 1.0,
        "mac_limit_per_vni": 1,
        "mac_limit": 1,
        "duplicate_detection": DadSettings(max_moves=2),
    }
    keys = {f.name for f in dataclasses.fields(Config)} - {"source"}
    assert set(other) == keys
    for name, value in other.items():
        plan = reconfigure.diff(cfg(), dataclasses.replace(cfg(), **{name: value}), RUNNING)
        assert plan.changes or plan.refused, name


@pytest.mark.parametrize(
    ("reflectors", "what"),
    [
        (f"[{RR}, 192.0.2.2]", "+192.0.2.2"),
        ("[192.0.2.2]", f"+192.0.2.2 -{RR}"),
        (f"[{{address: {RR}, hold-time: 30}}]", f"~{RR}"),
    ],
)
def test_reflectors_change_live(reflectors: str, what: str) -> None:
    plan = reconfigure.diff(cfg(), parse(OTHER_RR + reflectors), RUNNING)
    assert plan.refused == ()
    assert [(c.key, c.new) for c in plan.changes] == [("route-reflectors", what)]
    state = engine()
    reconfigure.apply(state, parse(OTHER_RR + reflectors), plan)
    assert state.take_work().ops == []  # the core has nothing to write: the daemon's edge


def test_reflectors_in_another_order_are_no_change() -> None:
    plan = reconfigure.diff(
        parse(OTHER_RR + f"[{RR}, 192.0.2.2]"), parse(OTHER_RR + f"[192.0.2.2, {RR}]"), RUNNING
    )
    assert plan.refused == () and plan.changes == ()


def test_identity_set_to_what_runs_is_no_change() -> None:
    plan = reconfigure.diff(cfg(), cfg(f"router-id: {ME}\nvtep-ip: {ME}"), RUNNING)
    assert plan.refused == () and plan.changes == ()


def test_live_keys_are_listed_with_old_and_new_values() -> None:
    new = cfg(
        "log-level: debug\nmac-limit: 10\nroute-hold-time: 30\nreconcile-interval: 0\n"
        "reconcile-budget: 1\n"
        "duplicate-detection: {max-moves: 3, freeze: permanent}\nmetrics-address: 127.0.0.1:9\n"
        "route-targets: {100: {import: ['65000:1100']}}\nvnis: [100]"
    )
    plan = reconfigure.diff(cfg(), new, RUNNING)
    assert plan.refused == ()
    assert set(plan.changes) == {
        Change("log-level", "info", "debug"),
        Change("mac-limit", "1000000", "10"),
        Change("route-hold-time", "120", "30"),
        Change("reconcile-interval", "60", "0"),
        Change("reconcile-budget", "0.1", "1"),
        Change("duplicate-detection.max-moves", "5", "3"),
        Change("duplicate-detection.freeze", "off", "permanent"),
        Change("metrics-address", "(unset)", "127.0.0.1:9"),
        Change("route-targets.100", "(default)", "import 65000:1100"),
        Change("vnis", "(every bridged VXLAN device)", "100"),
    }


# -- applying it -----------------------------------------------------------------------


def test_new_import_target_withdraws_and_imports_exactly() -> None:
    e = engine()
    moved = mac(100, 2, RouteTarget(65000, 1100))  # stored, imported nowhere yet
    e.on_bgp([RouteAnnounced(RR, r) for r in (mac(100, 1), moved, imet(100), mac(200, 1))], 1)
    ops, _ = take(e)
    assert AddFdb(11, mac(100, 1).key.mac, REMOTE) in ops and len(ops) == 3
    ops, lines = reload(e, "route-targets: {100: {import: ['65000:1100']}}")
    # VNI 100 now imports only 65000:1100: the routes with 65000:100 go, the other comes
    assert ops == {
        DelFdb(11, mac(100, 1).key.mac, None),
        DelFlood(11, REMOTE),
        AddFdb(11, moved.key.mac, REMOTE),
    }
    assert lines == []  # export unchanged: our adverts stay as they are


def test_new_export_target_reannounces_in_place() -> None:
    e = engine()
    e.on_bgp([RouteAnnounced(RR, mac(100, 1))], 1)
    take(e)
    ops, lines = reload(e, "route-targets: {100: {export: ['65000:1100']}}")
    assert ops == set()  # import unchanged: the kernel is not touched
    assert lines == [
        f"announce evpn mac rd {ME}:100 mac {HOST} label 100 next-hop {ME} rt 65000:1100",
        f"announce evpn multicast rd {ME}:100 ip {ME} label 100 next-hop {ME} rt 65000:1100",
    ]


def test_vni_removed_then_added_touches_only_that_vni() -> None:
    e = engine()
    routes = [mac(100, 1), imet(100), mac(200, 1), imet(200)]
    e.on_bgp([RouteAnnounced(RR, r) for r in routes], 1)
    take(e)
    ops, lines = reload(e, "vnis: [100]")
    assert ops == {DelFdb(21, mac(200, 1).key.mac, None), DelFlood(21, REMOTE)}
    assert lines == [f"withdraw evpn multicast rd {ME}:200 ip {ME} label 200 next-hop {ME}"]
    assert set(e.vnis) == {100}
    ops, lines = reload(e, "vnis: [100, 200]")
    assert ops == {AddFdb(21, mac(200, 1).key.mac, REMOTE), AddFlood(21, REMOTE)}
    assert lines == [
        f"announce evpn multicast rd {ME}:200 ip {ME} label 200 next-hop {ME} rt 65000:200"
    ]


def test_unchanged_keys_plan_no_work() -> None:
    e = engine("vnis: [100, 200]")
    e.on_bgp([RouteAnnounced(RR, r) for r in (mac(100, 1), imet(200))], 1)
    take(e)
    assert reload(e, "vnis: [100, 200]\nlog-level: debug\nsweep-delay: 9") == (set(), [])
    assert e.peers.sweep_delay == 9 and e.cfg.log_level == "debug"


def test_mac_limits_bound_new_macs_only() -> None:
    e = engine()
    e.on_bgp([RouteAnnounced(RR, mac(100, n)) for n in (1, 2)], 1)
    take(e)
    reload(e, "mac-limit-per-vni: 2")
    e.on_bgp([RouteAnnounced(RR, mac(100, 3))], 2)
    assert take(e) == (set(), [])  # refused: the VNI holds 2
    assert e.counters["rejected:mac-limit"] == 1
    reload(e, "mac-limit-per-vni: 3")
    e.on_bgp([RouteAnnounced(RR, mac(100, 3))], 3)
    assert take(e)[0] == {AddFdb(11, mac(100, 3).key.mac, REMOTE)}


def test_duplicate_detection_and_hold_time_follow_the_file() -> None:
    e = engine()
    reload(e, "duplicate-detection: {max-moves: 2, time: 10, freeze: 30}\nroute-hold-time: 5")
    assert (e.dad.settings.max_moves, e.dad.settings.window, e.dad.settings.freeze) == (2, 10, 30)
    assert e.cfg.route_hold_time == 5
