"""rtnetlink neighbour notifications: the socket, a kernel-side filter and a parser."""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable

NETLINK_ROUTE = 0
RTMGRP_NEIGH = 0x4
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
NLMSG_ERROR = 2
AF_BRIDGE = 7
NTF_SELF = 0x02
NTF_MASTER = 0x04
NDA_DST = 1
NDA_LLADDR = 2
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
NLMSGHDR = struct.Struct("=LHHLL")  # len, type, flags, seq, pid
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTATTR = struct.Struct("=HH")
ATTRS_AT = NLMSGHDR.size + NDMSG.size
ZERO_MAC = bytes(6)


def neigh_socket(rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, RTMGRP_NEIGH))
    return sock


def attach_self_filter(sock: socket.socket) -> None:
    """Kernel-side filter: keep only AF_BRIDGE neighbour messages with NTF_SELF set.

    The message starts at the nlmsghdr (16 bytes); ndm_family is at 16, ndm_flags at 26.
    """
    bpf = [
        (0x30, 0, 0, NLMSGHDR.size),  # ldb [16]           ndm_family
        (0x15, 0, 3, AF_BRIDGE),  # jeq #7, else drop
        (0x30, 0, 0, NLMSGHDR.size + 10),  # ldb [26]      ndm_flags
        (0x45, 0, 1, NTF_SELF),  # jset #NTF_SELF, else drop
        (0x06, 0, 0, 0xFFFFFFFF),  # ret accept
        (0x06, 0, 0, 0),  # ret drop
    ]
    code = b"".join(struct.pack("=HBBI", *ins) for ins in bpf)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("@HP", len(bpf), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def messages(data: bytes) -> Iterable[tuple[int, int, int, int, bytes | None, bytes | None]]:
    """(type, family, ifindex, flags, lladdr, dst) of each neighbour message in ``data``."""
    offset, end = 0, len(data)
    while offset + NLMSGHDR.size <= end:
        length, mtype = NLMSGHDR.unpack_from(data, offset)[:2]
        if length < NLMSGHDR.size:
            break
        if mtype in (RTM_NEWNEIGH, RTM_DELNEIGH) and length >= ATTRS_AT:
            family, ifindex, _state, flags, _type = NDMSG.unpack_from(data, offset + 16)
            lladdr = dst = None
            at, stop = offset + ATTRS_AT, offset + length
            while at + 4 <= stop:
                alen, atype = RTATTR.unpack_from(data, at)
                if alen < 4:
                    break
                if atype == NDA_LLADDR:
                    lladdr = data[at + 4 : at + alen]
                elif atype == NDA_DST:
                    dst = data[at + 4 : at + alen]
                at += (alen + 3) & ~3
            yield mtype, family, ifindex, flags, lladdr, dst
        offset += (length + 3) & ~3
