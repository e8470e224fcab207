"""A classic-BPF socket filter that drops the echo of our own FDB/neighbour writes in the kernel.

100k remote MACs echo as ~300k notifications (bridge entry, VXLAN entry, flag update); queued
undrained they overflow even a 128 MiB receive buffer, and reading them costs CPU. The filter
drops extern_learn neighbour messages on the listed devices before they are queued. Zero-MAC
(flood) entries are few and stay with the userspace check.

cBPF loads are big-endian; netlink is host-endian, hence the byte-swapped constants.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Iterable

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
BPF_MAXINSNS = 4096

# instruction classes and modes (linux/bpf_common.h)
BPF_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
BPF_LD_H_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_JA = 0x05  # BPF_JMP | BPF_JA
BPF_RET_K = 0x06  # BPF_RET | BPF_K

ACCEPT = 0xFFFF_FFFF
DROP = 0

# offsets in a neighbour notification (one message per skb): nlmsghdr(16) + ndmsg
OFF_TYPE = 4
OFF_FAMILY = 16
OFF_IFINDEX = 20
OFF_FLAGS = 26

Insn = tuple[int, int, int, int]  # code, jt, jf, k


def _be16(value: int) -> int:
    return int.from_bytes(struct.pack("=H", value), "big")


def _be32(value: int) -> int:
    return int.from_bytes(struct.pack("=I", value), "big")


def _drop_if_ifindex_in(ifindexes: Iterable[int]) -> list[Insn]:
    """A = ifindex; drop on a match, else fall through. Two instructions per device keeps
    every jump short (cBPF conditional jumps reach 255 instructions)."""
    insns: list[Insn] = [(BPF_LD_W_ABS, 0, 0, OFF_IFINDEX)]
    for ifindex in sorted(ifindexes):
        insns += [(BPF_JEQ_K, 0, 1, _be32(ifindex)), (BPF_RET_K, 0, 0, DROP)]
    return [*insns, (BPF_RET_K, 0, 0, ACCEPT)]


def build_program(vxlans: Iterable[int], svis: Iterable[int]) -> list[Insn]:
    fdb = _drop_if_ifindex_in(vxlans)
    neigh = _drop_if_ifindex_in(svis)
    head: list[Insn] = [
        (BPF_LD_H_ABS, 0, 0, OFF_TYPE),
        (BPF_JEQ_K, 1, 0, _be16(RTM_NEWNEIGH)),
        (BPF_JEQ_K, 0, 7, _be16(RTM_DELNEIGH)),  # neither: accept (index 10)
        (BPF_LD_B_ABS, 0, 0, OFF_FLAGS),
        (BPF_JSET_K, 0, 5, NTF_EXT_LEARNED),  # not extern_learn: accept
        (BPF_LD_B_ABS, 0, 0, OFF_FAMILY),
        (BPF_JEQ_K, 4, 0, AF_BRIDGE),  # -> fdb block (index 11)
        (BPF_JEQ_K, 1, 0, AF_INET),  # -> jump to neigh block (index 9)
        (BPF_JEQ_K, 0, 1, AF_INET6),
        (BPF_JA, 0, 0, 1 + len(fdb)),  # over ACCEPT and the fdb block to the neigh block
        (BPF_RET_K, 0, 0, ACCEPT),
    ]
    return head + fdb + neigh


def run_program(program: list[Insn], packet: bytes) -> int:
    """Interpret the subset of cBPF that build_program emits (for tests)."""
    acc = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == BPF_LD_B_ABS:
            acc = packet[k]
        elif code == BPF_LD_H_ABS:
            acc = int.from_bytes(packet[k : k + 2], "big")
        elif code == BPF_LD_W_ABS:
            acc = int.from_bytes(packet[k : k + 4], "big")
        elif code == BPF_JEQ_K:
            pc += jt if acc == k else jf
        elif code == BPF_JSET_K:
            pc += jt if acc & k else jf
        elif code == BPF_JA:
            pc += k
        elif code == BPF_RET_K:
            return k
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
    """Install (or replace) the socket's filter; False if the kernel refuses it."""
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
