"""sniff-bgp: when a BGP segment carrying a MAC with a prefix crossed an interface."""

from __future__ import annotations

import argparse
import socket
import struct
import time

from bench.probes.report import emit, mac_text


def sniff_bgp(args: argparse.Namespace) -> int:
    """Timestamps of BGP segments (TCP port 179) on ``--device`` carrying a MAC with the prefix.

    Both directions (AF_PACKET sees outgoing packets too); one line per segment with the
    matching MACs found in its payload (the NLRI carries the MAC as 6 raw bytes).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((args.device, 0))
    prefix = bytes(int(part, 16) for part in args.mac_prefix.split(":") if part)
    emit(event="ready", t=time.time())
    while True:
        frame = sock.recv(65536)
        now = time.time()
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:  # IPv4, TCP
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = 14 + ihl
        if len(frame) < tcp + 20:
            continue
        sport, dport = struct.unpack_from("!HH", frame, tcp)
        if 179 not in (sport, dport):
            continue
        payload = frame[tcp + (frame[tcp + 12] >> 4) * 4 :]
        macs = []
        at = payload.find(prefix)
        while at >= 0 and at + 6 <= len(payload):
            macs.append(mac_text(payload[at : at + 6]))
            at = payload.find(prefix, at + 6)
        if macs:
            emit(
                event="bgp",
                t=now,
                src=socket.inet_ntoa(frame[26:30]),
                dst=socket.inet_ntoa(frame[30:34]),
                macs=macs,
            )
