"""The scale benchmark's emulated VTEPs: the moves they send agree with their model."""

import re

from bench.scale_generator import WITHDRAW_AFTER_S, EmulatedFabric, emulated_address

LINE = re.compile(r"(announce|withdraw) evpn mac rd (\S+):(\d+) mac (\S+) ")


def test_a_withdrawn_route_is_not_announced_again_while_exabgp_may_hold_the_withdraw() -> None:
    # Eight MACs moving every 0.8 s among eight VTEPs: some leave a VTEP for more than
    # WITHDRAW_AFTER_S (its withdraw goes out) and would soon move back to it.
    fabric = EmulatedFabric(vteps=8, vnis=[100], macs_per_vni=1)
    fabric.initial()
    withdrawn: dict[tuple[str, str], float] = {}
    table: dict[tuple[str, str], bool] = {}  # (rd, mac) -> announced (last command wins)
    announces = 0
    now = 0.0
    while now < 120:
        for line in [*fabric.moves(1, now), *fabric.due_withdraws(now)]:
            match = LINE.match(line)
            assert match is not None, line
            action, address, vni, mac = match.groups()
            route = (f"{address}:{vni}", mac)
            if action == "withdraw":
                withdrawn[route] = now
            else:
                announces += 1
                assert now >= withdrawn.get(route, -WITHDRAW_AFTER_S) + WITHDRAW_AFTER_S
            table[route] = action == "announce"
        now += 0.1
    assert announces > 200  # moves still happen
    for line in fabric.due_withdraws(float("inf")):
        match = LINE.match(line)
        assert match is not None
        table[(f"{match[2]}:{match[3]}", match[4])] = False
    announced = {route for route, up in table.items() if up}
    model = {
        (f"{emulated_address(vtep)}:{vni}", mac) for (vni, mac), (vtep, _) in fabric.where.items()
    }
    assert announced == model
