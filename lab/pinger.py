"""ICMP probes run inside a host namespace (this machine has no ping binary).

Standalone on purpose (stdlib only): the lab runs it as ``ip netns exec HOST python
lab/pinger.py ...``, one process per host, so a whole ping matrix takes one timeout.

    pinger.py matrix --timeout 1.5 DST...      # JSON {dst: rtt in ms, or null}
    pinger.py stream --interval 0.1 DST...     # until stdin closes; JSON stats per dst
    pinger.py garp IFACE IP                    # gratuitous ARP, as a moved VM sends
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import time
from pathlib import Path

ECHO_REQUEST, ECHO_REPLY = 8, 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


class Icmp:
    """One raw ICMPv4 socket: echo requests out, our echo replies in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.ident = os.getpid() & 0xFFFF

    def send(self, dst: str, seq: int) -> None:
        body = struct.pack("!HH", self.ident, seq & 0xFFFF) + b"evpn-agent-lab"
        header = struct.pack("!BBH", ECHO_REQUEST, 0, 0)
        header = struct.pack("!BBH", ECHO_REQUEST, 0, _checksum(header + body))
        with contextlib.suppress(OSError):  # e.g. ENOBUFS while ARP is unresolved
            self.sock.sendto(header + body, (dst, 0))

    def replies(self, wait: float) -> list[tuple[str, int]]:
        """(source, seq) of our echo replies arriving within ``wait`` seconds."""
        out: list[tuple[str, int]] = []
        if not select.select([self.sock], [], [], max(wait, 0))[0]:
            return out
        while True:
            try:
                packet, (source, _) = self.sock.recvfrom(4096)
            except BlockingIOError:
                return out
            icmp = packet[(packet[0] & 15) * 4 :]
            if len(icmp) >= 8 and icmp[0] == ECHO_REPLY:
                ident, seq = struct.unpack("!HH", icmp[4:8])
                if ident == self.ident:
                    out.append((source, seq))


def matrix(destinations: list[str], timeout: float, retry: float) -> dict[str, float | None]:
    """Round-trip time (ms) of the first answered echo per destination, None if none."""
    icmp = Icmp()
    start = time.monotonic()
    sent: dict[int, tuple[str, float]] = {}
    rtt: dict[str, float | None] = dict.fromkeys(destinations)
    seq = 0
    next_round = start
    while (now := time.monotonic()) < start + timeout and None in rtt.values():
        if now >= next_round:
            # resend to the silent ones: the first echo may wait on ARP or a BGP route
            for dst in destinations:
                if rtt[dst] is None:
                    seq += 1
                    sent[seq & 0xFFFF] = (dst, time.monotonic())
                    icmp.send(dst, seq)
            next_round = now + retry
        for source, got in icmp.replies(min(next_round, start + timeout) - time.monotonic()):
            dst, at = sent.get(got, ("", 0.0))
            if dst == source and rtt[dst] is None:
                rtt[dst] = round((time.monotonic() - at) * 1000, 2)
    return rtt


def stream(destinations: list[str], interval: float, grace: float = 1.0) -> dict[str, object]:
    """Ping every destination each ``interval`` until stdin closes; loss per destination."""
    icmp = Icmp()
    answered: dict[str, set[int]] = {dst: set() for dst in destinations}
    seq = 0
    next_send = time.monotonic()
    stdin_open = True
    print("started", flush=True)  # the caller waits for this before it acts
    while stdin_open:
        now = time.monotonic()
        if now >= next_send:
            seq += 1
            for dst in destinations:
                icmp.send(dst, seq)
            next_send += interval
        readable = select.select([sys.stdin, icmp.sock], [], [], max(next_send - now, 0))[0]
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            stdin_open = False
        for source, got in icmp.replies(0):
            if source in answered:
                answered[source].add(got)
    deadline = time.monotonic() + grace  # late replies to the last echoes still count
    while (left := deadline - time.monotonic()) > 0:
        for source, got in icmp.replies(left):
            if source in answered:
                answered[source].add(got)
    result: dict[str, object] = {}
    for dst in destinations:
        lost = [s for s in range(1, seq + 1) if (s & 0xFFFF) not in answered[dst]]
        longest = run = 0
        previous = None
        for s in lost:
            run = run + 1 if previous == s - 1 else 1
            longest = max(longest, run)
            previous = s
        result[dst] = {
            "sent": seq,
            "received": seq - len(lost),
            "lost": len(lost),
            "longest_outage_s": round(longest * interval, 2),
        }
    return result


def garp(interface: str, address: str) -> None:
    """A gratuitous ARP request (sender = target = our address) out of ``interface``."""
    mac = bytes.fromhex(Path(f"/sys/class/net/{interface}/address").read_text().replace(":", ""))
    ip = socket.inet_aton(address)
    frame = (
        b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\0" * 6 + ip
    )  # fmt: skip
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        sock.send(frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pinger")
    sub = parser.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("matrix")
    m.add_argument("--timeout", type=float, default=1.5)
    m.add_argument("--retry", type=float, default=0.3)
    m.add_argument("destinations", nargs="+")
    s = sub.add_parser("stream")
    s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("destinations", nargs="+")
    g = sub.add_parser("garp")
    g.add_argument("interface")
    g.add_argument("address")
    args = parser.parse_args(argv)
    if args.mode == "matrix":
        print(json.dumps(matrix(args.destinations, args.timeout, args.retry)))
    elif args.mode == "stream":
        print(json.dumps(stream(args.destinations, args.interval)), flush=True)
    else:
        garp(args.interface, args.address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
