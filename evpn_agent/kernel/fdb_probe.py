"""Ask the kernel for single bridge FDB entries: `bridge fdb get MAC br BRIDGE [vlan N]`.

The kernel resumes an FDB dump by position, so deletions while it runs make it skip
entries that are still there, and it does not flag such a dump (NLM_F_DUMP_INTR). A
lookup by key (RTM_GETNEIGH with NDA_LLADDR, NDA_MASTER and NDA_VLAN; Linux 5.0+) has no
such gap: it answers the entry, or ENOENT when there is none. Thousands of lookups can be
needed after a burst, so they are pipelined on one socket like the writer's requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from evpn_agent.kernel.dumped import Joined
from evpn_agent.kernel.encoder import mac_bytes
from evpn_agent.kernel.neighbours import decode_neighbour
from evpn_agent.kernel.netlink import (
    AF_BRIDGE,
    NDA_LLADDR,
    NDA_MASTER,
    NDA_VLAN,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    NLMSGHDR,
    RTM_GETNEIGH,
    RTM_NEWNEIGH,
    align4,
    open_route_socket,
    parse_ack,
)
from evpn_agent.model import BridgeDevice, FdbEntry, KernelSnapshot
from evpn_agent.model.keys import BridgeMac

log = logging.getLogger(__name__)

FdbKey = BridgeMac  # (bridge ifindex, VLAN or None, MAC)

# nlmsghdr + ndmsg, then LLADDR (6 bytes, padded), MASTER (u32) and optionally VLAN (u16).
_GET = {
    vlan: struct.Struct("=IHHIIBxxxiHBB" + "HH6sxx" + "HHI" + ("HHHxx" if vlan else ""))
    for vlan in (False, True)
}
# No NLM_F_ACK: each request gets exactly one answer, the entry or an NLMSG_ERROR.
_GET_FLAGS = NLM_F_REQUEST
_SEQ_LIMIT = 0xFFFF_FFF0
# Receive buffer one answer may cost: the kernel builds each found entry in an skb of
# NLMSG_GOODSIZE (~4 KiB of data, ~4.6 KiB truesize); an error ack is far smaller.
_ANSWER_BUDGET = 8192
_MAX_IN_FLIGHT = 256  # requests per send: ~12 KiB out, at most ~2 MiB of answers back


@dataclass(frozen=True, slots=True)
class ProbeResult:
    found: list[FdbEntry]  # the entries that exist, as the kernel reports them
    gone: list[FdbKey]  # the kernel answered ENOENT: no such entry
    unknown: list[FdbKey]  # any other answer, or none (outcome not known)


def get_request(key: FdbKey, seq: int) -> bytes:
    """The RTM_GETNEIGH request for the bridge's entry `key`, numbered `seq`."""
    bridge, vlan, mac = key
    layout = _GET[vlan is not None]
    fields = [
        *(layout.size, RTM_GETNEIGH, _GET_FLAGS, seq, 0),  # nlmsghdr
        *(AF_BRIDGE, 0, 0, 0, 0),  # ndmsg: family, ifindex (any port), state, flags, type
        *(4 + 6, NDA_LLADDR, mac_bytes(mac)),
        *(4 + 4, NDA_MASTER, bridge),
    ]
    if vlan is not None:
        fields += [4 + 2, NDA_VLAN, vlan]
    return layout.pack(*fields)


async def probe_fdb(keys: Iterable[FdbKey], *, rcvbuf: int = 4 << 20) -> ProbeResult:
    """Look up each key's bridge FDB entry; pipelined, yielding to the loop between sends.

    The kernel handles a send synchronously (rtnetlink runs in the sender's context), so
    when send() returns every answer of that chunk is queued on our socket, or was dropped
    because the receive buffer was full: whatever is unanswered once the socket is empty
    stays unknown, never gone.
    """
    found: list[FdbEntry] = []
    gone: list[FdbKey] = []
    unknown: list[FdbKey] = []
    todo = list(keys)
    if not todo:
        return ProbeResult(found, gone, unknown)
    with open_route_socket(rcvbuf) as sock:
        actual = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        in_flight = max(1, min(_MAX_IN_FLIGHT, actual // _ANSWER_BUDGET))
        buf = bytearray(1 << 16)
        seq = 1
        for start in range(0, len(todo), in_flight):
            if seq + in_flight >= _SEQ_LIMIT:
                seq = 1
            chunk = todo[start : start + in_flight]
            pending = {seq + i: key for i, key in enumerate(chunk)}
            try:
                sock.send(b"".join(get_request(key, s) for s, key in pending.items()))
            except OSError as exc:
                log.warning("FDB lookups not sent: %s", exc)
                unknown.extend(pending.values())
                continue
            seq += len(chunk)
            _read_answers(sock, buf, pending, found, gone)
            unknown.extend(pending.values())
            await asyncio.sleep(0)  # a few ms per chunk at most; let other tasks run
    if unknown:
        log.warning("%d FDB lookups got no usable answer", len(unknown))
    return ProbeResult(found, gone, unknown)


def _read_answers(
    sock: socket.socket,
    buf: bytearray,
    pending: dict[int, FdbKey],
    found: list[FdbEntry],
    gone: list[FdbKey],
) -> None:
    """Read what is queued; answered keys leave `pending`."""
    while pending:
        try:
            received = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return  # the rest was dropped (full buffer): unknown
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            log.warning("FDB lookup answers were dropped (receive buffer full)")
            continue  # the error is reported once; what was queued is still there
        offset = 0
        while offset + NLMSGHDR.size <= received:
            length, msg_type, _flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
            if length < NLMSGHDR.size:
                break
            key = pending.pop(seq, None)
            if key is not None:
                if msg_type == RTM_NEWNEIGH:
                    entry = decode_neighbour(buf, offset)
                    if isinstance(entry, FdbEntry):
                        found.append(entry)
                    else:
                        pending[seq] = key  # not an answer we understand: stays unknown
                elif msg_type == NLMSG_ERROR:
                    code, text = parse_ack(buf, offset)
                    if code == errno.ENOENT:
                        gone.append(key)
                    else:
                        pending[seq] = key
                        log.debug("FDB lookup %s: %s", key, text or errno.errorcode.get(code))
            offset += align4(length)


async def add_missing(snap: KernelSnapshot, keys: Iterable[FdbKey]) -> KernelSnapshot:
    """`snap` with the bridge entries for `keys` that its FDB dump lacked, each looked up.

    Keys the kernel says do not exist go to ``fdb_gone``, and so do keys of a bridge the
    snapshot does not hold (its entries went with it); if any lookup had no usable answer
    the snapshot counts as incomplete. Keys with a bridge entry in the dump (on any port,
    local or VXLAN) are not looked up: the dump already tells where they are.
    """
    dumped = {BridgeMac(e.master, e.vlan, e.mac) for e in snap.fdb if e.master is not None}
    bridges = {link.ifindex for link in snap.links if isinstance(link, BridgeDevice)}
    missing = [key for key in keys if key not in dumped]
    if not missing:
        return snap
    started = time.monotonic()
    result = await probe_fdb([key for key in missing if key[0] in bridges])
    gone = [*result.gone, *(key for key in missing if key[0] not in bridges)]
    log.info(
        "FDB dump lacked %d known local MACs; looked up in %.3f s: %d there, %d gone, %d unknown",
        len(missing),
        time.monotonic() - started,
        len(result.found),
        len(gone),
        len(result.unknown),
    )
    return dataclasses.replace(
        snap,
        fdb=Joined(snap.fdb, result.found),
        fdb_gone=snap.fdb_gone | frozenset(gone),
        complete=snap.complete and not result.unknown,
    )
