"""A classic-BPF socket filter that drops the echo of our own FDB/neighbour writes in the kernel.

100k remote MACs echo as ~300k notifications (bridge entry, VXLAN entry, flag update); queued
undrained they overflow even a 128 MiB receive buffer, and reading them costs CPU. The filter
drops extern_learn neighbour messages on the listed devices before they are queued, and the
flood entries (MAC 00:00:00:00:00:00, not extern_learn) on the listed VXLAN devices: one per
remote VTEP and VNI, 65,000 at 1,000 VNIs and 65 VTEPs, which the monitor read and dropped
one by one (6% of the core's work in a cold start at that size). The flood entry's MAC is
matched where the kernel puts it (vxlan_fdb_info: NDA_LLADDR first); a message laid out
otherwise passes, and the userspace check drops it.

The filter runs in the writer's context for every notification, per listener, so the ifindex
membership test is a balanced search tree (log2 of the devices, not linear). Its leaves test
a run of ifindexes as a range, up to 3 ifindexes with a compare each, or up to 32 ifindexes
of one aligned block with one bitmap test. Sizes (vxlans + svis, both laid out alike):

  layout of the ifindexes              2,000 devices  8,000 devices  limit (4,096 insns)
  dense runs                                      53             53  any
  created in turn (br, vxlan, br, ...)           427          1,565  ~21,000
  br, vxlan, svi, br, ...                        617          2,334  ~14,000
  one in 4 (none adjacent at all)                804          3,084  ~10,700
  scattered (each alone in its block)          2,749         10,869  ~3,000

A comparison-only program cannot do much better than the last line: each isolated ifindex
needs a compare of its own. The kernel also charges the program (converted to eBPF, ~1.3
times longer) to net.core.optmem_max: with Debian 12's 20 KiB the limits are about 8,400
devices created in turn, 4,200 one in 4, 1,400 scattered (the old linear program: ~700).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
import sys
from collections.abc import Iterable
from typing import Literal, NamedTuple

from evpn_agent.kernel.netlink import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    NTF_EXT_LEARNED,
    RTM_DELNEIGH,
    RTM_NEWNEIGH,
)

log = logging.getLogger(__name__)

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
BPF_MAXINSNS = 4096

# instruction classes and modes (linux/bpf_common.h, linux/filter.h)
BPF_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
BPF_LD_H_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_LD_IMM = 0x00  # BPF_LD | BPF_W | BPF_IMM
BPF_LD_LEN = 0x80  # BPF_LD | BPF_W | BPF_LEN: A = the message's length
BPF_LD_MEM = 0x60  # BPF_LD | BPF_W | BPF_MEM
BPF_ST = 0x02  # M[k] = A
BPF_ALU_LSH_K = 0x64  # BPF_ALU | BPF_LSH | BPF_K
BPF_ALU_LSH_X = 0x6C  # BPF_ALU | BPF_LSH | BPF_X
BPF_ALU_OR_X = 0x4C  # BPF_ALU | BPF_OR | BPF_X
BPF_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
BPF_TAX = 0x07  # BPF_MISC | BPF_TAX
BPF_TXA = 0x87  # BPF_MISC | BPF_TXA
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_JA = 0x05  # BPF_JMP | BPF_JA
BPF_RET_K = 0x06  # BPF_RET | BPF_K

ACCEPT = 0xFFFF_FFFF
DROP = 0
MAX_JUMP = 255  # jt/jf are 8 bits; BPF_JA's k is 32 bits

# offsets in a neighbour notification (one message per skb): nlmsghdr(16) + ndmsg
OFF_TYPE = 4
OFF_FAMILY = 16
OFF_IFINDEX = 20
OFF_FLAGS = 26
# the first attribute (after ndmsg): a flood entry's NDA_LLADDR, its 6-byte MAC at OFF_MAC
OFF_ATTR = 28
OFF_MAC = 32
NDA_LLADDR = 2
LLADDR_ATTR_LEN = 4 + 6
IFINDEX_MEM = 0  # scratch word holding the ifindex while A holds the family

Insn = tuple[int, int, int, int]  # code, jt, jf, k
ByteOrder = Literal["little", "big"]

_SPACE = 1 << 32  # ifindexes as the unsigned 32-bit values the jumps compare
_BLOCK = 32  # bits in a bitmap leaf


def _loaded16(value: int, byteorder: ByteOrder) -> int:
    """What a (big-endian) BPF_H load reads where the host stored `value`."""
    return int.from_bytes(value.to_bytes(2, byteorder), "big")


# --- the membership test: segments of the ifindex space ---------------------------------------


class _Segment(NamedTuple):
    """[start, next segment's start) of the ifindex space and how its leaf decides."""

    start: int
    kind: str  # "accept", "drop" (a run of ours), "eq" (a few of ours), "bits" (in a block)
    k: tuple[int, ...] = ()  # the ifindexes for "eq", the bitmap (bit i: base + i) for "bits"

    def leaf_size(self) -> int:
        return _leaf_size(self.kind, len(self.k))


# Up to 3 compares in a row cost no more than a subtree over them, and fewer instructions.
_MAX_CHAIN = 3


def _leaf_size(kind: str, keys: int) -> int:
    """Instructions of a leaf besides its tree node ("accept"/"drop" jump straight to a RET)."""
    return {"eq": keys, "bits": 2}.get(kind, 0)


class _Choice(NamedTuple):
    cost: int
    prev: tuple[int, str] | None  # DP state before this segment
    first: int  # index of its first key


def _block_base(key: int) -> int:
    return key - key % _BLOCK


def _starts(keys: list[int], i: int, kind: str) -> tuple[int, int]:
    """Where a segment of `kind` whose first key is keys[i] may start (inclusive range)."""
    if kind == "eq":
        return 0, keys[i]
    if kind == "drop":
        return keys[i], keys[i]
    return _block_base(keys[i]), keys[i]


def _ends(keys: list[int], j: int, kind: str) -> tuple[int, int]:
    """Where a segment of `kind` whose last key is keys[j - 1] may end (exclusive end)."""
    last = keys[j - 1]
    if kind == "eq":
        return last + 1, _SPACE
    if kind == "drop":
        return last + 1, last + 1
    return last + 1, _block_base(last) + _BLOCK


def _meet(ends: tuple[int, int], starts: tuple[int, int]) -> int | None:
    """A boundary both sides accept, or None: then an "accept" segment fills the gap."""
    lo, hi = max(ends[0], starts[0]), min(ends[1], starts[1])
    return lo if lo <= hi else None


def _segments(keys: list[int]) -> list[_Segment]:
    """Cover [0, 2**32) with segments that test the sorted `keys` in the fewest instructions.

    Dynamic programme over the keys: after keys[:i], the last segment's kind fixes where it
    may end ("eq" anywhere after its key, "bits" inside its block, "drop" just after its run);
    the next segment's kind fixes where it may start. Where they cannot meet, an "accept"
    segment (one more tree node) fills the gap.
    """
    n = len(keys)
    if n == 0:
        return [_Segment(0, "accept")]
    run_end = [n] * n  # the maximal run of consecutive ifindexes from i ends before run_end[i]
    for i in range(n - 2, -1, -1):
        run_end[i] = run_end[i + 1] if keys[i + 1] == keys[i] + 1 else i + 1

    def gap(ends: tuple[int, int], starts: tuple[int, int]) -> int:
        return 0 if _meet(ends, starts) is not None else 1

    best: list[dict[str, _Choice]] = [{} for _ in range(n + 1)]
    for i in range(n):
        # cheapest way to have keys[:i] done and then start a segment of each kind at keys[i]
        entry: dict[str, tuple[int, tuple[int, str] | None]] = {}
        for kind in ("eq", "drop", "bits"):
            starts = _starts(keys, i, kind)
            if i == 0:
                entry[kind] = (gap((0, 0), starts), None)
            else:
                entry[kind] = min(
                    (choice.cost + gap(_ends(keys, i, prev), starts), (i, prev))
                    for prev, choice in best[i].items()
                )
        candidates = [("eq", j) for j in range(i + 1, min(i + _MAX_CHAIN, n) + 1)]
        if run_end[i] - i >= 2:
            candidates.append(("drop", run_end[i]))
        block_end = _block_base(keys[i]) + _BLOCK
        j = i + 1
        while j < n and keys[j] < block_end:
            j += 1
            candidates.append(("bits", j))
        for kind, j in candidates:
            cost = entry[kind][0] + 1 + _leaf_size(kind, j - i)
            if kind not in best[j] or cost < best[j][kind].cost:
                best[j][kind] = _Choice(cost, entry[kind][1], i)

    def total(kind: str) -> int:
        return best[n][kind].cost + gap(_ends(keys, n, kind), (_SPACE, _SPACE))

    state: tuple[int, str] | None = (n, min(best[n], key=total))
    chosen: list[tuple[int, int, str]] = []  # (first key, end key index, kind), last first
    while state is not None:
        j, kind = state
        choice = best[j][kind]
        chosen.append((choice.first, j, kind))
        state = choice.prev
    chosen.reverse()
    return _place(keys, chosen)


def _place(keys: list[int], chosen: list[tuple[int, int, str]]) -> list[_Segment]:
    """Concrete segments for the chosen (first, end, kind) key groups, gaps filled."""
    segments: list[_Segment] = []
    ends = (0, 0)  # the space starts at 0
    for first, end, kind in chosen:
        starts = _starts(keys, first, kind)
        start = _meet(ends, starts)
        if start is None:  # a gap of non-members between them
            segments.append(_Segment(ends[1], "accept"))
            start = starts[0]
        if kind == "eq":
            segments.append(_Segment(start, kind, tuple(keys[first:end])))
        elif kind == "bits":
            bitmap = sum(1 << (key % _BLOCK) for key in keys[first:end])
            segments.append(_Segment(start, kind, (bitmap,)))
        else:
            segments.append(_Segment(start, kind))
        ends = _ends(keys, end, kind)
    if ends[1] < _SPACE:
        segments.append(_Segment(ends[1], "accept"))
    return segments


# --- the membership test: a balanced search tree over the segments ---------------------------


def _leaf_tree(segments: list[_Segment]) -> list[Insn]:
    """A search tree with its own RET pair at the end, short enough that every jump reaches."""
    drop_at, accept_at = -1, -2  # placeholders until the RETs are placed
    code: list[list[int]] = []

    def emit(part: list[_Segment]) -> int:  # index of the code that decides `part`
        if len(part) == 1:
            seg = part[0]
            if seg.kind in ("accept", "drop"):
                return accept_at if seg.kind == "accept" else drop_at
            at = len(code)
            if seg.kind == "eq":  # the last compare's miss is the segment's miss
                for key in seg.k[:-1]:
                    code.append([BPF_JEQ_K, drop_at, len(code) + 1, key])
                code.append([BPF_JEQ_K, drop_at, accept_at, seg.k[-1]])
            else:  # X holds 1 << (ifindex % 32); the tree put A in this block
                code.extend([[BPF_TXA, 0, 0, 0], [BPF_JSET_K, drop_at, accept_at, *seg.k]])
            return at
        at = len(code)
        mid = len(part) // 2
        code.append([BPF_JGE_K, 0, 0, part[mid].start])
        code[at][2] = emit(part[:mid])
        code[at][1] = emit(part[mid:])
        return at

    if emit(segments) < 0:  # one segment, all accept or all drop
        return [(BPF_RET_K, 0, 0, ACCEPT if segments[0].kind == "accept" else DROP)]
    targets = {drop_at: len(code), accept_at: len(code) + 1}
    program: list[Insn] = []
    for pc, (op, jt, jf, k) in enumerate(code):
        if op in (BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K):
            jt, jf = (targets.get(t, t) - pc - 1 for t in (jt, jf))
            assert 0 <= jt <= MAX_JUMP and 0 <= jf <= MAX_JUMP
        program.append((op, jt, jf, k))
    return [*program, (BPF_RET_K, 0, 0, DROP), (BPF_RET_K, 0, 0, ACCEPT)]


def _tree_size(segments: list[_Segment]) -> int:
    """len(_leaf_tree(segments)) for more than one segment."""
    return len(segments) - 1 + sum(s.leaf_size() for s in segments) + 2


def _search(segments: list[_Segment]) -> list[Insn]:
    """A = ifindex, X = 1 << (ifindex % 32): RET DROP for ours, RET ACCEPT for the rest."""
    if len(segments) == 1 or _tree_size(segments) <= MAX_JUMP + 2:
        return _leaf_tree(segments)
    mid = len(segments) // 2
    lower, upper = _search(segments[:mid]), _search(segments[mid:])
    pivot = segments[mid].start
    if len(lower) <= MAX_JUMP:
        return [(BPF_JGE_K, len(lower), 0, pivot), *lower, *upper]
    # too far for jt: jump to a BPF_JA trampoline over the lower half
    return [(BPF_JGE_K, 0, 1, pivot), (BPF_JA, 0, 0, len(lower)), *lower, *upper]


# --- the program ------------------------------------------------------------------------------


def _load_ifindex(byteorder: ByteOrder) -> list[Insn]:
    """A = ndm_ifindex as a number, whatever the host's byte order.

    Netlink fields are host-endian and cBPF loads are big-endian. For equality a byte-swapped
    constant would do, but the tree compares for order and its ranges and bitmap blocks need
    neighbouring ifindexes to be neighbouring numbers, so on a little-endian host the ifindex
    is reassembled byte by byte (13 cheap instructions per message, once).
    """
    if byteorder == "big":
        return [(BPF_LD_W_ABS, 0, 0, OFF_IFINDEX)]
    insns: list[Insn] = [(BPF_LD_B_ABS, 0, 0, OFF_IFINDEX + 3)]
    for offset in (2, 1, 0):
        insns += [
            (BPF_ALU_LSH_K, 0, 0, 8),
            (BPF_TAX, 0, 0, 0),
            (BPF_LD_B_ABS, 0, 0, OFF_IFINDEX + offset),
            (BPF_ALU_OR_X, 0, 0, 0),
        ]
    return insns


def _drop_if_ifindex_in(ifindexes: Iterable[int]) -> list[Insn]:
    """The ifindex (kept in scratch memory) is one of ours: RET DROP, else RET ACCEPT."""
    keys = sorted({ifindex % _SPACE for ifindex in ifindexes})
    return [(BPF_LD_MEM, 0, 0, IFINDEX_MEM), *_search(_segments(keys))]


def build_program(vxlans: Iterable[int], svis: Iterable[int]) -> list[Insn]:
    return _build(vxlans, svis, sys.byteorder)


def _build(vxlans: Iterable[int], svis: Iterable[int], byteorder: ByteOrder) -> list[Insn]:
    fdb = _drop_if_ifindex_in(vxlans)
    neigh = _drop_if_ifindex_in(svis)
    ifindex = [
        *_load_ifindex(byteorder),
        (BPF_ST, 0, 0, IFINDEX_MEM),
        (BPF_ALU_AND_K, 0, 0, _BLOCK - 1),  # X = 1 << (ifindex % 32), for the bitmap leaves
        (BPF_TAX, 0, 0, 0),
        (BPF_LD_IMM, 0, 0, 1),
        (BPF_ALU_LSH_X, 0, 0, 0),
        (BPF_TAX, 0, 0, 0),
    ]
    # Not extern_learn: dropped only if it is a flood entry (bridge family, zero MAC in the
    # first attribute) on a listed VXLAN device. Every load stays inside the message (a load
    # past its end would end the program with DROP), and X is left as the leaves need it.
    lladdr_header = int.from_bytes(
        LLADDR_ATTR_LEN.to_bytes(2, byteorder) + NDA_LLADDR.to_bytes(2, byteorder), "big"
    )
    flood: list[Insn] = [
        (BPF_LD_B_ABS, 0, 0, OFF_FAMILY),
        (BPF_JEQ_K, 0, 0, AF_BRIDGE),
        (BPF_LD_LEN, 0, 0, 0),
        (BPF_JGE_K, 0, 0, OFF_MAC + 6),
        (BPF_LD_W_ABS, 0, 0, OFF_ATTR),
        (BPF_JEQ_K, 0, 0, lladdr_header),
        (BPF_LD_W_ABS, 0, 0, OFF_MAC),
        (BPF_JEQ_K, 0, 0, 0),
        (BPF_LD_H_ABS, 0, 0, OFF_MAC + 4),
        (BPF_JEQ_K, 0, 0, 0),
    ]
    # each compare's miss: the RET ACCEPT after this block and its jump to the fdb block
    flood = [
        (op, jt, len(flood) - pc, k) if op in (BPF_JEQ_K, BPF_JGE_K) else (op, jt, jf, k)
        for pc, (op, jt, jf, k) in enumerate(flood)
    ]
    # The kernel's check that scratch memory is stored before it is loaded reads the program
    # top to bottom and lets a RET fall through: the accept before the store has its own.
    # extern_learn: to the fdb or the neigh block by family
    by_family: list[Insn] = [
        (BPF_LD_B_ABS, 0, 0, OFF_FAMILY),
        (BPF_JEQ_K, 4, 0, AF_BRIDGE),  # -> fdb block (after the RET ACCEPT)
        (BPF_JEQ_K, 1, 0, AF_INET),  # -> the jump to the neigh block
        (BPF_JEQ_K, 0, 1, AF_INET6),
        (BPF_JA, 0, 0, 1 + len(fdb)),  # over RET ACCEPT and the fdb block to the neigh block
        (BPF_RET_K, 0, 0, ACCEPT),
    ]
    head: list[Insn] = [
        (BPF_LD_H_ABS, 0, 0, OFF_TYPE),
        (BPF_JEQ_K, 2, 0, _loaded16(RTM_NEWNEIGH, byteorder)),
        (BPF_JEQ_K, 1, 0, _loaded16(RTM_DELNEIGH, byteorder)),
        (BPF_RET_K, 0, 0, ACCEPT),  # neither
        *ifindex,
        (BPF_LD_B_ABS, 0, 0, OFF_FLAGS),
        (BPF_JSET_K, len(flood) + 2, 0, NTF_EXT_LEARNED),  # -> by_family
        *flood,
        (BPF_JA, 0, 0, 1 + len(by_family)),  # a flood entry: to the fdb block
        (BPF_RET_K, 0, 0, ACCEPT),  # not extern_learn, not a flood entry
        *by_family,
    ]
    return head + fdb + neigh


def run_program(program: list[Insn], packet: bytes) -> int:
    """Interpret the subset of cBPF that build_program emits (for tests)."""
    return run_counted(program, packet)[0]


def run_counted(program: list[Insn], packet: bytes) -> tuple[int, int]:
    """run_program's verdict and how many instructions it executed."""
    acc = x = pc = executed = 0
    mem = [0] * 16
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        executed += 1
        if code == BPF_LD_B_ABS:
            acc = packet[k]
        elif code == BPF_LD_H_ABS:
            acc = int.from_bytes(packet[k : k + 2], "big")
        elif code == BPF_LD_W_ABS:
            acc = int.from_bytes(packet[k : k + 4], "big")
        elif code == BPF_LD_IMM:
            acc = k
        elif code == BPF_LD_LEN:
            acc = len(packet)
        elif code == BPF_LD_MEM:
            acc = mem[k]
        elif code == BPF_ST:
            mem[k] = acc
        elif code == BPF_ALU_LSH_K:
            acc = (acc << k) % _SPACE
        elif code == BPF_ALU_LSH_X:
            if x >= 32:
                raise ValueError("shift by 32 or more is undefined")
            acc = (acc << x) % _SPACE
        elif code == BPF_ALU_OR_X:
            acc |= x
        elif code == BPF_ALU_AND_K:
            acc &= k
        elif code == BPF_TAX:
            x = acc
        elif code == BPF_TXA:
            acc = x
        elif code == BPF_JEQ_K:
            pc += jt if acc == k else jf
        elif code == BPF_JGE_K:
            pc += jt if acc >= k else jf
        elif code == BPF_JSET_K:
            pc += jt if acc & k else jf
        elif code == BPF_JA:
            pc += k
        elif code == BPF_RET_K:
            return k, executed
        else:
            raise ValueError(f"unknown cBPF opcode {code:#x}")


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter)))


def attach(sock: socket.socket, program: list[Insn]) -> bool:
    """Install (or replace) the socket's filter; False if the kernel refuses it.

    The old filter goes first, even when the new one is refused: a stale filter would hide
    messages about devices that are no longer ours. The kernel charges a replacement to the
    socket's option memory before it frees the old filter, so with Debian 12's 20 KiB
    net.core.optmem_max a filter of more than half of that could not be replaced at all.
    """
    with contextlib.suppress(FileNotFoundError):  # ENOENT: there was none
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    if len(program) > BPF_MAXINSNS:
        log.warning("too many quiet devices for a kernel filter (%d insns)", len(program))
        return False
    insns = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    fprog = _SockFprog(len(program), insns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as exc:
        log.warning("cannot attach netlink socket filter: %s", exc)
        return False
    return True
