"""bgp-generate: a minimal iBGP speaker that sends pre-packed EVPN UPDATEs on command.

The bulk benchmark's route generator. It packs every UPDATE before the session comes up
(announce and withdraw, many NLRIs per message when they share attributes, as an FRR
route reflector does), brings one session up to the route reflector, then on ``announce``
or ``withdraw`` on stdin writes the whole pre-packed stream to the socket and reports when
the last byte was handed to the kernel. Nothing per route happens after the session is up,
so the generator is never the bottleneck: the route reflector reads as fast as it can.

Routes (VNIs ``vni-base..``, VTEPs = ``--vteps``, RT ``ASN:VNI``, label = the VNI,
RD ``VTEP:VNI``):
- one type 3 per (VNI, VTEP), with a PMSI ingress-replication tunnel to that VTEP;
- ``--routes`` type 2 (MAC only): route i in VNI ``i % V`` from VTEP ``(i // V) % K``,
  MAC ``02:<tag>:i`` (locally administered unicast, unique per i).

Standard library only (it runs inside a namespace by path); the packing is its own, a few
lines of RFC 4271/4760/7432/8365 framing, so it does not depend on the agent's encoder
that the benchmark measures.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

from bench.probes.report import emit

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
EVPN_FAMILY = b"\x00\x19\x46"  # AFI 25 (L2VPN), SAFI 70 (EVPN)
MIN_SIZE, EXTENDED_SIZE = 4096, 65535

# ORIGIN IGP, empty AS_PATH, LOCAL_PREF 100: what an iBGP VTEP sends
COMMON_ATTRIBUTES = b"\x40\x01\x01\x00" + b"\x40\x02\x00" + b"\x40\x05\x04" + (100).to_bytes(4)
VXLAN_ENCAPSULATION = bytes([0x03, 0x0C, 0, 0, 0, 0, 0, 8])


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def attribute(flags: int, code: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def update(attributes: bytes) -> bytes:
    return message(UPDATE, b"\x00\x00" + struct.pack("!H", len(attributes)) + attributes)


def mac_of(tag: int, index: int) -> bytes:
    return bytes([0x02, tag]) + index.to_bytes(4, "big")


def rd(vtep: bytes, vni: int) -> bytes:
    return b"\x00\x01" + vtep + vni.to_bytes(2, "big")


def type2(vtep: bytes, vni: int, mac: bytes) -> bytes:
    value = rd(vtep, vni) + bytes(10) + bytes(4) + b"\x30" + mac + b"\x00" + vni.to_bytes(3, "big")
    return bytes([2, len(value)]) + value


def type3(vtep: bytes, vni: int) -> bytes:
    value = rd(vtep, vni) + bytes(4) + b"\x20" + vtep
    return bytes([3, len(value)]) + value


def path_attributes(asn: int, vni: int, vtep: bytes, imet: bool) -> bytes:
    rt = bytes([0x00, 0x02]) + asn.to_bytes(2, "big") + vni.to_bytes(4, "big")
    communities = attribute(0xC0, 16, b"".join(sorted([rt, VXLAN_ENCAPSULATION])))
    attributes = COMMON_ATTRIBUTES + communities
    if imet:
        attributes += attribute(0xC0, 22, b"\x00\x06" + vni.to_bytes(3, "big") + vtep)
    return attributes


def packed(nlris: list[bytes], room: int) -> Iterator[bytes]:
    """The NLRIs concatenated in runs of at most ``room`` bytes."""
    run: list[bytes] = []
    size = 0
    for nlri in nlris:
        if run and size + len(nlri) > room:
            yield b"".join(run)
            run, size = [], 0
        run.append(nlri)
        size += len(nlri)
    if run:
        yield b"".join(run)


def reach_messages(
    groups: dict[tuple[int, bytes, bool], list[bytes]], asn: int, size: int
) -> list[bytes]:
    """UPDATEs with MP_REACH_NLRI, one attribute set per (VNI, VTEP, type 3 or not)."""
    out = []
    for (vni, vtep, imet), nlris in groups.items():
        attributes = path_attributes(asn, vni, vtep, imet)
        head = EVPN_FAMILY + bytes([len(vtep)]) + vtep + b"\x00"
        room = size - 19 - 4 - len(attributes) - 4 - len(head)
        for run in packed(nlris, room):
            out.append(update(attributes + attribute(0x80, 14, head + run)))
    return out


def unreach_messages(nlris: list[bytes], size: int) -> list[bytes]:
    return [
        update(attribute(0x80, 14 + 1, EVPN_FAMILY + run))
        for run in packed(nlris, size - 19 - 4 - 4 - len(EVPN_FAMILY))
    ]


def plan(args: argparse.Namespace, size: int) -> tuple[list[bytes], list[bytes], int, int]:
    """(announce messages, withdraw messages, type 2 count, type 3 count)."""
    vnis = list(range(args.vni_base, args.vni_base + args.vnis))
    vteps = [socket.inet_aton(v) for v in args.vteps.split(",")]
    groups: dict[tuple[int, bytes, bool], list[bytes]] = {}
    imets, macs = [], []
    if not args.no_imet:
        for vni in vnis:
            for vtep in vteps:
                nlri = type3(vtep, vni)
                groups.setdefault((vni, vtep, True), []).append(nlri)
                imets.append(nlri)
    for i in range(args.routes):
        vni, vtep = vnis[i % len(vnis)], vteps[(i // len(vnis)) % len(vteps)]
        nlri = type2(vtep, vni, mac_of(args.mac_tag, i))
        groups.setdefault((vni, vtep, False), []).append(nlri)
        macs.append(nlri)
    announce = reach_messages(groups, args.asn, size)
    # the MACs first, then the flood lists, like a VTEP that goes away
    withdraw = unreach_messages(macs, size) + unreach_messages(imets, size)
    return announce, withdraw, len(macs), len(imets)


class Session:
    """One BGP session, connected out; a reader thread drains and counts what the peer
    sends (a route reflector reflects other clients' routes to us too), a timer thread
    sends keepalives."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.sock = socket.create_connection(
            (args.peer, 179), timeout=10, source_address=(args.local, 0)
        )
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        self.hold = args.hold_time
        self.received = {UPDATE: 0, KEEPALIVE: 0}
        self.closed = threading.Event()
        capabilities = [
            b"\x01\x04\x00\x19\x00\x46",  # multiprotocol L2VPN EVPN
            b"\x02\x00",  # route refresh
            b"\x41\x04" + args.asn.to_bytes(4, "big"),  # 4-octet AS
            b"\x06\x00",  # extended messages (RFC 8654)
        ]
        params = b"".join(bytes([2, len(c)]) + c for c in capabilities)
        body = struct.pack("!BHH", 4, args.asn, self.hold) + socket.inet_aton(args.local)
        self.sock.sendall(message(OPEN, body + bytes([len(params)]) + params))
        kind, peer_open = self._read()
        if kind != OPEN:
            raise RuntimeError(f"expected OPEN, got message type {kind}")
        self.extended = 6 in capability_codes(peer_open)  # RFC 8654 both ways
        self.hold = min(self.hold, struct.unpack("!H", peer_open[3:5])[0])
        self.sock.sendall(message(KEEPALIVE, b""))
        while True:
            kind, _ = self._read()
            if kind == KEEPALIVE:
                break
            if kind == NOTIFICATION:
                raise RuntimeError("the peer sent a NOTIFICATION during the handshake")
        threading.Thread(target=self._drain, daemon=True).start()
        threading.Thread(target=self._keepalive, daemon=True).start()

    def _read_exact(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the peer closed the session")
            data += chunk
        return bytes(data)

    def _read(self) -> tuple[int, bytes]:
        header = self._read_exact(19)
        length, kind = struct.unpack("!HB", header[16:])
        return kind, self._read_exact(length - 19)

    def _drain(self) -> None:
        try:
            while True:
                kind, body = self._read()
                if kind in self.received:
                    self.received[kind] += 1
                if kind == NOTIFICATION:
                    emit(event="notification", t=time.time(), code=body[:2].hex())
                    break
        except OSError as exc:
            emit(event="closed", t=time.time(), error=str(exc))
        self.closed.set()

    def _keepalive(self) -> None:
        interval = max(1.0, self.hold / 3) if self.hold else 30.0
        while not self.closed.wait(interval):
            self.send([message(KEEPALIVE, b"")])

    def send(self, messages: list[bytes]) -> None:
        data = b"".join(messages)
        with self.lock:
            view = memoryview(data)
            for at in range(0, len(data), 1 << 20):
                self.sock.sendall(view[at : at + (1 << 20)])


def cpu_seconds() -> float:
    times = os.times()
    return float(times.user + times.system)


def capability_codes(open_body: bytes) -> set[int]:
    """The capability codes in an OPEN's optional parameters (RFC 5492)."""
    codes: set[int] = set()
    params = open_body[10 : 10 + open_body[9]]
    at = 0
    while at + 2 <= len(params):
        kind, length = params[at], params[at + 1]
        if kind == 2:  # capabilities: code, length, value ...
            caps, inner = params[at + 2 : at + 2 + length], 0
            while inner + 2 <= len(caps):
                codes.add(caps[inner])
                inner += 2 + caps[inner + 1]
        at += 2 + length
    return codes


def generate(args: argparse.Namespace) -> int:
    started, cpu0 = time.monotonic(), cpu_seconds()
    # packed for both sizes before the session: nothing per route once it is up
    plans = {size: plan(args, size) for size in (MIN_SIZE, EXTENDED_SIZE)}
    pack_s, pack_cpu = time.monotonic() - started, cpu_seconds() - cpu0
    session = Session(args)
    announce, withdraw, macs, imets = plans[EXTENDED_SIZE if session.extended else MIN_SIZE]
    session.send([update(attribute(0x80, 15, EVPN_FAMILY))])  # End-of-RIB (RFC 4724)
    emit(
        event="ready", t=time.time(), type2=macs, type3=imets, extended=session.extended,
        announce_messages=len(announce), withdraw_messages=len(withdraw),
        announce_bytes=sum(map(len, announce)), withdraw_bytes=sum(map(len, withdraw)),
        pack_s=round(pack_s, 3), pack_cpu_s=round(pack_cpu, 3), hold_time=session.hold,
    )  # fmt: skip
    streams = {"announce": announce, "withdraw": withdraw}
    while not session.closed.is_set():
        ready, _, _ = select.select([sys.stdin], [], [], 1.0)
        if not ready:
            continue
        command = sys.stdin.readline().strip()
        if not command or command == "quit":
            break
        if command not in streams:
            emit(event="error", t=time.time(), error=f"unknown command {command!r}")
            continue
        cpu0 = cpu_seconds()
        t0 = time.time()
        session.send(streams[command])
        emit(
            event="sent", what=command, t0=t0, t=time.time(), send_s=round(time.time() - t0, 3),
            cpu_s=round(cpu_seconds() - cpu0, 3), messages=len(streams[command]),
            received_updates=session.received[UPDATE],
        )  # fmt: skip
    session.sock.close()
    return 0
