"""Netlink constants and the raw NETLINK_ROUTE socket shared by the writer and the monitor.

Values are from the kernel's uapi headers (linux/netlink.h, linux/rtnetlink.h,
linux/neighbour.h, linux/if_bridge.h); a unit test checks them against pyroute2's.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from evpn_agent.kernel.dumped import Dumped

log = logging.getLogger(__name__)
T = TypeVar("T")

# linux/netlink.h
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # error acks echo only the request header, not its payload
NETLINK_EXT_ACK = 11  # error acks carry the kernel's message (extack)
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; not exported by Python's socket module

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10  # set on dump answers when the table changed during the dump
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
# flags on an NLMSG_ERROR ack
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
RTMGRP_LINK = 0x1  # 1 << (RTNLGRP_LINK - 1)
RTMGRP_NEIGH = 0x4  # 1 << (RTNLGRP_NEIGH - 1); ARP, ND and FDB all use this group
RTEXT_FILTER_BRVLAN = 1 << 1

# linux/socket.h
AF_UNSPEC = 0
AF_INET = 2
AF_BRIDGE = 7
AF_INET6 = 10

# linux/neighbour.h
NDA_DST = 1
NDA_LLADDR = 2
NDA_VLAN = 5
NDA_MASTER = 9
NDA_PROTOCOL = 12

NTF_USE = 0x01
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10

NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

# Our mark on the neighbours we install (NDA_PROTOCOL; 186 is RTPROT_BGP, `ip neigh` shows
# "proto bgp"). FDB entries do not keep it: ownership there is extern_learn on our devices.
RTPROT_EVPN_AGENT = 186

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NLATTR = struct.Struct("=HH")  # len, type
NLMSGERR = struct.Struct("=i")  # negative errno (0 = success ack)
U32 = struct.Struct("=I")


def align4(n: int) -> int:
    return (n + 3) & ~3


def open_route_socket(rcvbuf: int, groups: int = 0) -> socket.socket:
    """A raw NETLINK_ROUTE socket with a large receive buffer, bound to `groups`.

    Acks and events are queued per message (an skb each, ~1 KiB of buffer accounting), so
    the default buffer (~200 KiB) overflows on bursts. As root SO_RCVBUFFORCE lifts the
    net.core.rmem_max cap; otherwise we get what SO_RCVBUF allows.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError as exc:  # old kernels: acks still work, just bigger/without text
                if exc.errno != errno.ENOPROTOOPT:
                    raise
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    actual = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if actual < rcvbuf:
        log.warning("netlink receive buffer is %d bytes, wanted %d", actual, rcvbuf)
    return sock


def parse_ack(buf: bytes | bytearray | memoryview, offset: int) -> tuple[int, str]:
    """(errno, kernel message) of the NLMSG_ERROR message at `offset` (errno 0 = success)."""
    length, _type, flags, _seq, _pid = NLMSGHDR.unpack_from(buf, offset)
    (error,) = NLMSGERR.unpack_from(buf, offset + NLMSGHDR.size)
    if error == 0 or not flags & NLM_F_ACK_TLVS:
        return -error, ""
    inner = offset + NLMSGHDR.size + NLMSGERR.size
    if flags & NLM_F_CAPPED:
        pos = inner + NLMSGHDR.size
    else:
        (inner_len,) = U32.unpack_from(buf, inner)
        pos = inner + align4(inner_len)
    end = offset + length
    while pos + NLATTR.size <= end:
        alen, atype = NLATTR.unpack_from(buf, pos)
        if alen < NLATTR.size:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            raw = bytes(buf[pos + NLATTR.size : pos + alen])
            return -error, raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        pos += align4(alen)
    return -error, ""


IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
_DUMP_FLAGS = NLM_F_REQUEST | NLM_F_DUMP
_DUMP_SEQ = 1


def neigh_dump_request(family: int) -> bytes:
    body = NDMSG.pack(family, 0, 0, 0, 0)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETNEIGH, _DUMP_FLAGS, _DUMP_SEQ, 0) + body


def link_dump_request(family: int, ext_mask: int) -> bytes:
    body = IFINFOMSG.pack(family, 0, 0, 0, 0) + NLATTR.pack(8, IFLA_EXT_MASK) + U32.pack(ext_mask)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETLINK, _DUMP_FLAGS, _DUMP_SEQ, 0) + body


async def request_dump(request: bytes, decode: Callable[[bytearray, int], T | None]) -> list[T]:
    """Like :func:`request_dump_checked`, for callers that can live with a dump the kernel
    flagged as interrupted (events about the changes follow on a bound monitor)."""
    results, _complete = await request_dump_checked(request, decode)
    return results


async def request_dump_checked(
    request: bytes, decode: Callable[[bytearray, int], T | None]
) -> tuple[list[T], bool]:
    """Send one dump request on a fresh socket and decode every answer with `decode`.

    Returns the items and whether the dump is complete: the kernel sets NLM_F_DUMP_INTR
    when the table changed while it was walked, and then entries that did not change
    may be missing from it (not only the changed ones, whose events follow).

    `decode(buf, offset)` gets the shared receive buffer and must copy what it keeps.
    Raises OSError if the kernel refuses.
    """
    results: list[T] = []

    def take(buf: bytearray, offset: int, _length: int) -> None:
        item = decode(buf, offset)
        if item is not None:
            results.append(item)

    return results, await _read_dump(request, take)


async def request_dump_kept(
    request: bytes,
    decode: Callable[[bytearray, int], T | None],
    wanted: Callable[[bytearray, int], bool] | None = None,
) -> tuple[Dumped[T], bool]:
    """:func:`request_dump_checked` for a large table: the answers (those ``wanted``, a
    test of the message's header) are kept as bytes and decoded when walked (see
    :mod:`~evpn_agent.kernel.dumped`)."""
    dumped: Dumped[T] = Dumped(decode)
    if wanted is None:
        take = dumped.keep
    else:

        def take(buf: bytearray, offset: int, length: int) -> None:
            if wanted(buf, offset):
                dumped.keep(buf, offset, length)

    return dumped, await _read_dump(request, take)


async def _read_dump(request: bytes, take: Callable[[bytearray, int, int], None]) -> bool:
    """Send a dump request and hand each answer to ``take(buf, offset, length)``; whether
    the dump is complete. We yield to the event loop after every datagram (~32 KiB, ~400
    FDB entries): a 200k-entry dump takes seconds and must not starve other tasks."""
    loop = asyncio.get_running_loop()
    with open_route_socket(rcvbuf=1 << 20) as sock:
        sock.setblocking(False)
        await loop.sock_sendall(sock, request)
        buf = bytearray(1 << 16)  # the kernel fills at most 32 KiB per dump datagram
        interrupted = False
        while True:
            received = await loop.sock_recv_into(sock, buf)
            offset = 0
            while offset + NLMSGHDR.size <= received:
                length, msg_type, flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
                if length < NLMSGHDR.size:
                    break
                if seq == _DUMP_SEQ:
                    if msg_type == NLMSG_DONE:
                        if interrupted:
                            log.debug("netlink dump changed while running: incomplete")
                        return not interrupted
                    if msg_type == NLMSG_ERROR:
                        code, text = parse_ack(buf, offset)
                        if code:
                            raise OSError(code, text or os.strerror(code))
                    else:
                        interrupted |= bool(flags & NLM_F_DUMP_INTR)
                        take(buf, offset, length)
                offset += align4(length)
            # sock_recv_into() returns without suspending while data is queued, and the
            # kernel queues the next part of a dump as soon as we read one.
            await asyncio.sleep(0)
