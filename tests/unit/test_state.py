"""The engine as pure logic: kernel observations and BGP events in, ops and lines out."""

from __future__ import annotations

import pytest

from evpn_agent.config import parse
from evpn_agent.control import views
from evpn_agent.core.engine import Engine
from evpn_agent.core.rib import COMPACT_MIN
from evpn_agent.core.timers import COMPACT_QUIET
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    BridgeDevice,
    Config,
    DelFdb,
    DelFlood,
    DelNeigh,
    EndOfRib,
    FdbEntry,
    FdbRemoved,
    FdbUpdated,
    ImetKey,
    ImetRoute,
    KernelSnapshot,
    LinkRemoved,
    LinkUpdated,
    MacKey,
    MacRoute,
    NeighEntry,
    NeighRemoved,
    NeighUpdated,
    OtherLink,
    RouteAnnounced,
    RoutesAnnounced,
    RoutesWithdrawn,
    RouteTarget,
    SessionDown,
    SessionUp,
    VxlanDevice,
)
from evpn_agent.model.keys import BridgeMac, DeviceMac, VniMac
from evpn_agent.speaker import encode

ME = "192.0.2.21"
RR = "192.0.2.1"
BR, VX, PORT = 10, 11, 12
NUD_REACHABLE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x40, 0x80
NTF_SELF, NTF_EXT_LEARNED = 0x02, 0x10
HOST_MAC = "02:00:5e:00:00:21"
REMOTE_MAC = "02:00:5e:00:00:22"
RT = (RouteTarget(65000, 100),)


class AgentState(Engine):
    """The engine with the two queues the tests read: kernel ops, and changes as API lines."""

    def __init__(
        self, cfg: Config, *, router_id: str, vtep_ip: str, rd_index: dict[int, int], now: float
    ) -> None:
        super().__init__(cfg, router_id=router_id, vtep_ip=vtep_ip, now=now)
        self.rd_index = rd_index
        self._ops: list[object] = []
        self._lines: list[str] = []

    def _take(self) -> None:
        work = self.take_work()
        self._ops += work.ops
        self._lines += [encode.render(change) for change in work.changes]

    def take_kernel_ops(self) -> list[object]:
        self._take()
        ops, self._ops = self._ops, []
        return ops

    def take_bgp_lines(self) -> list[str]:
        self._take()
        lines, self._lines = self._lines, []
        return lines


def links(*, vlan_aware: bool = False) -> tuple[object, ...]:
    return (
        BridgeDevice(BR, "br100", "02:00:00:00:00:10", vlan_aware, True),
        VxlanDevice(VX, "vxlan100", 100, ME, BR, False, True, 10 if vlan_aware else None),
        OtherLink(PORT, "h-host", BR, "veth", up=True),
        OtherLink(13, "vlan10", None, "vlan", vlan_id=10, link=BR, up=True),
    )


def learned(mac: str = HOST_MAC, vlan: int | None = None, state: int = NUD_REACHABLE) -> FdbEntry:
    return FdbEntry(PORT, mac, vlan, None, BR, 0, state)


def make(
    *,
    vlan_aware: bool = False,
    fdb: tuple[FdbEntry, ...] = (),
    sweep_delay: float = 0,
    extra: str = "",
) -> AgentState:
    cfg = parse(
        f"local-as: 65000\nroute-reflectors: [{RR}, 192.0.2.2]\nsweep-delay: {sweep_delay}\n"
        + extra
    )
    state = AgentState(cfg, router_id=ME, vtep_ip=ME, rd_index={}, now=0.0)
    state.load_snapshot(KernelSnapshot(links(vlan_aware=vlan_aware), fdb, ()))  # type: ignore[arg-type]
    return state


def mac_route(
    mac: str = REMOTE_MAC, vtep: str = "192.0.2.22", seq: int = 0, ip: str | None = None
) -> MacRoute:
    return MacRoute(MacKey(f"{vtep}:100", 0, mac, ip), 100, vtep, RT, seq)


def imet(vtep: str = "192.0.2.22") -> ImetRoute:
    return ImetRoute(ImetKey(f"{vtep}:100", 0, vtep), 100, vtep, RT)


def flush(state: AgentState) -> list[object]:
    ops = state.take_kernel_ops()
    state.kernel_applied(ops, [])
    return list(ops)


def test_local_vni_and_mac_are_advertised() -> None:
    state = make(fdb=(learned(),))
    lines = sorted(state.take_bgp_lines())
    assert lines == [
        f"announce evpn mac rd {ME}:100 mac {HOST_MAC} label 100 next-hop {ME} rt 65000:100",
        f"announce evpn multicast rd {ME}:100 ip {ME} label 100 next-hop {ME} rt 65000:100",
    ]
    assert state.take_bgp_lines() == []  # nothing changed, nothing sent


def test_permanent_and_foreign_entries_are_not_local_macs() -> None:
    own = FdbEntry(PORT, "02:00:00:00:00:99", None, None, BR, 0, NUD_PERMANENT)
    port_self = FdbEntry(PORT, "33:33:00:00:00:01", None, None, None, NTF_SELF, NUD_PERMANENT)
    state = make(fdb=(own, port_self))
    assert all("mac rd" not in line for line in state.take_bgp_lines())


def test_remote_routes_become_frr_style_ops() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route(ip="198.51.100.22")), RouteAnnounced(RR, imet())], 1)
    assert sorted(map(repr, flush(state))) == sorted(
        map(
            repr,
            [
                AddFdb(VX, REMOTE_MAC, "192.0.2.22", None),
                AddNeigh(BR, "198.51.100.22", REMOTE_MAC),
                AddFlood(VX, "192.0.2.22"),
            ],
        )
    )
    assert flush(state) == []  # already installed: nothing to do
    state.on_bgp(
        [
            RoutesWithdrawn(RR, (mac_route(ip="198.51.100.22").key,)),
            RoutesWithdrawn(RR, (imet().key,)),
        ],
        2,
    )
    # The MAC+IP route was the MAC's only route: the MAC goes with it.
    assert set(flush(state)) == {
        DelNeigh(BR, "198.51.100.22"),
        DelFlood(VX, "192.0.2.22"),
        DelFdb(VX, REMOTE_MAC, None),
    }
    state.on_bgp([RoutesWithdrawn(RR, (mac_route().key,))], 2)
    assert flush(state) == []  # the MAC-only route was never announced: nothing to remove
    state.on_bgp([RouteAnnounced(RR, mac_route())], 3)
    assert flush(state) == [AddFdb(VX, REMOTE_MAC, "192.0.2.22", None)]
    state.on_bgp([RoutesWithdrawn(RR, (mac_route().key,))], 4)
    assert flush(state) == [DelFdb(VX, REMOTE_MAC, None)]


def test_vlan_aware_bridge_puts_the_vlan_on_every_entry() -> None:
    state = make(vlan_aware=True, fdb=(learned(vlan=10),))
    state.on_bgp([RouteAnnounced(RR, mac_route(ip="198.51.100.22"))], 1)
    ops = flush(state)
    assert AddFdb(VX, REMOTE_MAC, "192.0.2.22", 10) in ops
    assert AddNeigh(13, "198.51.100.22", REMOTE_MAC) in ops  # on the VLAN's SVI
    assert any(HOST_MAC in line for line in state.take_bgp_lines())
    # A MAC learned in another VLAN of the same bridge belongs to no local VNI.
    state.on_kernel([FdbUpdated(learned(mac="02:00:5e:00:00:77", vlan=20))])
    assert not any("02:00:5e:00:00:77" in line for line in state.take_bgp_lines())
    state.on_bgp([RoutesWithdrawn(RR, (mac_route(ip="198.51.100.22").key,))], 2)
    assert set(flush(state)) == {DelFdb(VX, REMOTE_MAC, 10), DelNeigh(13, "198.51.100.22")}


def test_route_for_a_vni_created_later_is_installed_then() -> None:
    state = make()
    route = MacRoute(MacKey("192.0.2.22:300", 0, REMOTE_MAC, None), 300, "192.0.2.22",
                     (RouteTarget(65000, 300),))  # fmt: skip
    state.on_bgp([RouteAnnounced(RR, route)], 1)
    assert flush(state) == []
    assert state.counters["rejected:vni-not-local"] == 1
    state.on_kernel(
        [
            LinkUpdated(BridgeDevice(20, "br300", "02:00:00:00:00:20", False, True)),
            LinkUpdated(VxlanDevice(21, "vxlan300", 300, ME, 20, False, True)),
        ]
    )
    assert flush(state) == [AddFdb(21, REMOTE_MAC, "192.0.2.22", None)]
    assert any("multicast" in line and "label 300" in line for line in state.take_bgp_lines())


def test_removed_vni_withdraws_and_cleans_up() -> None:
    state = make(fdb=(learned(),))
    state.take_bgp_lines()
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    flush(state)
    # The VXLAN device leaves the bridge (still exists): our entries on it must go.
    state.on_kernel([LinkUpdated(VxlanDevice(VX, "vxlan100", 100, ME, None, False, True))])
    assert flush(state) == [DelFdb(VX, REMOTE_MAC, None)]
    lines = sorted(state.take_bgp_lines())
    assert [line.split()[2] for line in lines] == ["mac", "multicast"]
    assert all(line.startswith("withdraw evpn") for line in lines)
    state.on_kernel([LinkRemoved(VX, "vxlan100")])
    assert flush(state) == [] and views.vnis(state) == []


def test_own_vtep_as_next_hop_is_rejected() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route(vtep=ME)), RouteAnnounced(RR, imet(ME))], 1)
    assert flush(state) == []
    assert state.counters["rejected:own-vtep"] == 2


def test_session_loss_removes_exactly_what_it_installed() -> None:
    state = make(extra="route-hold-time: 0\n")
    state.on_bgp([SessionUp(RR), RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 1)
    flush(state)
    state.on_bgp([SessionDown(RR, "hold timer expired")], 2)
    assert set(flush(state)) == {DelFdb(VX, REMOTE_MAC, None), DelFlood(VX, "192.0.2.22")}


RR2 = "192.0.2.2"


def test_two_reflectors_then_none_holds_routes_for_the_hold_time() -> None:
    state = make(extra="route-hold-time: 30\n")
    both = [RouteAnnounced(rr, r) for rr in (RR, RR2) for r in (mac_route(), imet())]
    state.on_bgp([SessionUp(RR), SessionUp(RR2), *both], 1)
    assert len(flush(state)) == 2
    state.on_bgp([SessionDown(RR, "stopped")], 2)
    assert flush(state) == []  # RR2 still holds every route
    state.on_bgp([SessionDown(RR2, "stopped")], 3)
    state.tick(20)
    assert flush(state) == []  # no reflector left: keep forwarding for the hold time
    state.tick(34)
    assert set(flush(state)) == {DelFdb(VX, REMOTE_MAC, None), DelFlood(VX, "192.0.2.22")}


def test_reflector_back_keeps_what_it_repeats_and_drops_the_rest() -> None:
    state = make()
    other = mac_route(mac="02:00:5e:00:00:33")
    state.on_bgp([SessionUp(RR), *(RouteAnnounced(RR, r) for r in (mac_route(), other, imet()))], 1)
    flush(state)
    state.on_bgp([SessionDown(RR, "peer reset")], 2)
    assert flush(state) == []
    state.on_bgp([SessionUp(RR), RouteAnnounced(RR, mac_route()), RouteAnnounced(RR, imet())], 3)
    assert flush(state) == []  # the same routes again: nothing to rewrite
    state.on_bgp([EndOfRib(RR)], 4)
    assert flush(state) == [DelFdb(VX, "02:00:5e:00:00:33", None)]


def test_mac_limits_refuse_new_macs_and_keep_existing() -> None:
    state = make(extra="mac-limit-per-vni: 2\n")
    macs = [mac_route(mac=f"02:00:5e:00:01:{i:02x}") for i in range(4)]
    state.on_bgp([RouteAnnounced(RR, r) for r in macs], 1)
    assert len(flush(state)) == 2
    assert state.counters["rejected:mac-limit"] == 2
    # An update of a MAC already held is no new entry: accepted.
    state.on_bgp([RouteAnnounced(RR, mac_route(mac=macs[0].key.mac, vtep="192.0.2.23", seq=1))], 2)
    assert flush(state) == [AddFdb(VX, macs[0].key.mac, "192.0.2.23", None)]
    assert state.counters["rejected:mac-limit"] == 2


def test_a_run_of_announces_does_what_the_same_routes_one_by_one_do() -> None:
    """Records lines come as runs (RoutesAnnounced), UPDATEs a route at a time: the RIB,
    the kernel, the counters and the refusals are the same either way, in order."""
    other_rt = (RouteTarget(65000, 999),)  # imported nowhere
    routes = [
        mac_route(mac=f"02:00:5e:00:01:{i:02x}") for i in range(3)
    ] + [  # the third MAC over the limit; our own VTEP; not imported; a move; a flood entry
        mac_route(vtep=ME),
        MacRoute(MacKey("192.0.2.24:9", 0, "02:00:5e:00:02:01", None), 999, "192.0.2.24", other_rt),
        mac_route(mac="02:00:5e:00:01:00", vtep="192.0.2.23", seq=1),
        imet(),
    ]
    one_by_one, as_run = make(extra="mac-limit-per-vni: 2\n"), make(extra="mac-limit-per-vni: 2\n")
    one_by_one.on_bgp([RouteAnnounced(RR, r) for r in routes], 1)
    as_run.on_bgp([RoutesAnnounced(RR, tuple(routes))], 1)
    ops = flush(one_by_one)
    assert ops and flush(as_run) == ops
    assert as_run.counters == one_by_one.counters
    assert as_run.counters["routes-received"] == 5
    for reason in ("mac-limit", "own-vtep", "vni-not-local"):
        assert as_run.counters[f"rejected:{reason}"] == 1, reason
    assert as_run.rib.paths == one_by_one.rib.paths
    assert as_run.peers.last_route_change == 1


@pytest.mark.parametrize("held", [0, 2])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        ("mac-limit-per-vni: 4\n", 4),
        ("mac-limit: 4\n", 4),
        ("mac-limit-per-vni: 6\nmac-limit: 5\n", 5),
    ],
)
def test_a_run_near_the_mac_limits_takes_what_routes_one_by_one_would(
    held: int, size: int, limits: str, limit: int
) -> None:
    """A run that cannot reach a limit is checked once per VNI, one that can route by
    route: below, at and over the limits, the same MACs taken and refused either way."""
    before = [mac_route(mac=f"02:00:5e:00:03:{i:02x}") for i in range(held)]
    run = [mac_route(mac=f"02:00:5e:00:01:{i:02x}") for i in range(size)]
    run += [mac_route(mac=r.key.mac, vtep="192.0.2.23", seq=1) for r in before[:1]]  # a move
    one_by_one, as_run = make(extra=limits), make(extra=limits)
    for state in (one_by_one, as_run):
        state.on_bgp([RoutesAnnounced(RR, tuple(before))], 1)
    one_by_one.on_bgp([RouteAnnounced(RR, r) for r in run], 2)
    as_run.on_bgp([RoutesAnnounced(RR, tuple(run))], 2)
    assert as_run.rib.paths == one_by_one.rib.paths
    assert as_run.counters == one_by_one.counters
    assert as_run.counters["rejected:mac-limit"] == max(0, held + size - limit)
    assert as_run.rib.mac_total == min(limit, held + size)


def test_every_path_from_a_peer_holds_one_string_of_its_name() -> None:
    """Each line from the speaker decodes the peer's name anew; a soak of MAC moves
    (a line per UPDATE) left ~73,000 copies of two names in the path table."""
    state = make()
    for i in range(3):
        peer = "".join(RR)  # equal, another object: as each line decodes it
        state.on_bgp([RouteAnnounced(peer, mac_route(mac=f"02:00:5e:00:01:{i:02x}"))], 1)
        state.on_bgp([RoutesAnnounced(peer, (mac_route(mac=f"02:00:5e:00:02:{i:02x}"),))], 1)
    names = {id(pid.peer) for pid in state.rib.paths}
    assert len(state.rib.paths) == 6 and len(names) == 1


def test_stale_entries_wait_for_a_complete_table() -> None:
    stale = FdbEntry(VX, "02:00:5e:00:00:99", None, "192.0.2.99", None, NTF_SELF | NTF_EXT_LEARNED,
                     NUD_REACHABLE)  # fmt: skip
    stale_flood = FdbEntry(VX, "00:00:00:00:00:00", None, "192.0.2.99", None, NTF_SELF,
                           NUD_NOARP | NUD_PERMANENT)  # fmt: skip
    state = make(fdb=(stale, stale_flood), sweep_delay=5)
    assert flush(state) == []  # never flush what we do not know to be stale
    state.on_bgp([SessionUp(RR), RouteAnnounced(RR, mac_route())], 1)
    state.tick(3)
    assert flush(state) == [AddFdb(VX, REMOTE_MAC, "192.0.2.22", None)]
    state.on_bgp([EndOfRib(RR)], 4)
    state.tick(4.5)  # EoR seen, but not yet sweep-delay after start
    assert flush(state) == []
    state.tick(6)
    assert set(flush(state)) == {DelFdb(VX, "02:00:5e:00:00:99", None), DelFlood(VX, "192.0.2.99")}


def test_existing_entry_is_kept_when_the_route_comes_back() -> None:
    ours = FdbEntry(VX, REMOTE_MAC, None, "192.0.2.22", None, NTF_SELF | NTF_EXT_LEARNED,
                    NUD_REACHABLE)  # fmt: skip
    state = make(fdb=(ours,))
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    assert flush(state) == []  # already right in the kernel: no rewrite after a restart


def test_mac_mobility_remote_wins_with_higher_sequence() -> None:
    state = make(fdb=(learned(),))
    state.take_bgp_lines()
    state.on_bgp([RouteAnnounced(RR, mac_route(mac=HOST_MAC, seq=1))], 1)
    assert flush(state) == [AddFdb(VX, HOST_MAC, "192.0.2.22", None)]
    [line] = state.take_bgp_lines()
    assert line.startswith(f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC}")
    # The host comes back: learned locally again, advertised with seq 2, remote entry goes.
    state.on_kernel([FdbUpdated(learned())])
    assert flush(state) == [DelFdb(VX, HOST_MAC, None)]
    [line] = state.take_bgp_lines()
    assert line.startswith("announce evpn mac") and line.endswith("mobility 2")


def test_local_mac_aged_out_is_withdrawn() -> None:
    state = make(fdb=(learned(),))
    state.take_bgp_lines()
    state.on_kernel([FdbRemoved(learned())])
    [line] = state.take_bgp_lines()
    assert line.startswith(f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC}")


def test_static_mac_is_sticky() -> None:
    state = make(fdb=(learned(state=NUD_NOARP),))
    assert any(line.endswith("mobility 0 sticky") for line in state.take_bgp_lines())
    state.on_bgp([RouteAnnounced(RR, mac_route(mac=HOST_MAC, seq=9))], 1)
    assert flush(state) == []  # a remote claim never moves a sticky MAC


def test_show_vni_counts() -> None:
    state = make(fdb=(learned(),))
    state.on_bgp([RouteAnnounced(RR, mac_route(ip="198.51.100.22")), RouteAnnounced(RR, imet())], 1)
    [row] = views.vnis(state)
    assert row["vni"] == 100 and row["vxlanIf"] == "vxlan100" and row["bridge"] == "br100"
    assert (row["numLocalMacs"], row["numRemoteMacs"], row["numArpNd"]) == (1, 1, 1)
    assert row["remoteVteps"] == ["192.0.2.22"]


def test_vxlan_device_down_and_up_rewrites_our_entries() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    assert flush(state) == [AddFdb(VX, REMOTE_MAC, "192.0.2.22", None)]
    # Down flushed the kernel's copy: it is written again (the kernel keeps entries added
    # while down), and not again when the device comes back up.
    state.on_kernel([LinkUpdated(VxlanDevice(VX, "vxlan100", 100, ME, BR, False, False))])
    assert flush(state) == [AddFdb(VX, REMOTE_MAC, "192.0.2.22", None)]
    state.on_kernel([LinkUpdated(VxlanDevice(VX, "vxlan100", 100, ME, BR, False, True))])
    assert flush(state) == []


SVI_IP = "198.51.100.21"


def local_neigh(ip: str = SVI_IP, mac: str = HOST_MAC, state: int = NUD_REACHABLE) -> NeighEntry:
    return NeighEntry(BR, ip, mac, 0, state, None)


def test_local_mac_ip_is_advertised_and_follows_the_kernel() -> None:
    state = make(fdb=(learned(),))
    state.take_bgp_lines()
    state.on_kernel([NeighUpdated(local_neigh())])
    [line] = state.take_bgp_lines()
    assert line == (
        f"announce evpn mac rd {ME}:100 mac {HOST_MAC} ip {SVI_IP} label 100 "
        f"next-hop {ME} rt 65000:100"
    )
    state.on_kernel([NeighUpdated(local_neigh(state=0x04))])  # STALE: the route stays
    assert state.take_bgp_lines() == []
    # The IP moves to another local MAC: the old binding is withdrawn, the new announced.
    other = "02:00:5e:00:00:31"
    state.on_kernel([FdbUpdated(learned(mac=other)), NeighUpdated(local_neigh(mac=other))])
    lines = sorted(state.take_bgp_lines())
    assert any(f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC} ip {SVI_IP}" in x for x in lines)
    assert any(f"announce evpn mac rd {ME}:100 mac {other} ip {SVI_IP}" in x for x in lines)
    state.on_kernel([NeighRemoved(local_neigh(mac=other))])
    [line] = state.take_bgp_lines()
    assert line.startswith(f"withdraw evpn mac rd {ME}:100 mac {other} ip {SVI_IP}")


def test_neighbour_of_a_remote_mac_is_not_advertised() -> None:
    state = make()
    state.take_bgp_lines()
    state.on_kernel([NeighUpdated(local_neigh(mac=REMOTE_MAC))])
    assert state.take_bgp_lines() == []


def test_flapping_mac_becomes_duplicate_and_frozen_then_cleared() -> None:
    state = make(extra="duplicate-detection: {max-moves: 3, time: 60, freeze: permanent}\n")
    key = (100, HOST_MAC)
    seq = 0
    for t in range(3):
        state.on_kernel([FdbUpdated(learned())], now=10.0 + t)  # the host is here...
        flush(state)
        state.take_bgp_lines()
        seq += 2
        state.on_bgp([RouteAnnounced(RR, mac_route(mac=HOST_MAC, seq=seq))], 10.5 + t)  # ...there
        flush(state)
        state.take_bgp_lines()
    assert key in state.dad.duplicates and state.counters["duplicate-macs"] == 1
    # Frozen: a newer claim changes nothing, neither the FDB nor our adverts.
    state.on_bgp([RouteAnnounced(RR, mac_route(mac=HOST_MAC, vtep="192.0.2.23", seq=99))], 20)
    assert flush(state) == []
    assert state.clear_duplicate(100, None) == [key]
    assert flush(state) == [AddFdb(VX, HOST_MAC, "192.0.2.23", None)]


def test_duplicate_detection_needs_the_moves_within_the_window() -> None:
    state = make(extra="duplicate-detection: {max-moves: 2, time: 5}\n")
    state.on_bgp([RouteAnnounced(RR, mac_route(seq=0))], 0)
    flush(state)
    state.on_bgp([RouteAnnounced(RR2, mac_route(vtep="192.0.2.23", seq=1))], 1)
    flush(state)  # one move
    state.on_bgp([RouteAnnounced(RR, mac_route(seq=2))], 10)
    flush(state)  # a second move, but 9 s later
    assert not state.dad.duplicates


def test_removed_vni_withdraws_local_mac_ip_routes_too() -> None:
    state = make(fdb=(learned(),))
    state.on_kernel([NeighUpdated(local_neigh())])
    state.take_bgp_lines()
    state.on_kernel([LinkRemoved(VX, "vxlan100")])
    withdrawn = {line for line in state.take_bgp_lines() if line.startswith("withdraw")}
    assert any(f"mac {HOST_MAC} ip {SVI_IP}" in line for line in withdrawn)
    assert state.adverts.sent == {}


def test_refused_writes_are_retried_with_backoff_until_they_succeed() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route(ip="198.51.100.22")), RouteAnnounced(RR, imet())], 1)
    ops = state.take_kernel_ops()
    state.kernel_applied(ops, ops)  # the kernel refused all three
    assert state.counters["kernel-failures"] == 3
    state.tick(1.5)
    assert state.take_kernel_ops() == []  # not yet: the first retry is 1 s after the failure
    state.tick(2.0)
    again = state.take_kernel_ops()
    assert sorted(map(repr, again)) == sorted(map(repr, ops))
    state.kernel_applied(again, [again[0]])  # one still refused: next try 2 s later
    state.tick(3.5)
    assert state.take_kernel_ops() == []
    state.tick(4.0)
    assert state.take_kernel_ops() == [again[0]]
    state.kernel_applied([again[0]], [])
    state.tick(100.0)
    assert state.take_kernel_ops() == []  # all installed: nothing left to retry
    assert state.counters["kernel-retries"] == 4


def test_a_retry_that_is_no_longer_wanted_is_dropped() -> None:
    state = make()
    state.on_bgp([RouteAnnounced(RR, mac_route())], 1)
    ops = state.take_kernel_ops()
    state.kernel_applied(ops, ops)
    state.on_bgp([RoutesWithdrawn(RR, (mac_route().key,))], 1.2)
    assert state.take_kernel_ops() == []  # never installed: nothing to remove
    state.tick(2.0)
    assert state.take_kernel_ops() == []  # planned again, nothing to write: forgotten
    state.tick(100.0)
    assert state.take_kernel_ops() == []
    assert state.counters["kernel-retries"] == 1


def test_an_incomplete_dump_does_not_withdraw_local_macs_it_missed() -> None:
    other = "02:00:5e:00:00:31"
    state = make(fdb=(learned(), learned(other)))
    state.take_bgp_lines()
    # the kernel changed while it was dumped: this dump skipped HOST_MAC
    state.load_snapshot(KernelSnapshot(links(), (learned(other),), (), complete=False))  # type: ignore[arg-type]
    assert state.take_bgp_lines() == []
    # a complete dump is believed
    state.load_snapshot(KernelSnapshot(links(), (learned(other),), ()))  # type: ignore[arg-type]
    assert state.take_bgp_lines() == [
        f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC} label 100 next-hop {ME}"
    ]


def test_an_incomplete_dump_withdraws_the_local_macs_the_kernel_says_are_gone() -> None:
    other = "02:00:5e:00:00:31"
    state = make(fdb=(learned(), learned(other)))
    state.take_bgp_lines()
    # Neither MAC is in the dump; looked up one by one, HOST_MAC is gone (ENOENT), the
    # other was only skipped (the lookup found it, so the snapshot holds it).
    snap = KernelSnapshot(
        links(),  # type: ignore[arg-type]
        (learned(other),),
        (),
        complete=False,
        fdb_gone=frozenset({BridgeMac(BR, None, HOST_MAC)}),
    )
    state.load_snapshot(snap)
    assert state.take_bgp_lines() == [
        f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC} label 100 next-hop {ME}"
    ]
    assert set(state.view.fdb) == {(BR, None, other)}


def test_an_incomplete_dump_that_shows_a_local_mac_elsewhere_is_believed_for_it() -> None:
    state = make(fdb=(learned(),))
    state.take_bgp_lines()
    # The dump holds the MAC's bridge entry on the VXLAN device now (a remote MAC, ours):
    # it is no longer local, whatever else the dump missed.
    remote = FdbEntry(VX, HOST_MAC, None, None, BR, NTF_EXT_LEARNED, NUD_REACHABLE)
    state.load_snapshot(KernelSnapshot(links(), (remote,), (), complete=False))  # type: ignore[arg-type]
    assert state.view.fdb == {}
    assert state.take_bgp_lines() == [
        f"withdraw evpn mac rd {ME}:100 mac {HOST_MAC} label 100 next-hop {ME}"
    ]


def test_what_was_removed_is_forgotten_so_churn_does_not_grow_the_state() -> None:
    """MACs that come and go (hours of VM moves) leave nothing behind once removed: the
    engine's memory of entries it wanted holds what the kernel holds, not every MAC ever."""
    state = make()
    state.on_bgp([SessionUp(RR)], 1)
    for n in range(50):
        mac = f"02:00:5e:00:01:{n:02x}"
        route = mac_route(mac=mac, ip=f"198.51.100.{n + 1}")
        state.on_bgp([RouteAnnounced(RR, route), RouteAnnounced(RR, imet(f"192.0.2.{n + 30}"))], 2)
        assert flush(state)
        state.on_bgp(
            [
                RoutesWithdrawn(RR, (route.key,)),
                RoutesWithdrawn(RR, (imet(f"192.0.2.{n + 30}").key,)),
            ],
            3,
        )
        assert {type(op) for op in flush(state)} == {DelFdb, DelNeigh, DelFlood}
    assert state.touched_fdb == set() and state.touched_neigh == set()
    assert state.touched_flood == set()
    assert state.mirror.fdb_by_dev == {} and state.mirror.neigh_by_dev == {}


def test_a_vni_deleted_with_its_devices_leaves_no_wanted_entries_behind() -> None:
    """A VXLAN device deleted takes our entries with it, and no removal of ours takes them
    out of the sets of entries wanted earlier: the VNI's retirement forgets them with the
    mirror, or every VNI deleted left its MACs there for the agent's life."""
    state = make()
    state.on_bgp([SessionUp(RR)], 1)
    routes = [mac_route(ip="198.51.100.22"), mac_route(mac="02:00:5e:00:00:23"), imet()]
    state.on_bgp([RouteAnnounced(RR, route) for route in routes], 1)
    flush(state)
    assert len(state.touched_fdb) == 2 and state.touched_flood and state.touched_neigh
    state.on_kernel([LinkRemoved(VX, "vxlan100"), LinkRemoved(BR, "br100")])
    assert flush(state) == []  # nothing left to remove: the devices took it all
    assert state.touched_fdb == set() and state.touched_flood == set()
    assert state.touched_neigh == set()
    assert state.mirror.fdb_by_dev == {} and state.mirror.neigh_by_dev == {}


def test_a_reconcile_keeps_the_objects_of_what_did_not_change() -> None:
    """A dump's copies of unchanged entries are dropped, and the tables keep the objects
    they held: a few of the dump's objects kept among its thousands pinned Python's memory
    arenas, and RSS grew a step at every reconcile while routes churned."""
    state = make(fdb=(learned(),))
    others = [f"02:00:5e:00:01:{n:02x}" for n in range(3)]
    state.on_bgp([RouteAnnounced(RR, mac_route(mac)) for mac in others], 1)
    flush(state)
    old_keys = {key: key for key in state.mirror.fdb_entries()}
    old_local = {key: key for key in state.view.fdb}
    old_links = dict(state.view.links)

    def fresh(text: str) -> str:
        return "".join(text)  # an equal string, another object (as the dump decodes it)

    ours = NTF_SELF | NTF_EXT_LEARNED
    kernel = (
        *(FdbEntry(VX, fresh(m), None, fresh("192.0.2.22"), None, ours, NUD_REACHABLE)
          for m in others[:2]),
        learned(fresh(HOST_MAC)),
    )  # fmt: skip
    state.load_snapshot(KernelSnapshot(links(), kernel, ()))  # type: ignore[arg-type]
    kept = {key: key for key in state.mirror.fdb_entries()}
    assert set(kept) == {DeviceMac(VX, mac, None) for mac in others[:2]}  # the third: gone
    assert all(kept[key] is old_keys[key] for key in kept)
    assert all(key is old_local[key] for key in state.view.fdb)
    assert all(state.view.links[i] is old_links[i] for i in old_links)
    assert flush(state) == [AddFdb(VX, others[2], "192.0.2.22")]  # and it is repaired


def test_the_path_table_is_compacted_once_routes_have_been_quiet() -> None:
    state = make()
    state.on_bgp([SessionUp(RR)], 1.0)
    routes = [mac_route(mac=f"02:00:5e:01:{i >> 8:02x}:{i & 255:02x}") for i in range(COMPACT_MIN)]
    state.on_bgp([RouteAnnounced(RR, r) for r in routes], 2.0)
    flush(state)
    table = state.rib.paths
    assert state.rib.compaction_due()
    assert state.next_deadline() == pytest.approx(2.0 + COMPACT_QUIET)
    assert state.tick(2.0 + COMPACT_QUIET - 0.1) is False  # routes changed too recently
    assert state.rib.paths is table
    assert state.tick(2.0 + COMPACT_QUIET) is True
    assert state.rib.paths is not table and state.rib.paths == table
    assert state.counters["path-table-compactions"] == 1
    assert state.tick(30.0) is False and not state.rib.compaction_due()
    assert flush(state) == []  # nothing to plan: the same routes


def test_moves_are_forgotten_on_the_timer_once_their_window_is_over() -> None:
    state = make(extra="duplicate-detection: {max-moves: 5, time: 60}\n")
    state.on_kernel([FdbUpdated(learned())], now=1.0)  # the host is here...
    flush(state)
    state.on_bgp([RouteAnnounced(RR, mac_route(mac=HOST_MAC, seq=2))], 2.0)  # ...then there
    flush(state)
    assert state.dad.count(VniMac(100, HOST_MAC)) == 1
    assert state.next_deadline() == 62.0  # no move comes to prune the table: the timer does
    state.tick(62.0)
    assert state.dad.count(VniMac(100, HOST_MAC)) == 1  # moved at 2: still in its window
    state.tick(122.0)
    assert state.dad.moves == {} and state.next_deadline() is None
