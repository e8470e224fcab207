"""The in-kernel echo filter's search tree: it decides exactly as the linear program it replaced
did, every jump lands inside the program, it stays small, and the kernel accepts it."""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evpn_agent.kernel import echo_filter
from evpn_agent.kernel.echo_filter import (
    ACCEPT,
    BPF_MAXINSNS,
    DROP,
    Insn,
    attach,
    build_program,
    run_counted,
    run_program,
)

AF_INET, AF_BRIDGE, AF_INET6 = 2, 7, 10
NEWLINK, NEWNEIGH, DELNEIGH = 16, 28, 29
EXT_LEARNED, NTF_SELF = 0x10, 0x02
MAX_IFINDEX = 2**31 - 1  # ndm_ifindex is a positive int
SO_GET_FILTER = 26  # = SO_ATTACH_FILTER; getsockopt answers the filter's length


ZERO_MAC = bytes(6)
NDA_DST, NDA_LLADDR = 1, 2


def neigh_msg(
    msg_type: int,
    family: int,
    ifindex: int,
    flags: int,
    order: str = "=",
    attrs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """nlmsghdr + ndmsg (+ attributes) in the host's byte order (or `order`), as the kernel
    sends them."""
    body = struct.pack(f"{order}BxxxiHBB", family, ifindex, 0x40, flags, 0)
    for kind, value in attrs:
        attr = struct.pack(f"{order}HH", 4 + len(value), kind) + value
        body += attr + bytes(-len(attr) % 4)
    return struct.pack(f"{order}IHHII", 16 + len(body), msg_type, 0, 0, 0) + body


# A flood entry as vxlan_fdb_info sends it: NDA_LLADDR first, then NDA_DST
FLOOD_ATTRS = ((NDA_LLADDR, ZERO_MAC), (NDA_DST, bytes([192, 0, 2, 7])))


def linear_program(vxlans: Iterable[int], svis: Iterable[int]) -> list[Insn]:
    """The filter as it was before the search tree (two instructions per device): the oracle."""

    def be32(value: int) -> int:
        return int.from_bytes(struct.pack("=I", value), "big")

    def drop_if_in(ifindexes: Iterable[int]) -> list[Insn]:
        insns: list[Insn] = [(0x20, 0, 0, 20)]
        for ifindex in sorted(ifindexes):
            insns += [(0x15, 0, 1, be32(ifindex)), (0x06, 0, 0, DROP)]
        return [*insns, (0x06, 0, 0, ACCEPT)]

    fdb, neigh = drop_if_in(vxlans), drop_if_in(svis)
    be16 = [int.from_bytes(struct.pack("=H", t), "big") for t in (NEWNEIGH, DELNEIGH)]
    head: list[Insn] = [
        (0x28, 0, 0, 4),
        (0x15, 1, 0, be16[0]),
        (0x15, 0, 7, be16[1]),
        (0x30, 0, 0, 26),
        (0x45, 0, 5, EXT_LEARNED),
        (0x30, 0, 0, 16),
        (0x15, 4, 0, AF_BRIDGE),
        (0x15, 1, 0, AF_INET),
        (0x15, 0, 1, AF_INET6),
        (0x05, 0, 0, 1 + len(fdb)),
        (0x06, 0, 0, ACCEPT),
    ]
    return head + fdb + neigh


# --- what the kernel checks (net/core/filter.c, bpf_check_classic) --------------------------

CONDITIONAL = {0x15, 0x35, 0x45}  # JEQ, JGE, JSET with K
EMITTED = CONDITIONAL | {
    0x05,
    0x06,
    0x00,
    0x80,
    0x02,
    0x20,
    0x28,
    0x30,
    0x60,
    0x64,
    0x6C,
    0x4C,
    0x54,
    0x07,
    0x87,
}


def check_wellformed(program: list[Insn]) -> None:
    """Every jump lands inside the program and forward, nothing runs off its end (so every
    path ends in a RET), and scratch memory is stored before it is loaded, read top to bottom
    as the kernel reads it (a RET does not reset what is known to be stored)."""
    assert program and program[-1][0] == 0x06, "runs off the end"
    masks = [0xFFFF] * len(program)
    stored = 0
    for pc, (code, jt, jf, k) in enumerate(program):
        assert code in EMITTED, f"{pc}: opcode {code:#x} outside run_program's subset"
        assert 0 <= k < 2**32
        stored &= masks[pc]
        if code in CONDITIONAL:
            assert 0 <= jt <= 255 and 0 <= jf <= 255
            for offset in (jt, jf):
                assert pc + 1 + offset < len(program), f"{pc}: jump out of the program"
                masks[pc + 1 + offset] &= stored
            stored = 0xFFFF
        elif code == 0x05:  # BPF_JA
            assert pc + 1 + k < len(program), f"{pc}: jump out of the program"
            masks[pc + 1 + k] &= stored
            stored = 0xFFFF
        elif code == 0x06:
            pass
        else:
            assert (jt, jf) == (0, 0)
            if code == 0x02:
                stored |= 1 << k
            elif code == 0x60:
                assert stored & (1 << k), f"{pc}: M[{k}] loaded before it is stored"
            elif code == 0x64:
                assert k < 32


# --- the decisions --------------------------------------------------------------------------


def expected_drop(
    msg_type: int,
    family: int,
    ifindex: int,
    flags: int,
    vxlans: frozenset[int],
    svis: frozenset[int],
    flood: bool = False,
) -> bool:
    """``flood``: the message is a flood entry laid out as the kernel sends it."""
    if msg_type not in (NEWNEIGH, DELNEIGH):
        return False
    if not flags & EXT_LEARNED:
        return flood and family == AF_BRIDGE and ifindex in vxlans
    if family == AF_BRIDGE:
        return ifindex in vxlans
    return family in (AF_INET, AF_INET6) and ifindex in svis


def probes(vxlans: frozenset[int], svis: frozenset[int], extra: list[int]) -> set[int]:
    """Members, their neighbours and the edges of their 32-blocks, capped, plus `extra`."""
    near: set[int] = {1, 2, 31, 32, 33, MAX_IFINDEX, *extra}
    members = sorted(vxlans | svis)
    for ifindex in members[:: max(1, len(members) // 150)]:
        base = ifindex - ifindex % 32
        near |= {ifindex - 1, ifindex, ifindex + 1, base - 1, base, base + 31, base + 32}
    return {i for i in near if 1 <= i <= MAX_IFINDEX}


def assert_decides_like(
    program: list[Insn], vxlans: frozenset[int], svis: frozenset[int], ifindexes: set[int]
) -> None:
    oracle = linear_program(vxlans, svis) if len(vxlans) + len(svis) <= 200 else None
    for ifindex in ifindexes:
        for msg_type, family, flags in (
            (NEWNEIGH, AF_BRIDGE, EXT_LEARNED | NTF_SELF),
            (DELNEIGH, AF_BRIDGE, EXT_LEARNED),
            (NEWNEIGH, AF_INET, EXT_LEARNED),
            (DELNEIGH, AF_INET6, EXT_LEARNED),
            (NEWNEIGH, AF_BRIDGE, NTF_SELF),  # not extern_learn
            (NEWNEIGH, 0, EXT_LEARNED),  # another family
            (NEWLINK, AF_BRIDGE, EXT_LEARNED),  # not a neighbour message
        ):
            data = neigh_msg(msg_type, family, ifindex, flags)
            dropped = run_program(program, data) == DROP
            want = expected_drop(msg_type, family, ifindex, flags, vxlans, svis)
            assert dropped == want, (msg_type, family, ifindex, flags)
            if oracle is not None:
                assert (run_program(oracle, data) == DROP) == want
        for msg_type, family, flags, attrs, flood in (
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, FLOOD_ATTRS, True),  # a flood entry
            (DELNEIGH, AF_BRIDGE, NTF_SELF, FLOOD_ATTRS, True),
            (NEWNEIGH, AF_BRIDGE, EXT_LEARNED, FLOOD_ATTRS, True),
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, ((NDA_LLADDR, bytes([2, 0, 0, 0, 0, 1])),), False),
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, ((NDA_LLADDR, bytes([0, 0, 0, 0, 0, 1])),), False),
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, ((NDA_LLADDR, bytes([1, 0, 0, 0, 0, 0])),), False),
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, FLOOD_ATTRS[::-1], False),  # MAC not first
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, ((NDA_LLADDR, bytes(4)),), False),  # too short
            (NEWNEIGH, AF_BRIDGE, NTF_SELF, ((NDA_DST, bytes(8)),), False),  # not a MAC
            (NEWNEIGH, AF_INET, 0, FLOOD_ATTRS, False),  # not the bridge family
            (NEWLINK, AF_BRIDGE, NTF_SELF, FLOOD_ATTRS, False),
        ):
            data = neigh_msg(msg_type, family, ifindex, flags, attrs=attrs)
            dropped = run_program(program, data) == DROP
            want = expected_drop(msg_type, family, ifindex, flags, vxlans, svis, flood)
            assert dropped == want, (msg_type, family, ifindex, flags, attrs)


def layout(start: int, step: int, count: int) -> frozenset[int]:
    return frozenset(i for i in range(start, start + step * count, step) if i <= MAX_IFINDEX)


ifindex = st.integers(1, MAX_IFINDEX)
small = st.integers(1, 600)
ifindex_sets = st.one_of(
    st.frozensets(ifindex, max_size=3),  # 0, 1, 2, 3 devices anywhere
    st.frozensets(small, max_size=120),  # random, dense to sparse
    st.builds(  # created in a pattern (runs, every other, ...), several patterns mixed
        lambda parts: frozenset().union(*parts),
        st.lists(
            st.builds(layout, st.one_of(small, ifindex), st.integers(1, 90), st.integers(1, 4000)),
            max_size=3,
        ),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ifindex_sets, ifindex_sets, st.lists(ifindex, max_size=20))
@example(frozenset(), frozenset(), [])
@example(frozenset({1}), frozenset({MAX_IFINDEX}), [])
@example(frozenset(range(3, 16003, 4)), frozenset(range(5, 16005, 4)), [])  # 8,000, none adjacent
@example(frozenset(range(1, 33)), frozenset(range(31, 97)), [])  # runs across 32-blocks
@example(frozenset({32, 34, 36, 38, 40, 100, 101, 102}), frozenset(), [])  # a bitmap, a gap
def test_search_tree_drops_exactly_what_the_linear_filter_dropped(
    vxlans: frozenset[int], svis: frozenset[int], extra: list[int]
) -> None:
    vxlans, svis = frozenset(sorted(vxlans)[:4000]), frozenset(sorted(svis)[:4000])
    program = build_program(vxlans, svis)
    # only thousands of scattered devices exceed the limit (their sizes are tested below)
    assert len(program) <= BPF_MAXINSNS or len(vxlans) + len(svis) > 2900
    check_wellformed(program)
    assert_decides_like(program, vxlans, svis, probes(vxlans, svis, extra))


def test_a_big_endian_host_loads_the_ifindex_as_it_is() -> None:
    vxlans, svis = frozenset({5, 6, 7, 40, 42, 70000}), frozenset({4, 300})
    program = echo_filter._build(vxlans, svis, "big")
    check_wellformed(program)
    for ifindex in (3, 4, 5, 7, 8, 40, 41, 42, 300, 69999, 70000, 70001):
        for family in (AF_BRIDGE, AF_INET6):
            data = neigh_msg(NEWNEIGH, family, ifindex, EXT_LEARNED, order=">")
            want = expected_drop(NEWNEIGH, family, ifindex, EXT_LEARNED, vxlans, svis)
            assert (run_program(program, data) == DROP) == want
        flood = neigh_msg(NEWNEIGH, AF_BRIDGE, ifindex, NTF_SELF, ">", FLOOD_ATTRS)
        want = expected_drop(NEWNEIGH, AF_BRIDGE, ifindex, NTF_SELF, vxlans, svis, True)
        assert (run_program(program, flood) == DROP) == want


def test_the_checker_catches_what_the_kernel_refuses() -> None:
    with pytest.raises(AssertionError, match="jump out"):
        check_wellformed([(0x15, 0, 1, 0), (0x06, 0, 0, 0)])
    with pytest.raises(AssertionError, match="before it is stored"):
        check_wellformed([(0x60, 0, 0, 0), *build_program({5}, {4})])
    with pytest.raises(AssertionError, match="runs off"):
        check_wellformed([(0x06, 0, 0, 0), (0x07, 0, 0, 0)])


# --- sizes ----------------------------------------------------------------------------------


def in_turn(total: int, kinds: int = 2) -> tuple[range, range]:
    """VXLAN and SVI ifindexes of `total` devices created one VNI after another, each VNI
    making `kinds` devices (a bridge and a VXLAN device: 2), so no two of a kind adjacent."""
    count = total // 2
    return range(3, 3 + kinds * count, kinds), range(2, 2 + kinds * count, kinds)


def test_8000_devices_none_adjacent_fit_well_below_the_limit() -> None:
    vxlans, svis = range(3, 16003, 4), range(5, 16005, 4)  # 8,000, no two adjacent at all
    program = build_program(vxlans, svis)
    check_wellformed(program)
    assert len(program) <= 3100 < BPF_MAXINSNS
    assert len(build_program(*in_turn(8000))) <= 1600  # br, vxlan, br, vxlan, ...
    assert len(build_program(range(10, 4010), range(5000, 9000))) <= 60  # dense runs


def test_2000_devices_cost_a_tenth_of_the_linear_program() -> None:
    vxlans, svis = in_turn(2000)
    assert len(linear_program(vxlans, svis)) == 4015
    assert len(build_program(vxlans, svis)) <= 430
    # the worst case, each device alone in its 32-block, still fits
    scattered = build_program(range(40, 80_000, 80), range(80, 80_040, 80))
    check_wellformed(scattered)
    assert len(scattered) <= 2800


def test_a_message_runs_a_few_dozen_instructions_not_thousands() -> None:
    """The cost paid in the writer's context, per listener, for each notification."""
    vxlans, svis = in_turn(8000, kinds=4)
    program = build_program(vxlans, svis)
    linear = linear_program(vxlans, svis)
    for ifindex in (vxlans[0], vxlans[-1], svis[len(svis) // 2], 12345, 9_999_999):
        data = neigh_msg(NEWNEIGH, AF_BRIDGE, ifindex, EXT_LEARNED)
        verdict, executed = run_counted(program, data)
        assert verdict == run_program(linear, data)
        assert executed <= 60
    assert run_counted(linear, neigh_msg(NEWNEIGH, AF_BRIDGE, 9_999_999, EXT_LEARNED))[1] > 4000


# --- the kernel -----------------------------------------------------------------------------


def route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def filter_length(sock: socket.socket) -> int:
    """The attached filter's length in instructions (0: none): SO_GET_FILTER with a zero
    length answers only that (Python's getsockopt cannot pass a zero length)."""
    libc = ctypes.CDLL(None, use_errno=True)
    length = ctypes.c_uint32(0)
    if libc.getsockopt(sock.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, None,
                       ctypes.byref(length)) != 0:  # fmt: skip
        raise OSError(ctypes.get_errno(), "SO_GET_FILTER")
    return length.value


def test_the_kernel_accepts_the_program_for_8000_devices() -> None:
    # created in turn: fits even Debian 12's 20 KiB optmem_max (the netns tests check that)
    program = build_program(*in_turn(8000))
    with route_socket() as sock:
        assert attach(sock, program)
        assert filter_length(sock) == len(program)
        assert attach(sock, program)  # replaced
        assert filter_length(sock) == len(program)


def test_a_program_too_long_is_not_attached_and_removes_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    absurd = build_program(range(40, 400_000, 80), range(80, 400_040, 80))  # 10,000 scattered
    assert len(absurd) > BPF_MAXINSNS
    with route_socket() as sock:
        assert attach(sock, build_program({5}, {4}))
        with caplog.at_level(logging.WARNING):
            assert not attach(sock, absurd)
        assert "too many quiet devices" in caplog.text
        assert filter_length(sock) == 0  # no stale filter hides what is no longer ours


def test_added_devices_join_the_filter_at_most_once_a_delay_removed_ones_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VNIs created one by one must not rebuild the filter each time (~20 ms at 2,000
    devices); a device no longer managed must leave it at once (its events matter again)."""
    import asyncio
    import time

    from evpn_agent.kernel import monitor as monitor_module
    from evpn_agent.kernel.monitor import Monitor
    from evpn_agent.model import Managed

    attached: list[Managed] = []
    monkeypatch.setattr(monitor_module, "FILTER_DELAY", 0.3)
    monkeypatch.setattr(monitor_module, "attach", lambda sock, program: True)

    def quiet(*vxlans: int) -> Managed:
        return Managed(vxlans=frozenset(vxlans))

    async def scenario() -> None:
        monitor = Monitor()
        monitor._sock = object()  # type: ignore[assignment]  # attach is faked
        real = monitor._attach_filter

        def counted(sock: object) -> None:
            real(sock)  # type: ignore[arg-type]
            attached.append(monitor._filtered)

        monkeypatch.setattr(monitor, "_attach_filter", counted)
        monitor._devices.links = {n: object() for n in (1, 2, 3, 4)}  # type: ignore[misc]
        monitor.quiet = quiet(1)
        monitor.quiet = quiet(1, 2)
        monitor.quiet = quiet(1, 2, 3)
        assert attached == [quiet(1)]  # the additions wait
        assert monitor.quiet == quiet(1, 2, 3)
        monitor.quiet = quiet(2, 3)  # 1 left, and still exists: at once
        assert attached == [quiet(1), quiet(2, 3)]
        monitor.quiet = quiet(2, 3, 4)
        deadline = time.monotonic() + 5
        while len(attached) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert attached == [quiet(1), quiet(2, 3), quiet(2, 3, 4)]
        del monitor._devices.links[4]  # 4 deleted: no event can come from it, so it waits
        monitor.quiet = quiet(2, 3)
        assert attached[-1] == quiet(2, 3, 4)
        while len(attached) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert attached == [quiet(1), quiet(2, 3), quiet(2, 3, 4), quiet(2, 3)]
        monitor._sock = None
        monitor.close()

    asyncio.run(scenario())
