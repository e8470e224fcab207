"""Tenant hosts: a namespace each, plugged into a box's VNI bridge."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from lab.fabric.boxes import Box
from lab.fabric.environment import IP, PYTHON
from lab.fabric.netns import Netns


@dataclass
class Host:
    """A tenant host: its own namespace, ``eth0`` plugged into a box's VNI bridge."""

    name: str
    netns: Netns
    box: Box
    vni: int
    address: str  # with prefix length
    mac: str
    extra_addresses: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def exec(self, *argv: str, check: bool = True) -> str:
        return self.netns.exec(*argv, check=check)

    def ping(self, destination: str, count: int = 1, timeout: float = 1.0) -> bool:
        """ICMP echo from the host (this machine has no ping binary); True if answered."""
        proc = subprocess.run(
            [IP, "netns", "exec", self.netns.name, PYTHON, "-c", _PING_SOURCE, destination,
             str(count), str(timeout)],
            capture_output=True, timeout=10 + count * timeout, check=False,
        )  # fmt: skip
        return proc.returncode == 0


# Echo request over a raw socket: a few lines instead of depending on iputils-ping.
_PING_SOURCE = """
import os, select, socket, struct, sys, time
dst, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in dst
sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                     socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
for seq in range(count):
    body = struct.pack("!HH", ident, seq) + b"evpn-fabric-ping"
    header = struct.pack("!BBH", 128 if v6 else 8, 0, 0)
    if not v6:  # the kernel fills the ICMPv6 checksum
        header = struct.pack("!BBH", 8, 0, checksum(header + body))
    sock.sendto(header + body, (dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        packet, source = sock.recvfrom(2048)
        icmp = packet if v6 else packet[(packet[0] & 15) * 4:]
        reply = 129 if v6 else 0
        if icmp[0] == reply and icmp[4:6] == struct.pack("!H", ident):
            sys.exit(0)
sys.exit(1)
"""
