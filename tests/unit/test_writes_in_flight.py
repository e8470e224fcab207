"""A batch of kernel writes in flight: the next round is planned while the kernel works, against
a mirror that counts the batch as done; what the kernel refuses is put back and retried."""

from __future__ import annotations

from evpn_agent.model import AddFdb, AddFlood, DelFdb, LinkRemoved, RouteAnnounced, RoutesWithdrawn
from evpn_agent.model.keys import DeviceMac
from tests.unit.test_state import RR, VX, imet, mac_route, make

OTHER_VTEP = "192.0.2.23"
ENTRY = DeviceMac(VX, mac_route().key.mac, None)


def test_a_round_planned_while_a_batch_is_in_flight_does_not_write_it_again() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1)
    ops = state.take_kernel_ops()
    written = state.kernel_submitted(ops)
    # The same routes again (a refresh) while the kernel still works on the batch.
    state.on_bgp([RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1.1)
    assert state.take_kernel_ops() == []
    state.kernel_settled(written, [])
    assert state.mirror.fdb_dst(ENTRY) == "192.0.2.22"
    assert state.counters["kernel-ops"] == 2


def test_a_refused_write_is_put_back_and_retried() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    ops = state.take_kernel_ops()
    written = state.kernel_submitted(ops)
    assert state.mirror.fdb_dst(ENTRY) == "192.0.2.22"  # counted as done while in flight
    state.kernel_settled(written, ops)
    assert state.mirror.fdb_dst(ENTRY) is None
    assert state.counters["kernel-failures"] == 1
    state.tick(3.0)  # past the first backoff
    assert state.take_kernel_ops() == ops


def test_a_refused_move_puts_back_the_old_vtep() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    state.kernel_applied(state.take_kernel_ops(), [])
    state.on_bgp([RouteAnnounced(RR, mac_route(vtep=OTHER_VTEP, seq=1))], 2)
    ops = state.take_kernel_ops()
    assert ops == [AddFdb(VX, ENTRY.mac, OTHER_VTEP)]
    state.kernel_settled(state.kernel_submitted(ops), ops)
    assert state.mirror.fdb_dst(ENTRY) == "192.0.2.22"


def test_a_refused_write_does_not_undo_a_later_one_of_the_batch() -> None:
    state = make()
    first, later = AddFdb(VX, ENTRY.mac, "192.0.2.22"), AddFdb(VX, ENTRY.mac, OTHER_VTEP)
    written = state.kernel_submitted([first, later])
    state.kernel_settled(written, [first])
    assert state.mirror.fdb_dst(ENTRY) == OTHER_VTEP
    # ... and when both are refused, the entry is as before the batch: absent
    written = state.kernel_submitted([DelFdb(VX, ENTRY.mac), first])
    state.kernel_settled(written, [DelFdb(VX, ENTRY.mac), first])
    assert state.mirror.fdb_dst(ENTRY) == OTHER_VTEP


def test_a_refused_removal_puts_the_entry_back() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1)
    state.kernel_applied(state.take_kernel_ops(), [])
    state.on_bgp([RoutesWithdrawn(RR, (mac_route().key,)), RoutesWithdrawn(RR, (imet().key,))], 2)
    ops = state.take_kernel_ops()
    assert len(ops) == 2
    state.kernel_settled(state.kernel_submitted(ops), ops)
    assert state.mirror.fdb_dst(ENTRY) == "192.0.2.22"
    assert state.mirror.flood[VX] == {"192.0.2.22"}
    assert ENTRY in state.touched_fdb  # still one this run wanted: removable by the retry


def test_a_refused_removal_on_a_device_gone_meanwhile_is_not_put_back() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1)
    state.kernel_applied(state.take_kernel_ops(), [])
    state.on_bgp([RoutesWithdrawn(RR, (mac_route().key,)), RoutesWithdrawn(RR, (imet().key,))], 2)
    ops = state.take_kernel_ops()
    written = state.kernel_submitted(ops)
    state.on_kernel([LinkRemoved(VX, "vxlan100")], 2.5)  # the writes failed: it was gone
    state.kernel_settled(written, ops)
    assert state.mirror.fdb_dst(ENTRY) is None and not state.mirror.flood.get(VX)
    state.tick(100.0)
    assert state.take_kernel_ops() == []  # nothing to retry on a device that is gone


def test_a_refused_flood_entry_is_put_back_as_absent() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, imet())], 1)
    ops = state.take_kernel_ops()
    assert ops == [AddFlood(VX, "192.0.2.22")]
    state.kernel_settled(state.kernel_submitted(ops), ops)
    assert "192.0.2.22" not in state.mirror.flood.get(VX, set())


def test_a_write_to_a_device_deleted_meanwhile_is_not_a_kernel_failure() -> None:
    """ENODEV: the VNI's devices went away while the batch was planned or written (its
    removal event is on its way). Counted apart, not retried; other refusals still are."""
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1)
    ops = state.take_kernel_ops()
    assert len(ops) == 2
    gone, refused = ops
    state.kernel_settled(state.kernel_submitted(ops), ops, gone=[gone])
    assert state.counters["kernel-device-gone"] == 1
    assert state.counters["kernel-failures"] == 1
    assert state.counters["kernel-ops"] == 0
    state.tick(3.0)  # past the first backoff: only the other refusal is tried again
    assert state.take_kernel_ops() == [refused]
