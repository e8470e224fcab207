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
    matching MACs found in its payload (the NLRI carries the MAC as 6 raw bytes). With
    ``--withdraws``, also one ``withdraw`` line per segment holding an UPDATE that
    withdraws l2vpn evpn routes (MP_UNREACH_NLRI with NLRIs: not an End-of-RIB).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((args.device, 0))
    prefix = bytes(int(part, 16) for part in args.mac_prefix.split(":") if part)
    withdraws = args.withdraws
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
        if withdraws and evpn_withdraw(payload):
            emit(
                event="withdraw",
                t=now,
                src=socket.inet_ntoa(frame[26:30]),
                dst=socket.inet_ntoa(frame[30:34]),
            )
        if not prefix:
            continue
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


MARKER = b"\xff" * 16
MP_UNREACH_NLRI = 15
EVPN = b"\x00\x19\x46"  # AFI 25, SAFI 70


def evpn_withdraw(payload: bytes) -> bool:
    """Whether ``payload`` holds (the start of) an UPDATE withdrawing l2vpn evpn routes."""
    at = payload.find(MARKER)
    while at >= 0 and at + 19 <= len(payload):
        length = int.from_bytes(payload[at + 16 : at + 18], "big")
        if payload[at + 18] == 2 and _withdraws(payload[at + 19 : at + max(length, 19)]):
            return True
        at = payload.find(MARKER, at + max(length, 19))
    return False


def _withdraws(body: bytes) -> bool:
    if len(body) < 4:
        return False
    start = 4 + int.from_bytes(body[:2], "big")
    end = min(len(body), start + int.from_bytes(body[start - 2 : start], "big"))
    pos = start
    while pos + 3 <= end:
        flags, code = body[pos], body[pos + 1]
        if flags & 0x10:
            size, value = int.from_bytes(body[pos + 2 : pos + 4], "big"), pos + 4
        else:
            size, value = body[pos + 2], pos + 3
        if code == MP_UNREACH_NLRI and body[value : value + 3] == EVPN and size > 3:
            return True
        pos = value + size
    return False
