"""send-frames: one broadcast frame per MAC read on stdin, with that source MAC."""

from __future__ import annotations

import argparse
import socket
import sys
import time

from bench.probes.report import emit


def send_frames(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.device, 0))
    emit(event="ready", t=time.time())
    for line in sys.stdin:
        mac = line.strip()
        if not mac:
            continue
        src = bytes(int(part, 16) for part in mac.split(":"))
        # broadcast, local experimental EtherType 0x88b5, padded to the minimum frame size
        frame = b"\xff" * 6 + src + b"\x88\xb5" + b"evpn-agent bench".ljust(46, b"\0")
        t = time.time()
        sock.send(frame)
        emit(event="sent", t=t, mac=mac)
    return 0
