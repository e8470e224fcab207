"""count-vtep: a VTEP's VXLAN forwarding state (flood entries and remote MACs), live.

Dumps the bridge FDB once, then follows rtnetlink. Every ``NTF_SELF`` entry with a
destination (the VXLAN side) counts: the all-zero MAC is a flood entry per (device,
remote VTEP), any other MAC a remote MAC per (device, MAC). A deleted link drops its
entries (the kernel may not announce each one). A line ``{"event": "state", ...}`` goes
out at most every ``--every-s`` while something changes, with cumulative add/remove
counts, so a parent can see both convergence and anything removed in a window.
"""

from __future__ import annotations

import argparse
import selectors
import socket
import struct
import time

from bench.probes.neigh_netlink import (
    AF_BRIDGE,
    NLMSGHDR,
    RTM_NEWNEIGH,
    ZERO_MAC,
    messages,
    neigh_socket,
)
from bench.probes.report import emit

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
RTNLGRP_LINK = 1
RTM_DELLINK = 17
RTM_GETNEIGH = 30
NLM_F_REQUEST_DUMP = 0x1 | 0x300
SO_ATTACH_FILTER = 26
IFINDEX_AT = NLMSGHDR.size + 4  # ifinfomsg: family, pad, type (u16), index


def _attach_filter(sock: socket.socket) -> None:
    """Keep RTM_DELLINK and AF_BRIDGE neighbour messages with NTF_SELF; drop the rest
    in the kernel (nlmsg_type is little-endian: its low byte is at offset 4)."""
    import ctypes

    bpf = [
        (0x30, 0, 0, 4),  # ldb [4]   nlmsg_type, low byte
        (0x15, 5, 0, RTM_DELLINK),  # jeq DELLINK -> accept
        (0x30, 0, 0, NLMSGHDR.size),  # ldb [16]  ndm_family
        (0x15, 0, 4, AF_BRIDGE),  # else drop
        (0x30, 0, 0, NLMSGHDR.size + 10),  # ldb [26]  ndm_flags
        (0x45, 1, 0, 0x02),  # jset NTF_SELF -> accept
        (0x06, 0, 0, 0),  # drop
        (0x06, 0, 0, 0xFFFFFFFF),  # accept
        (0x06, 0, 0, 0),  # drop
    ]
    code = b"".join(struct.pack("=HBBI", *ins) for ins in bpf)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("@HP", len(bpf), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _dump_request() -> bytes:
    body = struct.pack("=BxxxiHBB", AF_BRIDGE, 0, 0, 0, 0)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETNEIGH, NLM_F_REQUEST_DUMP, 1, 0) + body


def _deleted_links(data: bytes) -> list[int]:
    found, offset = [], 0
    while offset + NLMSGHDR.size <= len(data):
        length, mtype = NLMSGHDR.unpack_from(data, offset)[:2]
        if length < NLMSGHDR.size:
            break
        if mtype == RTM_DELLINK and length >= IFINDEX_AT + 4:
            found.append(struct.unpack_from("=i", data, offset + IFINDEX_AT)[0])
        offset += (length + 3) & ~3
    return found


def count_vtep(args: argparse.Namespace) -> int:
    sock = neigh_socket(args.rcvbuf)
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK)
    _attach_filter(sock)
    sock.send(_dump_request())
    flood: set[tuple[int, bytes]] = set()
    macs: set[tuple[int, bytes]] = set()
    added = removed = 0
    emit(event="ready", t=time.time())
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    buf = bytearray(1 << 20)
    last_emit, changed = 0.0, True
    while True:
        ready = selector.select(timeout=args.every_s)
        now = time.time()
        if ready:
            try:
                n = sock.recv_into(buf)
            except OSError as exc:  # ENOBUFS: events lost; the parent re-checks at the end
                emit(event="overflow", t=now, error=str(exc))
                continue
            data = bytes(buf[:n])
            for ifindex in _deleted_links(data):
                gone = {k for k in flood | macs if k[0] == ifindex}
                flood -= gone
                macs -= gone
                removed += len(gone)
                changed = changed or bool(gone)
            for mtype, _family, ifindex, _flags, lladdr, dst in messages(data):
                if lladdr is None or dst is None:
                    continue
                table, key = (
                    (flood, (ifindex, dst)) if lladdr == ZERO_MAC else (macs, (ifindex, lladdr))
                )
                if mtype == RTM_NEWNEIGH:
                    if key not in table:
                        table.add(key)
                        added += 1
                        changed = True
                elif key in table:
                    table.discard(key)
                    removed += 1
                    changed = True
        if changed and now - last_emit >= args.every_s:
            emit(
                event="state", t=now, flood=len(flood), macs=len(macs), added=added, removed=removed
            )
            last_emit, changed = now, False
