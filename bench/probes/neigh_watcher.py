"""watch-neigh: every AF_BRIDGE neighbour event whose MAC starts with a prefix."""

from __future__ import annotations

import argparse
import socket
import time

from bench.probes.neigh_netlink import AF_BRIDGE, NTF_SELF, RTM_NEWNEIGH, messages, neigh_socket
from bench.probes.report import emit, mac_text


def watch_neigh(args: argparse.Namespace) -> int:
    sock = neigh_socket(args.rcvbuf)
    prefix = bytes(int(part, 16) for part in args.mac_prefix.split(":") if part)
    names: dict[int, str] = {}
    emit(event="ready", t=time.time())
    buf = bytearray(1 << 16)
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as exc:
            emit(event="overflow", t=time.time(), error=str(exc))
            continue
        now = time.time()
        for mtype, family, ifindex, flags, lladdr, dst in messages(bytes(buf[:n])):
            if family != AF_BRIDGE or lladdr is None or not lladdr.startswith(prefix):
                continue
            if ifindex not in names:
                try:
                    names[ifindex] = socket.if_indextoname(ifindex)
                except OSError:
                    names[ifindex] = str(ifindex)
            emit(
                event="new" if mtype == RTM_NEWNEIGH else "del",
                t=now,
                dev=names[ifindex],
                mac=mac_text(lladdr),
                self=bool(flags & NTF_SELF),
                dst=socket.inet_ntop(socket.AF_INET, dst) if dst and len(dst) == 4 else None,
            )
