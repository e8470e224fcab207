"""Hand-made BGP messages for a peer that misbehaves on the wire (tests only).

Our launcher refuses to announce nonsense, so a hostile peer is a raw socket speaking
just enough BGP (RFC 4271 framing, RFC 4760 MP_REACH, RFC 7432 EVPN NLRI) to send
whatever a test wants, well formed or not.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
AFI_L2VPN, SAFI_EVPN = 25, 70
MARKER = b"\xff" * 16


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, hold: int, router_id: str, *, graceful_restart: bool = False) -> bytes:
    caps = (
        bytes([1, 4]) + struct.pack("!HBB", AFI_L2VPN, 0, SAFI_EVPN)  # multiprotocol
        + bytes([2, 0])  # route refresh
        + bytes([65, 4]) + struct.pack("!I", asn)  # four-octet AS
    )  # fmt: skip
    if graceful_restart:  # restart time 120 s; l2vpn evpn, its forwarding state not kept
        caps += bytes([64, 6]) + struct.pack("!HHBB", 120, AFI_L2VPN, SAFI_EVPN, 0)
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH4sB", 4, asn, hold, _ip(router_id), len(params)) + params
    return message(OPEN, body)


def _ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _rd(rd: str) -> bytes:
    address, index = rd.split(":")
    return struct.pack("!H4sH", 1, _ip(address), int(index))


def _label(vni: int) -> bytes:
    return vni.to_bytes(3, "big")  # VXLAN: the VNI is the raw 24-bit field


def mac_nlri(
    rd: str,
    mac: str,
    vni: int,
    ip: str | None = None,
    *,
    mac_bits: int = 48,
    ip_bits: int | None = None,
    cut: int = 0,
) -> bytes:
    """Type 2. ``mac_bits`` other than 48, ``ip_bits`` other than the address's and ``cut``
    (bytes dropped from the end while the length still claims them) make it malformed."""
    if ip is None:
        ip_part = bytes([0])
    else:
        ip_part = bytes([ip_bits if ip_bits is not None else len(_ip(ip)) * 8]) + _ip(ip)
    value = (
        _rd(rd) + bytes(10) + struct.pack("!I", 0)
        + bytes([mac_bits]) + bytes.fromhex(mac.replace(":", "")) + ip_part + _label(vni)
    )  # fmt: skip
    return bytes([2, len(value)]) + value[: len(value) - cut]


def prefix_nlri(rd: str, prefix: str, vni: int) -> bytes:
    """Type 5 (IP prefix, RFC 9136): valid, but not a route an L2 VTEP uses."""
    network = ipaddress.ip_network(prefix)
    value = (
        _rd(rd) + bytes(10) + struct.pack("!I", 0) + bytes([network.prefixlen])
        + network.network_address.packed + bytes(4) + _label(vni)
    )  # fmt: skip
    return bytes([5, len(value)]) + value


def raw_nlri(route_type: int, value: bytes) -> bytes:
    return bytes([route_type, len(value)]) + value


def imet_nlri(rd: str, origin: str) -> bytes:
    value = _rd(rd) + struct.pack("!I", 0) + bytes([32]) + _ip(origin)
    return bytes([3, len(value)]) + value


def _attr(flags: int, kind: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, kind, len(value)) + value
    return struct.pack("!BBB", flags, kind, len(value)) + value


def update(
    nlri: bytes, next_hop: str, rt: tuple[int, int], *, pmsi: tuple[int, str] | None = None
) -> bytes:
    """An UPDATE announcing ``nlri`` (EVPN, one or more routes) with RT ``asn:value``,
    VXLAN encapsulation and, for type 3, a PMSI ingress-replication tunnel (VNI, VTEP)."""
    communities = struct.pack("!BBHI", 0x00, 0x02, *rt) + struct.pack("!BBIH", 0x03, 0x0C, 0, 8)
    nh = _ip(next_hop)
    mp_reach = struct.pack("!HBB", AFI_L2VPN, SAFI_EVPN, len(nh)) + nh + bytes([0]) + nlri
    attrs = (
        _attr(0x40, 1, bytes([0]))  # ORIGIN IGP
        + _attr(0x40, 2, b"")  # AS_PATH, empty: iBGP
        + _attr(0x40, 5, struct.pack("!I", 100))  # LOCAL_PREF
        + _attr(0xC0, 16, communities)
        + _attr(0x80, 14, mp_reach)
    )
    if pmsi is not None:
        vni, vtep = pmsi
        attrs += _attr(0xC0, 22, bytes([0, 6]) + _label(vni) + _ip(vtep))
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs)


def socket_in_netns(netns: str) -> socket.socket:
    """A TCP socket in network namespace ``netns``. setns() switches only the calling
    thread, so it runs on a throwaway thread; the socket keeps the namespace it was made in.
    """
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            from pyroute2.netns import setns

            setns(netns, flags=0)  # flags=0: never create a namespace by accident
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@dataclass
class RawPeer:
    """An established session over a plain socket; keepalives on a thread."""

    sock: socket.socket
    hold: int
    notification: bytes | None = None
    closed: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def connect(
        cls,
        netns: str,
        peer: str,
        source: str,
        asn: int,
        router_id: str,
        *,
        hold: int = 30,
        graceful_restart: bool = False,
    ) -> RawPeer:
        sock = socket_in_netns(netns)
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect((peer, 179))
        sock.sendall(open_message(asn, hold, router_id, graceful_restart=graceful_restart))
        raw = cls(sock, hold)
        kind, _body = raw._read()
        if kind != OPEN:
            raise ConnectionError(f"expected OPEN, got message type {kind}")
        sock.sendall(message(KEEPALIVE, b""))
        threading.Thread(target=raw._run, daemon=True).start()
        return raw

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()

    def _read(self) -> tuple[int, bytes]:
        header = self._exactly(19)
        length, kind = struct.unpack("!HB", header[16:])
        return kind, self._exactly(length - 19)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("peer closed the session")
            data += chunk
        return data

    def _run(self) -> None:
        last = time.monotonic()
        while not self.closed.is_set():
            if time.monotonic() - last >= self.hold / 3:
                try:
                    self.sock.sendall(message(KEEPALIVE, b""))
                except OSError:
                    break
                last = time.monotonic()
            try:
                readable, _, _ = select.select([self.sock], [], [], 0.5)
                if not readable:
                    continue
                kind, body = self._read()  # a whole message, under the socket's timeout
            except (ConnectionError, OSError, ValueError):
                break
            if kind == NOTIFICATION:
                self.notification = body
                break
        self.closed.set()
