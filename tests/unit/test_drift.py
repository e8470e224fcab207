"""Drift made visible: entries changed behind the agent's back, found by a full dump,
repaired, counted by kind and action, logged once per reconcile, and per VNI the time the
kernel last matched the routes exactly. The engine as pure logic, time passed in."""

from __future__ import annotations

import logging

import pytest
from test_state import (
    BR,
    ME,
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_REACHABLE,
    REMOTE_MAC,
    RR,
    VX,
    AgentState,
    imet,
    links,
    mac_route,
    make,
)

from evpn_agent.control import show_text, views
from evpn_agent.metrics import Metrics
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    BridgeDevice,
    DelFdb,
    DelFlood,
    DelNeigh,
    EndOfRib,
    FdbEntry,
    FdbRemoved,
    ImetKey,
    ImetRoute,
    KernelSnapshot,
    MacKey,
    MacRoute,
    NeighEntry,
    NeighRemoved,
    Op,
    PeerOpened,
    RouteAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    SessionUp,
    VxlanDevice,
)
from evpn_agent.model.keys import DeviceIp

IP = "198.51.100.22"
VTEP = "192.0.2.22"
BOGUS_MAC, BOGUS_VTEP, BOGUS_IP = "02:00:5e:00:00:99", "192.0.2.99", "198.51.100.99"


def fdb(mac: str = REMOTE_MAC, dst: str = VTEP) -> FdbEntry:
    return FdbEntry(VX, mac, None, dst, None, NTF_SELF | NTF_EXT_LEARNED, NUD_REACHABLE)


def flood(dst: str = VTEP) -> FdbEntry:
    return FdbEntry(VX, "00:00:00:00:00:00", None, dst, None, NTF_SELF, NUD_NOARP | NUD_PERMANENT)


def neigh(ip: str = IP, mac: str = REMOTE_MAC) -> NeighEntry:
    return NeighEntry(BR, ip, mac, NTF_EXT_LEARNED, NUD_NOARP, None)


EVERYTHING = (fdb(), flood())  # what the routes below want, as the kernel shows it


def reconcile(
    state: AgentState,
    fdbs: tuple[FdbEntry, ...],
    neighs: tuple[NeighEntry, ...],
    now: float,
    failed: tuple[Op, ...] = (),
    complete: bool = True,
) -> set[Op]:
    """A full dump, then the plan and the kernel's answer, as the daemon's reconcile."""
    state.now = now
    state.load_snapshot(KernelSnapshot(links(), fdbs, neighs, complete))  # type: ignore[arg-type]
    ops = state.take_kernel_ops()
    state.kernel_applied(ops, failed)  # type: ignore[arg-type]
    return set(ops)  # type: ignore[arg-type]


def converged(**kwargs: object) -> AgentState:
    """The routes installed, the table complete (swept), a first reconcile taken."""
    state = make(**kwargs)  # type: ignore[arg-type]
    opened = PeerOpened(RR, graceful_restart=True, enhanced_refresh=True)
    routes = [RouteAnnounced(RR, r) for r in (mac_route(ip=IP), imet())]
    state.on_bgp([opened, SessionUp(RR), *routes, EndOfRib(RR)], 1)
    state.kernel_applied(state.take_kernel_ops(), [])  # type: ignore[arg-type]
    state.tick(5)
    assert state.peers.sweep_ok
    assert reconcile(state, EVERYTHING, (neigh(),), 6) == set()
    return state


def repairs(state: AgentState) -> dict[str, int]:
    return {k: v for k, v in state.counters.items() if k.startswith("repairs:")}


def vni_row(state: AgentState, now: float) -> dict[str, object]:
    [row] = views.vnis(state, None, now)
    return row


def test_entries_deleted_behind_our_back_are_restored_and_counted() -> None:
    state = converged()
    assert vni_row(state, 6)["kernelMatchedSecondsAgo"] == 0
    ops = reconcile(state, (), (), 10)
    assert ops == {
        AddFdb(VX, REMOTE_MAC, VTEP, None),
        AddFlood(VX, VTEP),
        AddNeigh(BR, IP, REMOTE_MAC),
    }
    assert repairs(state) == {
        "repairs:remote-mac:restored": 1,
        "repairs:flood:restored": 1,
        "repairs:neighbour:restored": 1,
    }
    row = vni_row(state, 12)
    # the check at 10 found a difference: the kernel last matched at 6
    assert (row["kernelCheckedSecondsAgo"], row["kernelMatchedSecondsAgo"]) == (2, 6)
    assert row["kernelRepairs"] == {"restored": 3, "removed": 0}
    assert row["kernelRepairedSecondsAgo"] == 2
    # repaired: the next check finds the kernel as the routes want it
    assert reconcile(state, EVERYTHING, (neigh(),), 20) == set()
    assert vni_row(state, 20)["kernelMatchedSecondsAgo"] == 0
    assert sum(repairs(state).values()) == 3


def test_entries_added_behind_our_back_are_removed_and_counted() -> None:
    state = converged()
    # not extern_learn: an operator's static entry, not ours
    foreign_static = FdbEntry(
        VX, "02:00:5e:00:00:88", None, "192.0.2.98", None, NTF_SELF, NUD_NOARP
    )
    dump = (*EVERYTHING, fdb(BOGUS_MAC, BOGUS_VTEP), flood(BOGUS_VTEP), foreign_static)
    ops = reconcile(state, dump, (neigh(), neigh(BOGUS_IP, BOGUS_MAC)), 10)
    assert ops == {DelFdb(VX, BOGUS_MAC, None), DelFlood(VX, BOGUS_VTEP), DelNeigh(BR, BOGUS_IP)}
    assert repairs(state) == {
        "repairs:remote-mac:removed": 1,
        "repairs:flood:removed": 1,
        "repairs:neighbour:removed": 1,
    }
    # an entry of ours pointed elsewhere is written back: restored
    assert reconcile(state, (fdb(dst=BOGUS_VTEP), flood()), (neigh(),), 11) == {
        AddFdb(VX, REMOTE_MAC, VTEP, None)
    }
    assert repairs(state)["repairs:remote-mac:restored"] == 1


def test_a_repair_the_kernel_refuses_is_counted_once_its_retry_succeeds() -> None:
    state = converged()
    add = AddFdb(VX, REMOTE_MAC, VTEP, None)
    assert add in reconcile(state, (flood(),), (neigh(),), 10, failed=(add,))
    assert repairs(state) == {}
    assert state.take_kernel_ops() == []
    state.tick(12)  # the backoff is over: planned again
    ops = state.take_kernel_ops()
    assert ops == [add]
    state.kernel_applied(ops, [])  # type: ignore[arg-type]
    assert repairs(state) == {"repairs:remote-mac:restored": 1}
    assert state.take_kernel_ops() == []


def test_what_a_route_change_explains_is_no_repair() -> None:
    state = converged()
    # a route arrives in the same round as the reconcile: its entry is no repair
    other = mac_route(mac="02:00:5e:00:00:44")
    state.on_bgp([RouteAnnounced(RR, other)], 10)
    assert AddFdb(VX, other.key.mac, VTEP, None) in reconcile(state, EVERYTHING, (neigh(),), 10)
    assert repairs(state) == {}
    assert vni_row(state, 10)["kernelMatchedSecondsAgo"] == 0


def test_an_incomplete_dump_proves_no_drift() -> None:
    state = converged()
    reconcile(state, (flood(),), (neigh(),), 10, complete=False)  # the MAC missing from it
    assert repairs(state) == {}
    assert vni_row(state, 10)["kernelCheckedSecondsAgo"] == 4  # not a check either


def test_stale_entries_keep_a_vni_unmatched_until_the_sweep_removes_them() -> None:
    state = make(fdb=(fdb(BOGUS_MAC, BOGUS_VTEP),))  # left by an earlier run
    assert vni_row(state, 0)["kernelCheckedSecondsAgo"] is None  # the first plan compares
    assert state.take_kernel_ops() == []
    assert vni_row(state, 0)["kernelCheckedSecondsAgo"] == 0
    assert vni_row(state, 0)["kernelMatchedSecondsAgo"] is None  # a stale entry is kept
    state.on_bgp([PeerOpened(RR, False, False), SessionUp(RR), RouteAnnounced(RR, imet())], 1)
    state.kernel_applied(state.take_kernel_ops(), [])  # type: ignore[arg-type]
    state.tick(10)  # quiet period over: table complete, sweep
    ops = state.take_kernel_ops()
    assert ops == [DelFdb(VX, BOGUS_MAC, None)]
    state.kernel_applied(ops, [])  # type: ignore[arg-type]
    assert repairs(state) == {"repairs:remote-mac:removed": 1}
    assert reconcile(state, (flood(),), (), 20) == set()
    assert vni_row(state, 20)["kernelMatchedSecondsAgo"] == 0


def test_one_log_line_per_reconcile_with_a_sample(caplog: pytest.LogCaptureFixture) -> None:
    state = converged()
    macs = [f"02:00:5e:00:01:{i:02x}" for i in range(5)]
    dump = (*EVERYTHING, *(fdb(m, BOGUS_VTEP) for m in macs))
    with caplog.at_level(logging.INFO, logger="evpn_agent.core.work"):
        reconcile(state, dump, (neigh(),), 10)
    [record] = [r for r in caplog.records if "differed" in r.getMessage()]
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "VNI 100" in text and "5 remote-mac removed" in text
    assert text.count("DelFdb: bridge fdb del") == 3  # a sample, not every entry


def test_show_vni_detail_and_metrics_tell_the_drift() -> None:
    state = converged()
    reconcile(state, (flood(),), (neigh(),), 10)
    text = show_text.vni_detail(views.vnis(state, None, 15))
    assert "Kernel: differed from the routes at the last check, 5s ago" in text
    assert "(last matched 9s ago)" in text
    assert "Kernel repairs: 1 restored, 0 removed, the last 5s ago" in text
    rendered = Metrics(lambda: state).render().decode()
    assert 'evpn_agent_kernel_repairs_total{action="restored",kind="remote-mac"} 1.0' in rendered
    assert 'evpn_agent_kernel_repairs_total{action="removed",kind="flood"} 0.0' in rendered
    assert 'evpn_agent_kernel_matched_age_seconds{vni="100"}' in rendered


def test_a_deletion_the_kernel_reports_is_drift_and_our_own_echo_is_not() -> None:
    state = converged()
    # someone deletes our flood entry and neighbour; the kernel tells (these events pass
    # the echo filter): restored at once, and counted
    state.on_kernel([FdbRemoved(flood()), NeighRemoved(neigh())], 10)
    ops = state.take_kernel_ops()
    assert set(ops) == {AddFlood(VX, VTEP), AddNeigh(BR, IP, REMOTE_MAC)}
    state.kernel_applied(ops, [])
    assert repairs(state) == {"repairs:flood:restored": 1, "repairs:neighbour:restored": 1}
    # a withdraw removes them; the echoes of our own removals are no drift
    state.on_bgp(
        [RoutesWithdrawn(RR, (imet().key,)), RoutesWithdrawn(RR, (mac_route(ip=IP).key,))], 11
    )
    state.kernel_applied(state.take_kernel_ops(), [])
    state.on_kernel([FdbRemoved(flood()), NeighRemoved(neigh())], 11)
    assert state.take_kernel_ops() == []
    assert sum(repairs(state).values()) == 2


def test_a_dump_equal_to_what_we_believe_is_a_match_without_comparing() -> None:
    """The periodic reconcile when nothing happened: no key is compared again (that is
    its whole idle cost), and the VNI counts as checked and matching."""
    state = converged()
    state.now = 30
    state.load_snapshot(KernelSnapshot(links(), EVERYTHING, (neigh(),), True))  # type: ignore[arg-type]
    assert not state.drift.compare and not state.drift.checking
    assert state.take_kernel_ops() == []
    row = vni_row(state, 30)
    assert (row["kernelCheckedSecondsAgo"], row["kernelMatchedSecondsAgo"]) == (0, 0)


def test_a_matching_dump_leaves_the_tables_holding_what_they_held() -> None:
    """The check keeps the objects it already had, not the dump's equal copies: those are
    all freed, so hours of periodic checks do not grow the process (it did, a step each)."""
    state = converged()
    mirror, links_before, fdb, neigh_table = (
        state.mirror,
        state.view.links,
        dict(state.view.fdb),
        dict(state.view.neigh),
    )
    keys = {id(k) for k in state.mirror.fdb_entries()}
    state.now = 30
    state.load_snapshot(KernelSnapshot(links(), EVERYTHING, (neigh(),), True))  # type: ignore[arg-type]
    assert not state.drift.compare  # the match without comparing
    assert state.mirror is mirror and state.view.links is links_before
    assert {id(k) for k in state.mirror.fdb_entries()} == keys
    assert state.view.fdb == fdb and state.view.neigh == neigh_table
    assert all(a is b for a, b in zip(state.view.fdb, fdb, strict=True))


def test_anything_the_last_comparison_did_not_see_compares_every_key_again() -> None:
    # the kernel differs from what we believe: a full comparison, which repairs it
    state = converged()
    assert reconcile(state, (fdb(dst=BOGUS_VTEP), flood()), (neigh(),), 10) == {
        AddFdb(VX, REMOTE_MAC, VTEP, None)
    }
    assert repairs(state) == {"repairs:remote-mac:restored": 1}
    # that check repaired something: the next one compares again (and matches)
    state.now = 20
    state.load_snapshot(KernelSnapshot(links(), EVERYTHING, (neigh(),), True))  # type: ignore[arg-type]
    assert state.drift.checking and state.drift.compare
    state.kernel_applied(state.take_kernel_ops(), [])  # type: ignore[arg-type]
    assert state.drift.all_matched
    # a write the kernel refused since: compare again, although the dump is as believed
    state.on_bgp([RoutesWithdrawn(RR, (mac_route(ip=IP).key,))], 21)
    ops = state.take_kernel_ops()
    state.kernel_applied(ops, ops)  # type: ignore[arg-type]
    assert not state.drift.all_matched


def many_vnis(vnis: int, macs: int) -> tuple[AgentState, tuple[object, ...]]:
    """A converged state with ``vnis`` VNIs of ``macs`` remote MACs each behind one VTEP,
    and its devices."""
    devices: list[object] = []
    for i in range(vnis):
        bridge, vxlan = 100 + 2 * i, 101 + 2 * i
        devices += [
            BridgeDevice(bridge, f"br{i}", f"02:00:00:00:01:{i:02x}", False, True),
            VxlanDevice(vxlan, f"vxlan{i}", 1000 + i, ME, bridge, False, True, None),
        ]
    state = make()
    state.load_snapshot(KernelSnapshot(tuple(devices), (), ()))  # type: ignore[arg-type]
    routes = []
    for i in range(vnis):
        vni, rd = 1000 + i, f"{VTEP}:{1000 + i}"
        rts = (RouteTarget(65000, vni),)
        routes.append(RouteAnnounced(RR, ImetRoute(ImetKey(rd, 0, VTEP), vni, VTEP, rts)))
        routes += [
            RouteAnnounced(RR, MacRoute(MacKey(rd, 0, vni_mac(i, j), None), vni, VTEP, rts, 0))
            for j in range(macs)
        ]
    opened = PeerOpened(RR, graceful_restart=True, enhanced_refresh=True)
    state.on_bgp([opened, SessionUp(RR), *routes, EndOfRib(RR)], 1)
    state.kernel_applied(state.take_kernel_ops(), [])  # type: ignore[arg-type]
    state.tick(5)
    assert state.take_kernel_ops() == []  # the sweep finds nothing stale
    return state, tuple(devices)


def vni_mac(i: int, j: int) -> str:
    return f"02:00:5e:{i:02x}:00:{j:02x}"


def test_a_full_comparison_lists_a_vnis_keys_only_when_it_plans_that_vni() -> None:
    """A dump compares every key of every VNI, and used to list them all at once: at 1,000
    VNIs ~130,000 key objects, alive until planned, among which the routes decoded
    meanwhile landed, pinning Python's memory (the core 13 MiB larger after its first
    reconcile during churn, for good). Now the comparison names the VNIs, and the plan
    lists one VNI's keys at a time; it repairs the same."""
    vnis, macs = 12, 20
    state, devices = many_vnis(vnis, macs)
    dump = [
        fdb(vni_mac(i, j), VTEP)._replace(ifindex=101 + 2 * i)
        for i in range(vnis)
        for j in range(1, macs)  # one MAC of every VNI was deleted behind our back
    ]
    # and VNI 1003's flood entry
    dump += [flood()._replace(ifindex=101 + 2 * i) for i in range(vnis) if i != 3]
    state.now = 10
    state.load_snapshot(KernelSnapshot(devices, tuple(dump), (), True))  # type: ignore[arg-type]
    compare = state.drift.compare
    assert compare.vnis == {1000 + i for i in range(vnis)}
    assert not (compare.fdb or compare.flood or compare.neigh)
    assert not state.dirty  # nor were the dump's entries listed one by one
    ops = state.take_kernel_ops()
    assert sorted(ops, key=repr) == sorted(  # type: ignore[type-var]
        [AddFdb(101 + 2 * i, vni_mac(i, 0), VTEP, None) for i in range(vnis)]
        + [AddFlood(107, VTEP)],
        key=repr,
    )
    state.kernel_applied(ops, [])
    assert repairs(state) == {"repairs:remote-mac:restored": vnis, "repairs:flood:restored": 1}


def test_a_rebuilt_mirror_keeps_the_bindings_it_held() -> None:
    """A dump that differs somewhere rebuilds the mirror: a binding the dump shows as the
    mirror held it keeps the mirror's MAC string, so the dump's copies all die with it."""
    state = converged()
    held = state.mirror.neigh_mac(DeviceIp(BR, IP))
    same = "".join(REMOTE_MAC)  # equal, another object
    assert same is not held
    reconcile(state, (fdb(),), (neigh(mac=same),), 10)  # the flood entry missing
    assert state.mirror.neigh_mac(DeviceIp(BR, IP)) is held
