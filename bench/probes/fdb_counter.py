"""count-fdb: remote MACs arriving on VXLAN devices, counted from rtnetlink."""

from __future__ import annotations

import argparse
import socket
import time

from bench.probes.neigh_netlink import (
    RTM_NEWNEIGH,
    ZERO_MAC,
    attach_self_filter,
    messages,
    neigh_socket,
)
from bench.probes.report import emit


def count_fdb(args: argparse.Namespace) -> int:
    devices = [d for d in args.devices.split(",") if d]
    ifindexes = {socket.if_nametoindex(d) for d in devices}
    sock = neigh_socket(args.rcvbuf)
    attach_self_filter(sock)
    present: set[tuple[int, bytes]] = set()
    prefix = bytes.fromhex(args.mac_prefix.replace(":", ""))  # b"": every MAC
    target, every = args.target, max(1, args.every)
    next_report = 1
    reported = 0
    emit(event="ready", t=time.time(), devices=len(ifindexes))
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    done = False
    while True:
        try:
            n = sock.recv_into(buf)
        except OSError as exc:  # ENOBUFS: notifications were lost, the count is unreliable
            emit(event="overflow", t=time.time(), error=str(exc), n=len(present))
            continue
        now = time.time()
        for mtype, _family, ifindex, _flags, lladdr, _dst in messages(view[:n].tobytes()):
            if (
                ifindex not in ifindexes
                or lladdr is None
                or lladdr == ZERO_MAC
                or not lladdr.startswith(prefix)
            ):
                continue
            if mtype == RTM_NEWNEIGH:
                present.add((ifindex, lladdr))
            else:
                present.discard((ifindex, lladdr))
        count = len(present)
        if args.follow:
            # both ways: a report per `every` entries gained or lost, then "done" at the
            # target and "empty" when everything went again
            if abs(count - reported) >= every or (count != reported and count in (0, target)):
                emit(event="progress", t=now, n=count)
                reported = count
            if not done and count >= target:
                emit(event="done", t=now, n=count)
                done = True
            elif done and count == 0:
                emit(event="empty", t=now, n=0)
                done = False
            continue
        if count >= next_report:
            emit(event="progress", t=now, n=count)
            next_report = (count // every + 1) * every
        if not done and count >= target:
            emit(event="done", t=now, n=count)
            done = True
            if not args.keep_going:
                return 0
