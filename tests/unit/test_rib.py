import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evpn_agent.core.rib import Dirty, Rib, best_of, better
from evpn_agent.core.targets import Importer
from evpn_agent.model import ImetKey, ImetRoute, MacKey, MacRoute, PathId, Route, RouteTarget

RT100 = (RouteTarget(65000, 100),)
RT999 = (RouteTarget(65000, 999),)


def mac_route(
    vtep: str = "192.0.2.11",
    seq: int = 0,
    sticky: bool = False,
    ip: str | None = None,
    rts: tuple[RouteTarget, ...] = RT100,
    mac: str = "02:00:00:00:00:01",
) -> MacRoute:
    return MacRoute(MacKey(f"{vtep}:100", 0, mac, ip), 100, vtep, rts, seq, sticky)


def imet(vtep: str, rts: tuple[RouteTarget, ...] = RT100) -> ImetRoute:
    return ImetRoute(ImetKey(f"{vtep}:100", 0, vtep), 100, vtep, rts)


def make_rib(vnis: tuple[int, ...] = (100,)) -> Rib:
    return Rib(Importer(vnis, {}).vni_for)


def test_rfc7432_best_path_order() -> None:
    low, high = mac_route("192.0.2.11"), mac_route("192.0.2.12")
    assert better(low, high) and not better(high, low)  # equal seq: lower VTEP IP
    assert better(mac_route("192.0.2.12", seq=2), mac_route("192.0.2.11", seq=1))
    assert better(mac_route("192.0.2.12", sticky=True), mac_route("192.0.2.11", seq=9))
    assert best_of([]) is None


def test_announce_imports_and_marks_dirty() -> None:
    rib, dirty = make_rib(), Dirty()
    assert rib.announce("rr1", mac_route(ip="198.51.100.1"), dirty)
    assert dirty.fdb == {(100, "02:00:00:00:00:01")}
    assert dirty.neigh == {(100, "198.51.100.1")}
    best = rib.best_mac(100, "02:00:00:00:00:01")
    assert best is not None and best.vtep == "192.0.2.11"


def test_not_imported_routes_are_kept_for_a_later_vni() -> None:
    rib, dirty = make_rib(), Dirty()
    assert not rib.announce("rr1", mac_route(rts=RT999), dirty)
    assert not dirty and rib.best_mac(999, "02:00:00:00:00:01") is None
    importer = Importer([100, 999], {})
    rib.reimport(importer.vni_for, dirty)
    assert dirty.fdb == {(999, "02:00:00:00:00:01")}
    assert rib.best_mac(999, "02:00:00:00:00:01") is not None


def test_two_reflectors_one_withdraw_keeps_route() -> None:
    rib, dirty = make_rib(), Dirty()
    route = mac_route()
    rib.announce("rr1", route, dirty)
    rib.announce("rr2", route, dirty)
    rib.withdraw("rr1", route.key, dirty)
    assert rib.best_mac(100, route.key.mac) == route
    rib.withdraw("rr2", route.key, dirty)
    assert rib.best_mac(100, route.key.mac) is None
    assert rib.remote_macs(100) == {}


def test_a_run_of_withdraws_drops_the_paths_held_and_counts_them() -> None:
    rib, dirty = make_rib(), Dirty()
    kept = mac_route(mac="02:00:00:00:00:03", ip="198.51.100.3")
    routes = [mac_route(mac="02:00:00:00:00:01", ip="198.51.100.1"), imet("192.0.2.11"), kept]
    for route in routes:
        rib.announce("rr1", route, dirty)
    rib.announce("rr2", routes[0], dirty)
    never = mac_route(mac="02:00:00:00:00:02").key  # not held: not counted
    gone, dirty = Dirty(), Dirty()
    assert rib.withdraw_many("rr1", [routes[0].key, never, routes[1].key], gone) == 2
    assert rib.per_peer == {"rr1": 1, "rr2": 1}
    # rr2's copy keeps the MAC's answer: only the flood entry changed
    assert (gone.fdb, gone.neigh, gone.flood) == (set(), set(), {(100, "192.0.2.11")})
    assert rib.withdraw_many("rr2", [routes[0].key], gone) == 1
    assert gone.fdb == {(100, "02:00:00:00:00:01")} and gone.neigh == {(100, "198.51.100.1")}
    assert rib.remote_macs(100).keys() == {kept.key.mac} and rib.mac_total == 1
    assert rib.remote_ips(100).keys() == {"198.51.100.3"} and not rib.flood_vteps(100)


def test_mobility_replaces_best() -> None:
    rib, dirty = make_rib(), Dirty()
    old, new = mac_route("192.0.2.11", seq=0), mac_route("192.0.2.12", seq=1)
    rib.announce("rr1", old, dirty)
    rib.announce("rr1", new, dirty)
    assert rib.best_mac(100, old.key.mac) == new
    rib.withdraw("rr1", new.key, dirty)
    assert rib.best_mac(100, old.key.mac) == old


def test_flood_and_drop_peer() -> None:
    rib, dirty = make_rib(), Dirty()
    rib.announce("rr1", imet("192.0.2.12"), dirty)
    rib.announce("rr1", imet("192.0.2.11"), dirty)
    rib.announce("rr2", imet("192.0.2.11"), dirty)
    assert rib.flood_vteps(100) == ["192.0.2.11", "192.0.2.12"]
    dirty = Dirty()
    assert rib.drop_peer("rr1", dirty) == 2
    assert rib.flood_vteps(100) == ["192.0.2.11"]
    assert dirty.flood == {(100, "192.0.2.12")}  # rr2 still gives .11: its entry stays


def test_a_second_reflectors_copy_changes_nothing_to_plan() -> None:
    """The same route through a second reflector, announced or withdrawn while the first
    copy stays, or announced again by the same reflector, leaves every answer as it was:
    nothing is marked to plan. A copy that differs (a newer sequence) is marked."""
    rib, first = make_rib(), Dirty()
    route, flood = mac_route(ip="198.51.100.1"), imet("192.0.2.11")
    for r in (route, flood):
        rib.announce("rr1", r, first)
    assert first.fdb and first.neigh and first.flood
    quiet = Dirty()
    for r in (route, flood):
        assert rib.announce("rr2", r, quiet)  # imported, as the first copy
        assert rib.announce("rr1", r, quiet)  # again (a refresh)
    rib.withdraw("rr2", route.key, quiet)
    rib.withdraw("rr2", flood.key, quiet)
    assert not quiet
    assert rib.best_mac(100, route.key.mac) == route and rib.flood_vteps(100) == ["192.0.2.11"]
    newer = Dirty()
    rib.announce("rr2", route._replace(seq=1), newer)
    assert newer.fdb == {(100, route.key.mac)} and newer.neigh == {(100, "198.51.100.1")}
    last = Dirty()
    rib.withdraw("rr2", route.key, last)
    rib.withdraw("rr1", flood.key, last)
    assert last.fdb == {(100, route.key.mac)} and last.flood == {(100, "192.0.2.11")}


def test_a_second_reflectors_copy_is_held_as_the_first_copys_objects() -> None:
    """The decoder gives each reflector's copy its own key, MAC string and route; the
    RIB keeps one set for both paths. A copy that differs keeps its own route around the
    strings held, and withdrawing the first copy leaves the second whole."""
    rib, dirty = make_rib(), Dirty()

    def copy(route: Route) -> Route:  # equal, made anew, as a second UPDATE decodes
        if isinstance(route, MacRoute):
            ip = "".join(route.key.ip) if route.key.ip is not None else None
            key = MacKey(route.key.rd, 0, "".join(route.key.mac), ip)
            return route._replace(key=key)
        return route._replace(key=ImetKey(route.key.rd, 0, "".join(route.key.origin)))

    for first in (mac_route(ip="198.51.100.1"), imet("192.0.2.11")):
        rib.announce("rr1", first, dirty)
        second = copy(first)
        assert second == first and second is not first
        rib.announce("rr2", second, dirty)
        held = {pid.peer: (pid, route) for pid, route in rib.paths.items() if route == first}
        (pid1, route1), (pid2, route2) = held["rr1"], held["rr2"]
        assert route1 is first and route2 is first
        assert pid1.key is first.key and pid2.key is first.key
    newer = copy(mac_route(ip="198.51.100.1", seq=1))
    rib.announce("rr2", newer, dirty)
    kept = rib.paths[PathId("rr2", newer.key)]
    held_key = mac_route(ip="198.51.100.1").key
    assert kept == newer and kept is not newer
    assert kept.key.mac is held_key.mac and kept.key.ip is held_key.ip
    rib.withdraw("rr1", mac_route().key, dirty)
    rib.withdraw("rr1", imet("192.0.2.11").key, dirty)
    assert rib.best_mac(100, newer.key.mac) is kept
    assert rib.flood_vteps(100) == ["192.0.2.11"]


def test_a_moved_mac_holds_the_strings_of_the_mac_and_ip_held_before() -> None:
    """A move comes as a new route (the new VTEP's RD and sequence) with strings of its
    own; the RIB keeps one string a MAC and IP, the one its indexes are keyed by."""
    rib, dirty = make_rib(), Dirty()
    first = mac_route(ip="198.51.100.1")
    rib.announce("rr1", first, dirty)
    new = mac_route(vtep="192.0.2.12", seq=1, ip="".join("198.51.100.1"))
    moved = new._replace(key=new.key._replace(mac="".join(first.key.mac)))
    assert moved.key.mac is not first.key.mac and moved.key.ip is not first.key.ip
    rib.announce("rr1", moved, dirty)
    rib.withdraw("rr1", first.key, dirty)
    ((pid, route),) = rib.paths.items()
    assert route == moved and pid == PathId("rr1", moved.key)
    assert route.key.mac is first.key.mac and route.key.ip is first.key.ip
    assert pid.key is route.key
    assert rib.best_mac(100, first.key.mac) is route
    assert rib.best_ip(100, "198.51.100.1") is route


def test_reannounce_with_new_ip_moves_indexes() -> None:
    rib, dirty = make_rib(), Dirty()
    a = mac_route(ip="198.51.100.1")
    rib.announce("rr1", a, dirty)
    rib.withdraw("rr1", a.key, dirty)
    assert rib.remote_ips(100) == {} and rib.keys_of_vni(100).fdb == set()


def test_reimport_asks_once_per_rt_set_and_moves_only_what_changes() -> None:
    rib, dirty = make_rib((100, 200)), Dirty()
    rt200 = (RouteTarget(65000, 200),)
    for n in range(50):
        rib.announce("rr1", mac_route(mac=f"02:00:00:00:01:{n:02x}"), dirty)
        rib.announce("rr1", mac_route(mac=f"02:00:00:00:02:{n:02x}", rts=rt200), dirty)
    asked: list[tuple[RouteTarget, ...]] = []
    importer = Importer([100], {})  # VNI 200 removed

    def import_rts(rts: tuple[RouteTarget, ...]) -> int | None:
        asked.append(rts)
        return importer.vni_for(rts)

    dirty = Dirty()
    rib.reimport(import_rts, dirty)
    assert len(asked) == 2 and set(asked) == {RT100, rt200}  # not once per path
    assert {key.vni for key in dirty.fdb} == {200}  # VNI 100's paths stayed put
    assert rib.count_macs(200) == 0 and rib.count_macs(100) == 50


def test_reimport_moves_a_path_to_its_next_rt_when_its_vni_goes() -> None:
    rib, dirty = make_rib((100, 999)), Dirty()
    route = mac_route(rts=RT100 + RT999)
    rib.announce("rr1", route, dirty)
    assert rib.best_mac(100, route.key.mac) == route
    rib.reimport(Importer([999], {}).vni_for, dirty)
    assert rib.best_mac(100, route.key.mac) is None
    assert rib.best_mac(999, route.key.mac) == route


def test_a_path_announced_again_with_other_rts_is_imported_by_its_new_ones() -> None:
    rib, dirty = make_rib((100,)), Dirty()
    rib.announce("rr1", mac_route(rts=RT999), dirty)
    route = mac_route(rts=RT100)  # the same key, its RTs changed
    rib.announce("rr1", route, dirty)
    rib.reimport(Importer([999], {}).vni_for, dirty)  # only RT999 imports now
    assert rib.best_mac(999, route.key.mac) is None
    assert rib.best_mac(100, route.key.mac) is None
    rib.withdraw("rr1", route.key, dirty)
    rib.reimport(Importer([100, 999], {}).vni_for, dirty)
    assert rib.paths == {} and rib.best_mac(100, route.key.mac) is None


def test_a_vni_removed_and_added_again_gets_back_its_paths_of_every_kind() -> None:
    rib, dirty = make_rib((100,)), Dirty()
    mac_ip = mac_route(ip="198.51.100.1")
    rib.announce("rr1", mac_ip, dirty)
    rib.announce("rr1", imet("192.0.2.11"), dirty)
    rib.reimport(Importer([], {}).vni_for, dirty)
    assert rib.vni_of(PathId("rr1", mac_ip.key)) is None
    assert rib.best_mac(100, mac_ip.key.mac) is None and rib.best_ip(100, "198.51.100.1") is None
    assert rib.flood_vteps(100) == [] and rib.mac_total == 0
    dirty = Dirty()
    rib.reimport(Importer([100], {}).vni_for, dirty)
    assert rib.vni_of(PathId("rr1", mac_ip.key)) == 100
    assert rib.best_ip(100, "198.51.100.1") == mac_ip and rib.flood_vteps(100) == ["192.0.2.11"]
    assert dirty.flood == {(100, "192.0.2.11")} and rib.mac_total == 1


RT_SETS = [
    (RouteTarget(65000, 100),),
    (RouteTarget(65000, 200),),
    (*RT100, RouteTarget(65000, 200)),
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("announce"),
                st.sampled_from(["rr1", "rr2"]),
                st.integers(0, 3),  # which MAC (3: a type 3)
                st.integers(0, 1),  # which VTEP
                st.integers(0, 2),  # which RT set
                st.integers(0, 2),  # sequence
            ),
            st.tuples(
                st.just("withdraw"),
                st.sampled_from(["rr1", "rr2"]),
                st.integers(0, 3),
                st.integers(0, 1),
            ),
            st.tuples(st.just("vnis"), st.sets(st.sampled_from([100, 200]))),
        ),
        max_size=40,
    )
)
def test_the_rib_agrees_with_a_scan_of_every_path(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the order of announces, withdraws and VNI changes, every answer is what
    importing each path from scratch gives."""
    vnis: set[int] = {100}
    rib, dirty = make_rib((100,)), Dirty()

    def key(n: int, v: int) -> MacKey | ImetKey:
        vtep = f"192.0.2.{11 + v}"
        return (
            ImetKey(f"{vtep}:1", 0, vtep)
            if n == 3
            else MacKey(f"{vtep}:1", 0, f"02:00:00:00:00:0{n}", None)
        )

    def answers() -> dict[tuple[str, int, str], object]:
        out: dict[tuple[str, int, str], object] = {}
        for vni in (100, 200):
            for n in range(3):
                mac = f"02:00:00:00:00:0{n}"
                out[("fdb", vni, mac)] = rib.best_mac(vni, mac)
            for v in range(2):
                vtep = f"192.0.2.{11 + v}"
                out[("flood", vni, vtep)] = rib.has_flood(vni, vtep)
        return out

    for op in ops:
        before, dirty = answers(), Dirty()
        if op[0] == "announce":
            _, peer, n, v, r, seq = op
            k = key(n, v)
            vtep = f"192.0.2.{11 + v}"
            route: Route = (
                ImetRoute(k, 1, vtep, RT_SETS[r])
                if isinstance(k, ImetKey)
                else MacRoute(k, 1, vtep, RT_SETS[r], seq)
            )
            rib.announce(peer, route, dirty)
        elif op[0] == "withdraw":
            rib.withdraw(op[1], key(op[2], op[3]), dirty)
        else:
            vnis = set(op[1])
            rib.reimport(Importer(sorted(vnis), {}).vni_for, dirty)
        # every key whose answer changed is marked to plan (others may be, or not)
        marked = {("fdb", *k) for k in dirty.fdb} | {("flood", *k) for k in dirty.flood}
        after = answers()
        assert {k for k in after if after[k] != before[k]} <= marked, op
    importer = Importer(sorted(vnis), {})
    imported = {pid: importer.vni_for(route.rts) for pid, route in rib.paths.items()}
    assert {pid: rib.vni_of(pid) for pid in rib.paths} == imported
    macs = set()
    for vni in (100, 200):
        mine = [rib.paths[pid] for pid, v in imported.items() if v == vni]
        for n in range(3):
            mac = f"02:00:00:00:00:0{n}"
            paths = [r for r in mine if isinstance(r, MacRoute) and r.key.mac == mac]
            assert rib.best_mac(vni, mac) == best_of(paths)
            if paths:
                macs.add((vni, mac))
        vteps = {r.vtep for r in mine if isinstance(r, ImetRoute)}
        assert rib.flood_vteps(vni) == sorted(vteps)
    assert rib.mac_total == len(macs)


def churned(rib: Rib, macs: int, moves: int) -> None:
    """``macs`` MACs, then ``moves`` moves: each announced by its next VTEP, the path at
    its previous one withdrawn (the pattern of a MAC-move soak)."""
    dirty = Dirty()
    hops = [0] * macs

    def path(i: int) -> MacRoute:
        mac = f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"
        return mac_route(vtep=f"192.0.2.{10 + hops[i] % 200}", seq=hops[i], mac=mac)

    for i in range(macs):
        rib.announce("rr", path(i), dirty)
    for n in range(moves):
        i = n % macs
        old = path(i)
        hops[i] += 1
        rib.announce("rr", path(i), dirty)
        rib.withdraw("rr", old.key, dirty)


def test_churn_makes_compaction_due_and_compaction_gives_the_table_back() -> None:
    rib = make_rib()
    churned(rib, 20_000, 0)
    rib.compact()  # as after a load
    built = sys.getsizeof(rib.paths)
    churned_rib = make_rib()
    churned(churned_rib, 20_000, 60_000)
    assert churned_rib.compaction_due()
    before = dict(churned_rib.paths)
    bloated = sys.getsizeof(churned_rib.paths)
    assert bloated > built  # CPython grew the table under churn
    churned_rib.compact()
    assert churned_rib.paths == before  # the same paths, answers unchanged
    assert sys.getsizeof(churned_rib.paths) <= built < bloated
    assert not churned_rib.compaction_due()
    seventh = [
        r for r in before.values() if isinstance(r, MacRoute) and r.key.mac == "02:00:00:00:00:07"
    ]
    assert churned_rib.best_mac(100, "02:00:00:00:00:07") == best_of(seventh)


def test_a_mac_moved_again_and_again_keeps_a_small_table_of_paths() -> None:
    # A move as two reflectors send it: the new VTEP's copies arrive, then the old
    # VTEP's are withdrawn. CPython grows a dict whose deleted slots fill up and never
    # shrinks it; every MAC of a fabric under churn held a table twice its size.
    rib, dirty, mac = make_rib(), Dirty(), "02:00:00:00:00:01"
    for rr in ("rr1", "rr2"):
        rib.announce(rr, mac_route("192.0.2.11"), dirty)
    small = sys.getsizeof(rib.remote_macs(100)[mac])  # as two paths first made it
    for hop in range(1, 20):
        new, old = mac_route(f"192.0.2.{11 + hop % 2}", seq=hop), rib.best_mac(100, mac)
        assert old is not None
        for rr in ("rr1", "rr2"):
            rib.announce(rr, new, dirty)
        for rr in ("rr1", "rr2"):
            rib.withdraw(rr, old.key, dirty)
        paths = rib.remote_macs(100)[mac]
        assert sorted(paths) == [PathId("rr1", new.key), PathId("rr2", new.key)]
        assert sys.getsizeof(paths) <= small
    assert rib.best_mac(100, mac) == new


def test_a_few_new_paths_make_no_compaction_due() -> None:
    rib = make_rib()
    churned(rib, 1_000, 3_000)
    assert not rib.compaction_due()  # below COMPACT_MIN: not worth a copy


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["announce", "withdraw", "drop"]),
            st.sampled_from(["rr1", "rr2"]),
            st.integers(0, 5),  # which MAC
            st.sampled_from(["192.0.2.11", "192.0.2.12"]),
        ),
        max_size=40,
    )
)
def test_paths_per_peer_are_counted_as_they_come_and_go(
    ops: list[tuple[str, str, int, str]],
) -> None:
    rib, dirty = make_rib(), Dirty()
    for op, peer, mac, vtep in ops:
        route = mac_route(vtep, mac=f"02:00:00:00:00:0{mac}")
        if op == "announce":
            rib.announce(peer, route, dirty)
        elif op == "withdraw":
            rib.withdraw(peer, route.key, dirty)
        else:
            rib.drop_peer(peer, dirty)
        counted = {peer: 0 for peer in ("rr1", "rr2")}
        for pid in rib.paths:
            counted[pid.peer] += 1
        assert {p: rib.per_peer.get(p, 0) for p in counted} == counted


def test_a_vteps_type_3_paths_from_two_reflectors_are_held_small() -> None:
    """Every VTEP of every VNI has a type 3 path per reflector: at 64 VTEPs and 1,000 VNIs
    a set each held 13 MiB of the core's 166; a tuple holds 3.4."""
    rib, dirty = make_rib(), Dirty()
    vteps = [f"192.0.2.{n}" for n in range(1, 201)]
    for peer in ("rr1", "rr2"):
        for vtep in vteps:
            rib.announce(peer, imet(vtep), dirty)
    size = rib.sizes()["paths-by-vtep"]
    assert size.entries == 400 and size.bytes / size.entries < 80
    rib.withdraw("rr1", imet(vteps[0]).key, dirty)
    assert rib.flood_vteps(100) == sorted(vteps, key=lambda v: int(v.rsplit(".", 1)[1]))
    rib.withdraw("rr2", imet(vteps[0]).key, dirty)
    assert vteps[0] not in rib.flood_vteps(100) and rib.sizes()["paths-by-vtep"].entries == 398
