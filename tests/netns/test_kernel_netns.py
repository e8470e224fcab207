"""Writer, snapshot and monitor against a real kernel, in a throw-away network namespace.

The code under test runs in a forked child that entered the namespace (run_in_netns); the
test inspects the result with iproute2 (`bridge -j fdb`, `ip -j neigh`), as an operator would.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import pickle
import socket
import subprocess
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from evpn_agent.kernel import Monitor, NetlinkKernel, NetlinkWriter, OpFailure, dump, port
from evpn_agent.kernel.monitor import MonitorStats
from evpn_agent.model import (
    AddFdb,
    AddFlood,
    AddNeigh,
    BridgeDevice,
    DelFdb,
    DelFlood,
    DelNeigh,
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    KernelSnapshot,
    LinkUpdated,
    Managed,
    NeighUpdated,
    Op,
    OtherLink,
    VxlanDevice,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

T = TypeVar("T")
MAC1, MAC2, MAC3 = "02:00:5e:00:01:01", "02:00:5e:00:01:02", "02:00:5e:00:01:03"
VTEP1, VTEP2, VTEP3 = "198.51.100.1", "198.51.100.2", "198.51.100.3"
ZERO = "00:00:00:00:00:00"


def run_in_netns(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a forked child inside netns `ns`; return its (pickled) result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 0
        try:
            os.close(read_fd)
            from pyroute2.netns import setns

            setns(ns, flags=0)  # flags=0: never create a namespace by accident
            outcome: tuple[str, Any] = ("ok", fn(*args))
        except BaseException:
            outcome = ("error", traceback.format_exc())
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pickle.dump(outcome, pipe)
        except BaseException:
            status = 1
        os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in netns {ns}:\n{value}")
    result: T = value
    return result


@dataclass(frozen=True)
class Lab:
    ns: str
    br: int
    vx: int  # vx100, IPv4 underlay
    vx6: int  # vx200, IPv6 underlay
    host: int  # veth host port on br0 (peer host0p)

    def sh(self, command: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, *command.split()],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def fdb(self, dev: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = json.loads(self.sh(f"bridge -j fdb show dev {dev}"))
        return entries

    def neigh(self, dev: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = json.loads(self.sh(f"ip -j neigh show dev {dev}"))
        return entries

    def apply(self, ops: list[Op]) -> list[OpFailure]:
        return run_in_netns(self.ns, _apply, ops)


def _apply(ops: list[Op]) -> list[OpFailure]:
    with NetlinkWriter() as writer:
        return writer.apply(ops)


@pytest.fixture
def lab() -> Iterator[Lab]:
    ns = f"evt-{os.getpid()}-{uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        setup = [
            "ip link add br0 type bridge",
            "ip link add vx100 type vxlan id 100 local 192.0.2.1 dstport 4789 nolearning",
            "ip link add vx200 type vxlan id 200 local 2001:db8::1 dstport 4789 nolearning",
            "ip link add host0 type veth peer name host0p",
        ]
        for port in ("vx100", "vx200", "host0"):
            setup += [f"ip link set {port} master br0", f"ip link set {port} up"]
        setup += [
            "ip link set host0p up",
            "ip link set br0 up",
            "bridge link set dev vx100 learning off",
            "bridge link set dev vx200 learning off",
        ]
        for command in setup:
            subprocess.run(["ip", "netns", "exec", ns, *command.split()], check=True)
        links = json.loads(
            subprocess.run(
                ["ip", "-n", ns, "-j", "link", "show"], check=True, capture_output=True, text=True
            ).stdout
        )
        index = {link["ifname"]: link["ifindex"] for link in links}
        yield Lab(ns, index["br0"], index["vx100"], index["vx200"], index["host0"])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def entries_for(entries: list[dict[str, Any]], mac: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["mac"] == mac]


def master_entry(entries: list[dict[str, Any]], mac: str) -> dict[str, Any]:
    (entry,) = [e for e in entries_for(entries, mac) if "master" in e]
    return entry


def self_entry(entries: list[dict[str, Any]], mac: str) -> dict[str, Any]:
    (entry,) = [e for e in entries_for(entries, mac) if "self" in e["flags"]]
    return entry


def flood_dsts(entries: list[dict[str, Any]]) -> set[str]:
    return {e["dst"] for e in entries if e["mac"] == ZERO}


# --- writer ---------------------------------------------------------------------------------


def test_writer_installs_frr_style_entries(lab: Lab) -> None:
    ops: list[Op] = [
        AddFdb(lab.vx, MAC1, VTEP1),
        AddFdb(lab.vx6, MAC2, "2001:db8::2"),
        AddFlood(lab.vx, VTEP1),
        AddFlood(lab.vx, VTEP2),
        AddNeigh(lab.br, "203.0.113.1", MAC1),
        AddNeigh(lab.br, "2001:db8:1::1", MAC2),
    ]
    assert lab.apply(ops) == []

    vx = lab.fdb("vx100")
    # one request made both: the bridge entry and the VXLAN entry (FRR's recipe)
    assert master_entry(vx, MAC1) == {
        "mac": MAC1, "flags": ["extern_learn"], "master": "br0", "state": "",
    }  # fmt: skip
    assert self_entry(vx, MAC1) == {
        "mac": MAC1, "dst": VTEP1, "flags": ["self", "extern_learn"], "state": "",
    }  # fmt: skip
    floods = [e for e in vx if e["mac"] == ZERO]
    assert sorted(floods, key=lambda e: e["dst"]) == [
        {"mac": ZERO, "dst": dst, "flags": ["self"], "state": "permanent"} for dst in (VTEP1, VTEP2)
    ]
    assert self_entry(lab.fdb("vx200"), MAC2)["dst"] == "2001:db8::2"

    neigh = {n["dst"]: n for n in lab.neigh("br0")}
    for ip, mac in (("203.0.113.1", MAC1), ("2001:db8:1::1", MAC2)):
        assert neigh[ip]["lladdr"] == mac
        assert neigh[ip]["state"] == ["NOARP"]
        assert "extern_learn" in lab.sh(f"ip neigh show dev br0 to {ip}")
        assert "extern_learn NOARP proto bgp" in lab.sh(f"ip neigh show dev br0 to {ip}")


def test_writer_is_idempotent(lab: Lab) -> None:
    ops: list[Op] = [
        AddFdb(lab.vx, MAC1, VTEP1),
        AddFlood(lab.vx, VTEP1),
        AddNeigh(lab.br, "203.0.113.1", MAC1),
    ]
    assert lab.apply(ops) == []
    before = (lab.fdb("vx100"), lab.neigh("br0"))
    assert lab.apply(ops) == []
    assert (lab.fdb("vx100"), lab.neigh("br0")) == before
    assert len(entries_for(before[0], MAC1)) == 2
    assert flood_dsts(before[0]) == {VTEP1}


def test_remote_mac_moves_by_replace(lab: Lab) -> None:
    assert lab.apply([AddFdb(lab.vx, MAC1, VTEP1)]) == []
    assert lab.apply([AddFdb(lab.vx, MAC1, VTEP2)]) == []
    vx = lab.fdb("vx100")
    assert len(entries_for(vx, MAC1)) == 2
    assert self_entry(vx, MAC1)["dst"] == VTEP2


def test_deletes_remove_exactly_their_entries(lab: Lab) -> None:
    adds: list[Op] = [
        AddFdb(lab.vx, MAC1, VTEP1),
        AddFdb(lab.vx, MAC2, VTEP2),
        AddFlood(lab.vx, VTEP1),
        AddFlood(lab.vx, VTEP2),
        AddNeigh(lab.br, "203.0.113.1", MAC1),
        AddNeigh(lab.br, "203.0.113.2", MAC2),
    ]
    assert lab.apply(adds) == []
    deletes: list[Op] = [
        DelFdb(lab.vx, MAC1),
        DelFlood(lab.vx, VTEP1),
        DelNeigh(lab.br, "203.0.113.1"),
    ]
    assert lab.apply(deletes) == []
    vx = lab.fdb("vx100")
    assert entries_for(vx, MAC1) == []
    assert len(entries_for(vx, MAC2)) == 2
    assert flood_dsts(vx) == {VTEP2}
    assert {n["dst"] for n in lab.neigh("br0")} == {"203.0.113.2"}
    # deleting what is already gone (ENOENT) is success
    assert lab.apply(deletes) == []
    assert lab.apply([DelFlood(lab.vx, VTEP3), DelNeigh(lab.br, "2001:db8::99")]) == []


def test_delete_fdb_removes_vxlan_entry_when_bridge_entry_is_gone(lab: Lab) -> None:
    assert lab.apply([AddFdb(lab.vx, MAC1, VTEP1)]) == []
    lab.sh(f"bridge fdb del {MAC1} dev vx100 master")
    assert [e.get("dst") for e in entries_for(lab.fdb("vx100"), MAC1)] == [VTEP1]
    assert lab.apply([DelFdb(lab.vx, MAC1)]) == []
    assert entries_for(lab.fdb("vx100"), MAC1) == []


def test_a_later_add_in_the_batch_is_not_undone_by_the_follow_up_delete(lab: Lab) -> None:
    """A DelFdb whose bridge entry is gone needs a second request for its VXLAN entry, sent
    after the batch: it must not delete what a later op of the same batch installed."""
    assert lab.apply([AddFdb(lab.vx, MAC1, VTEP1), AddFdb(lab.vx, MAC2, VTEP1)]) == []
    lab.sh(f"bridge fdb del {MAC1} dev vx100 master")
    lab.sh(f"bridge fdb del {MAC2} dev vx100 master")
    ops: list[Op] = [DelFdb(lab.vx, MAC1), DelFdb(lab.vx, MAC2), AddFdb(lab.vx, MAC1, VTEP2)]
    assert lab.apply(ops) == []
    vx = lab.fdb("vx100")
    assert self_entry(vx, MAC1)["dst"] == VTEP2
    assert entries_for(vx, MAC2) == []


def test_delete_fdb_on_vxlan_outside_a_bridge(lab: Lab) -> None:
    """No bridge, no bridge entry: the kernel's EOPNOTSUPP for it means "absent"."""
    lab.sh("ip link set vx100 nomaster")
    assert lab.apply([AddFdb(lab.vx, MAC1, VTEP1)]) == []
    assert [e.get("dst") for e in entries_for(lab.fdb("vx100"), MAC1)] == [VTEP1]
    assert lab.apply([DelFdb(lab.vx, MAC1)]) == []
    assert entries_for(lab.fdb("vx100"), MAC1) == []
    assert lab.apply([DelFdb(lab.vx, MAC1)]) == []


def test_failing_op_is_reported_and_the_rest_applied(lab: Lab) -> None:
    bad = AddFdb(999_999, MAC3, VTEP3)
    malformed = AddFlood(lab.vx, "198.51.100.300")
    ops: list[Op] = [AddFdb(lab.vx, MAC1, VTEP1), bad, malformed, AddFdb(lab.vx, MAC2, VTEP2)]
    failures = lab.apply(ops)
    assert [(f.op, f.errno) for f in failures] == [(bad, errno.ENODEV), (malformed, errno.EINVAL)]
    assert failures[0].message  # the kernel's extack text or strerror
    vx = lab.fdb("vx100")
    assert len(entries_for(vx, MAC1)) == 2 and len(entries_for(vx, MAC2)) == 2


def test_bulk_apply_and_dump(lab: Lab) -> None:
    count = 20_000
    macs = [
        f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}" for i in range(count)
    ]
    vteps = [VTEP1, VTEP2, VTEP3]
    ops: list[Op] = [AddFdb(lab.vx, mac, vteps[i % 3]) for i, mac in enumerate(macs)]
    assert lab.apply(ops) == []
    snapshot = run_in_netns(lab.ns, lambda: asyncio.run(dump()))
    # A dump split over many datagrams may repeat an entry at a boundary (the kernel
    # resumes bucket walks by index): count distinct entries.
    ours = {e for e in snapshot.fdb if e.ifindex == lab.vx and e.ext_learned}
    assert len(ours) == 2 * count
    bridge_side = {e.mac for e in ours if e.is_master and e.master == lab.br}
    vxlan_side = {(e.mac, e.dst) for e in ours if e.is_self}
    assert bridge_side == set(macs)
    assert vxlan_side == {(mac, vteps[i % 3]) for i, mac in enumerate(macs)}
    assert lab.apply([DelFdb(lab.vx, mac) for mac in macs]) == []
    assert [e for e in lab.fdb("vx100") if e["mac"] in set(macs)] == []


def _apply_with(ops: list[Op], options: dict[str, Any]) -> list[OpFailure]:
    with NetlinkWriter(**options) as writer:
        return writer.apply(ops)


def vxlan_macs(lab: Lab) -> set[str]:
    """MACs with a VXLAN entry (the 'self' side) on vx100, flood entries left out."""
    return {e["mac"] for e in lab.fdb("vx100") if "self" in e["flags"] and e["mac"] != ZERO}


@pytest.mark.parametrize(
    "options",
    [{}, {"chunk_bytes": 1}, {"use_sendmmsg": False}],
    ids=["sendmmsg", "one-request-per-datagram", "send-per-datagram"],
)
def test_errors_in_a_large_batch_are_reported_for_exactly_their_ops(
    lab: Lab, options: dict[str, Any]
) -> None:
    """Requests carry no NLM_F_ACK: the kernel answers only failures, and each answer must
    reach its own op wherever it is in the batch. One request per datagram makes 5,000
    datagrams, more than one sendmmsg() call takes (1,024)."""
    lab.sh("ip link add br1 type bridge")
    lab.sh("ip link set br1 mtu 1200 up")  # below IPv6's minimum MTU: no IPv6 on br1
    br1 = json.loads(lab.sh("ip -j link show br1"))[0]["ifindex"]
    count = 5_000
    macs = [f"02:00:01:00:{i >> 8:02x}:{i & 0xFF:02x}" for i in range(count)]
    ops: list[Op] = [AddFdb(lab.vx, mac, VTEP1) for mac in macs]
    failing: dict[int, tuple[Op, int]] = {
        0: (AddFdb(999_999, MAC1, VTEP1), errno.ENODEV),
        7: (AddFdb(999_999, MAC3, VTEP3), errno.ENODEV),
        1_500: (AddNeigh(br1, "2001:db8::7", MAC1), errno.EINVAL),
        2_600: (DelFdb(999_999, MAC2), errno.ENODEV),
        3_999: (AddFlood(lab.vx, "198.51.100.300"), errno.EINVAL),  # malformed: never sent
        4_999: (AddFlood(999_999, VTEP2), errno.ENODEV),  # the last request, before the barrier
    }
    absent: dict[int, Op] = {  # deletes of what is not there: success (and a follow-up round)
        100: DelNeigh(lab.br, "203.0.113.99"),
        3_000: DelFlood(lab.vx, VTEP3),
        4_000: DelFdb(lab.vx, "02:00:5e:00:09:09"),
    }
    for index, (op, _code) in failing.items():
        ops[index] = op
    for index, op in absent.items():
        ops[index] = op
    failures = run_in_netns(lab.ns, _apply_with, ops, options)
    assert [(f.op, f.errno) for f in failures] == [failing[i] for i in sorted(failing)]
    assert all(f.message for f in failures)
    replaced = failing.keys() | absent.keys()
    assert vxlan_macs(lab) == {mac for i, mac in enumerate(macs) if i not in replaced}
    assert lab.neigh("br1") == []


def _overflow_then_retry(ops: list[Op], more: list[Op], vx: int) -> tuple[list[OpFailure], ...]:
    """Two batches on one writer whose receive buffer holds only a few errors."""
    with NetlinkWriter(rcvbuf=4096) as writer:
        first = writer.apply(ops)
        retry = [f.op for f in first if f.op.ifindex == vx]  # the good ops reported unknown
        return first, writer.apply(retry + more)


def test_errors_overflowing_the_receive_buffer_leave_no_op_counted_as_success(lab: Lab) -> None:
    """Thousands of errors overflow a tiny receive buffer: the kernel drops some answers
    (ENOBUFS), so no silent op of that batch may count as a success. The next batch on the
    same writer must neither see the old errors nor lose its own."""
    count = 4_000
    good = [AddFdb(lab.vx, f"02:00:02:00:{i >> 8:02x}:{i & 0xFF:02x}", VTEP1) for i in range(count)]
    bad = [AddFdb(999_999, f"02:00:03:00:{i >> 8:02x}:{i & 0xFF:02x}", VTEP2) for i in range(count)]
    ops: list[Op] = [op for pair in zip(good, bad, strict=True) for op in pair]
    late_bad = AddFdb(999_998, MAC1, VTEP3)
    more: list[Op] = [late_bad, DelNeigh(lab.br, "203.0.113.50"), AddFdb(lab.vx, MAC2, VTEP2)]
    first, second = run_in_netns(lab.ns, _overflow_then_retry, ops, more, lab.vx)

    reported = {f.op: f for f in first}
    assert set(bad) <= reported.keys()  # every failing op is a failure
    codes = {f.errno for f in first}
    assert codes == {errno.ENODEV, errno.ENOBUFS}  # some errors read back, then the overflow
    for failure in first:
        assert failure.op in set(bad) or failure.errno == errno.ENOBUFS
        if failure.errno == errno.ENOBUFS:
            assert "outcome unknown" in failure.message
    silent = {op.mac for op in good if op not in reported}
    installed = vxlan_macs(lab)
    assert silent <= installed  # what counted as success was installed

    # the retry of the unknown good ops: no errors this time, and only the new bad op fails
    assert [(f.op, f.errno) for f in second] == [(late_bad, errno.ENODEV)]
    assert vxlan_macs(lab) == {op.mac for op in good} | {MAC2}


@pytest.mark.parametrize("use_sendmmsg", [True, False], ids=["sendmmsg", "send-per-datagram"])
def test_a_failed_send_reports_every_op(lab: Lab, use_sendmmsg: bool) -> None:
    def apply_on_closed_socket(ops: list[Op]) -> list[OpFailure]:
        writer = NetlinkWriter(use_sendmmsg=use_sendmmsg)
        writer.close()
        return writer.apply(ops)

    malformed = AddFdb(lab.vx, "02:00:5e:00:01", VTEP1)
    ops: list[Op] = [
        AddFdb(lab.vx, f"02:00:04:00:{i >> 8:02x}:{i & 0xFF:02x}", VTEP1) for i in range(3_000)
    ]
    ops.insert(1_000, malformed)
    failures = run_in_netns(lab.ns, apply_on_closed_socket, ops)
    assert [f.op for f in failures] == ops
    assert {(f.op == malformed, f.errno) for f in failures} == {
        (True, errno.EINVAL), (False, errno.EBADF)
    }  # fmt: skip
    assert vxlan_macs(lab) == set()


# --- snapshot -------------------------------------------------------------------------------


def test_dump_reports_devices_and_entries(lab: Lab) -> None:
    lab.sh("ip link set vx200 down")
    ops: list[Op] = [
        AddFdb(lab.vx, MAC1, VTEP1),
        AddFlood(lab.vx, VTEP2),
        AddNeigh(lab.br, "203.0.113.1", MAC1),
    ]
    assert lab.apply(ops) == []
    snapshot: KernelSnapshot = run_in_netns(lab.ns, lambda: asyncio.run(dump()))
    links = {link.ifindex: link for link in snapshot.links}
    assert links[lab.vx] == VxlanDevice(
        lab.vx, "vx100", 100, "192.0.2.1", lab.br, learning=False, up=True, vlan=None
    )
    vx6 = links[lab.vx6]
    assert isinstance(vx6, VxlanDevice)
    assert (vx6.vni, vx6.local, vx6.up) == (200, "2001:db8::1", False)
    bridge, host = links[lab.br], links[lab.host]
    assert isinstance(bridge, BridgeDevice) and bridge.name == "br0" and bridge.up
    assert not bridge.vlan_filtering  # this kernel has no bridge VLAN filtering
    assert isinstance(host, OtherLink) and (host.kind, host.master) == ("veth", lab.br)

    fdb = [e for e in snapshot.fdb if e.ifindex == lab.vx and e.mac == MAC1]
    assert {(e.is_master, e.is_self, e.ext_learned, e.dst) for e in fdb} == {
        (True, False, True, None),
        (False, True, True, VTEP1),
    }
    (flood,) = [e for e in snapshot.fdb if e.ifindex == lab.vx and e.is_flood]
    assert (flood.dst, flood.is_self, flood.permanent) == (VTEP2, True, True)
    (neigh,) = [n for n in snapshot.neigh if n.ip == "203.0.113.1"]
    assert (neigh.ifindex, neigh.mac, neigh.ext_learned, neigh.protocol) == (
        lab.br, MAC1, True, 186,
    )  # fmt: skip


def test_the_agents_dump_leaves_out_the_bridge_side_of_vxlan_devices(lab: Lab) -> None:
    """What the agent reads of a dump: VXLAN entries, flood entries and local entries,
    without the bridge entries of the VXLAN devices (one per remote MAC, never read)."""
    ops: list[Op] = [AddFdb(lab.vx, MAC1, VTEP1), AddFlood(lab.vx, VTEP2)]
    assert lab.apply(ops) == []
    lab.sh(f"bridge fdb add {MAC2} dev host0 master static")
    try:
        full = run_in_netns(lab.ns, lambda: asyncio.run(dump()))
        lean = run_in_netns(lab.ns, lambda: asyncio.run(dump(vxlan_bridge_side=False)))
    finally:
        lab.sh(f"bridge fdb del {MAC2} dev host0 master")
    vxlans = {link.ifindex for link in full.links if isinstance(link, VxlanDevice)}
    left_out = {e for e in full.fdb if e.ifindex in vxlans and not e.is_self}
    assert any(e.mac == MAC1 and e.is_master for e in left_out)  # there was one to leave out
    # (entries on VXLAN devices are only ours: nothing learns there between the two dumps)
    assert {e for e in lean.fdb if e.ifindex in vxlans} == {
        e for e in full.fdb if e.ifindex in vxlans and e.is_self
    }
    assert {(e.ifindex, e.mac) for e in lean.fdb} >= {
        (lab.vx, MAC1), (lab.vx, ZERO), (lab.host, MAC2)
    }  # fmt: skip
    assert lean.links == full.links


def send_frame(ifname: str, src: str) -> None:
    """One broadcast Ethernet frame (local experimental ethertype) out of `ifname`."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        sock.send(b"\xff" * 6 + bytes.fromhex(src.replace(":", "")) + b"\x88\xb5" + bytes(46))


# --- monitor --------------------------------------------------------------------------------


def _monitor_scenario(vx: int, br: int, host: int) -> tuple[list[KernelEvent], MonitorStats, bool]:
    """Bind, write quiet and non-quiet changes, collect events until the last one arrives."""

    async def scenario() -> tuple[list[KernelEvent], MonitorStats, bool]:
        quiet = Managed(vxlans=frozenset({vx}), svis=frozenset({br}))
        async with Monitor(quiet) as monitor:
            with NetlinkWriter() as writer:
                ops: list[Op] = [AddFdb(vx, f"02:00:5e:00:10:{i:02x}", VTEP1) for i in range(50)]
                ops += [AddFlood(vx, VTEP1), AddNeigh(br, "203.0.113.7", MAC1)]
                assert writer.apply(ops) == []
            for command in (
                f"bridge fdb add {MAC2} dev host0 master static",
                f"bridge fdb del {MAC2} dev host0 master",
            ):
                subprocess.run(command.split(), check=True)
            send_frame("host0p", src=MAC3)  # the bridge learns MAC3 on host0
            subprocess.run(["ip", "link", "set", "vx100", "down"], check=True)
            seen: list[KernelEvent] = []
            deadline = time.monotonic() + 10
            backlog_before = monitor.backlog()  # all of it waits unread

            def vx_down() -> bool:
                return any(
                    isinstance(e, LinkUpdated) and e.link.ifindex == vx and not e.link.up
                    for e in seen
                )

            async for batch in monitor.events():
                seen += batch
                if vx_down() or time.monotonic() > deadline:
                    break
            return seen, monitor.stats, backlog_before

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def _dump_scenario(br: int) -> tuple[bool, bool, list[KernelEvent]]:
    """Dumps while changes wait unread on the monitor: none deletes an FDB entry, then one
    goes during the dump; then the events, which the dumps' reading of the queue must not
    lose."""

    async def scenario() -> tuple[bool, bool, list[KernelEvent]]:
        kernel = NetlinkKernel(rcvbuf=1 << 20)
        await kernel.start()
        try:
            for command in (
                f"bridge fdb add {MAC2} dev host0 master static",
                f"ip neigh replace 203.0.113.9 lladdr {MAC1} dev br0 nud permanent",
            ):
                subprocess.run(command.split(), check=True)
            quiet = await kernel.dump()
            real_dump = port.dump

            async def dump_then_delete(**options: bool) -> KernelSnapshot:
                snap = await real_dump(**options)  # MAC2 goes while the dump "runs"
                subprocess.run(f"bridge fdb del {MAC2} dev host0 master".split(), check=True)
                return snap

            port.dump = dump_then_delete  # in the forked child only
            deleted = await kernel.dump()
            seen: list[KernelEvent] = []
            deadline = time.monotonic() + 10
            async for batch in kernel.events():
                seen += batch
                if any(isinstance(e, FdbRemoved) for e in seen) or time.monotonic() > deadline:
                    break
            return quiet.complete, deleted.complete, seen
        finally:
            kernel.close()

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_dump_is_incomplete_only_if_fdb_entries_went_meanwhile(lab: Lab) -> None:
    """The FDB dump has no NLM_F_DUMP_INTR, so deletions while it runs make it incomplete;
    other changes waiting unread (an entry added, a neighbour) do not. At 1,000 VNIs the
    bridges' own neighbour discovery always left one: every start dumped again."""
    quiet, deleted, events = run_in_netns(lab.ns, _dump_scenario, lab.br)
    assert quiet and not deleted
    mac2 = [
        type(e) for e in events if isinstance(e, FdbUpdated | FdbRemoved) and e.entry.mac == MAC2
    ]
    assert mac2 == [FdbUpdated, FdbRemoved]
    assert any(isinstance(e, NeighUpdated) and e.entry.ip == "203.0.113.9" for e in events)


def test_monitor_reports_foreign_changes_and_skips_our_echoes(lab: Lab) -> None:
    events, stats, backlog = run_in_netns(lab.ns, _monitor_scenario, lab.vx, lab.br, lab.host)
    assert stats.kernel_filter and stats.overflows == 0
    # unread messages show before events() reads them; MAC2's removal is the one deletion
    assert backlog and stats.fdb_deletions == 1
    fdb_events = [e for e in events if isinstance(e, FdbUpdated | FdbRemoved)]
    # MAC2's own events, in order: the bridge may also learn the host veth's own MAC (its
    # IPv6 autoconfiguration traffic) at any moment
    assert [(type(e), e.entry.ifindex) for e in fdb_events if e.entry.mac == MAC2] == [
        (FdbUpdated, lab.host),
        (FdbRemoved, lab.host),
    ]
    (learned,) = [e for e in fdb_events if e.entry.mac == MAC3]
    assert isinstance(learned, FdbUpdated)
    assert (learned.entry.ifindex, learned.entry.master) == (lab.host, lab.br)
    assert not learned.entry.ext_learned and not learned.entry.is_static
    ours = {f"02:00:5e:00:10:{i:02x}" for i in range(50)} | {ZERO}
    assert not any(e.entry.mac in ours and e.entry.ifindex == lab.vx for e in fdb_events)
    # the kernel filter dropped every echo: the extern_learn entries and the flood entry
    assert stats.quiet == 0
    (down,) = [e for e in events if isinstance(e, LinkUpdated) and e.link.ifindex == lab.vx]
    assert down.link == VxlanDevice(
        lab.vx, "vx100", 100, "192.0.2.1", lab.br, learning=False, up=False, vlan=None
    )


def _echo_scenario(vx: int) -> list[KernelEvent]:
    """With an empty filter our own writes come back as events; replacing it silences them."""

    async def scenario() -> list[KernelEvent]:
        seen: list[KernelEvent] = []

        async def collect_until(events: AsyncIterator[list[KernelEvent]], pred: Any) -> None:
            async for batch in events:
                seen.extend(batch)
                if any(pred(e) for e in batch):
                    return

        async with Monitor(Managed(vxlans=frozenset({vx}))) as monitor:
            events = monitor.events()
            with NetlinkWriter() as writer:
                monitor.quiet = Managed()
                assert writer.apply([AddFdb(vx, MAC1, VTEP1)]) == []
                await collect_until(
                    events, lambda e: isinstance(e, FdbUpdated) and e.entry.mac == MAC1
                )
                monitor.quiet = Managed(vxlans=frozenset({vx}))
                assert writer.apply([AddFdb(vx, MAC2, VTEP1)]) == []
            subprocess.run(["ip", "link", "set", "vx100", "down"], check=True)
            await collect_until(events, lambda e: isinstance(e, LinkUpdated))
        return seen

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_monitor_quiet_filter_can_be_replaced(lab: Lab) -> None:
    events = run_in_netns(lab.ns, _echo_scenario, lab.vx)
    fdb = [e for e in events if isinstance(e, FdbUpdated) and e.entry.ifindex == lab.vx]
    assert {e.entry.mac for e in fdb} == {MAC1}
    # both sides of the remote MAC came back while nothing was quiet
    assert {(e.entry.is_master, e.entry.dst) for e in fdb} >= {(True, None), (False, VTEP1)}


def _thousands_scenario(
    vx: int, vx6: int, quiet: Managed
) -> tuple[list[KernelEvent], MonitorStats, bool]:
    """The filter for 8,000 devices, attached and replaced; echoes on vx and vx6, then vx down."""

    async def scenario() -> tuple[list[KernelEvent], MonitorStats, bool]:
        seen: list[KernelEvent] = []
        async with Monitor(quiet) as monitor:
            monitor.quiet = quiet  # a replacement fits the option memory too
            attached_again = monitor.stats.kernel_filter
            with NetlinkWriter() as writer:
                ops: list[Op] = [AddFdb(vx, f"02:00:5e:00:20:{i:02x}", VTEP1) for i in range(20)]
                ops += [AddFdb(vx6, f"02:00:5e:00:60:{i:02x}", "2001:db8::2") for i in range(20)]
                assert writer.apply(ops) == []
            subprocess.run(["ip", "link", "set", "vx100", "down"], check=True)
            async for batch in monitor.events():
                seen += batch
                if any(isinstance(e, LinkUpdated) and e.link.ifindex == vx for e in batch):
                    break
            return seen, monitor.stats, attached_again

    return asyncio.run(asyncio.wait_for(scenario(), 20))


def test_monitor_filter_for_8000_devices_drops_only_listed_echoes(lab: Lab) -> None:
    """vx100 is one of 8,000 managed devices, vx200 (in the same 32-block) is not."""
    # Debian 12's kernel (6.1) charges the filter to a 20 KiB optmem_max; newer kernels have
    # 128 KiB and a per-namespace setting: hold this test to the smaller one where possible.
    subprocess.run(
        ["ip", "netns", "exec", lab.ns, "sysctl", "-qw", "net.core.optmem_max=20480"],
        check=False,
        capture_output=True,
    )
    others = range(1001, 1001 + 7998)  # created in turn: bridges and VXLAN devices alternate
    quiet = Managed(
        vxlans=frozenset({lab.vx, *others[::2]}), svis=frozenset({lab.br, *others[1::2]})
    )
    assert len(quiet.vxlans | quiet.svis) == 8000 and lab.vx6 not in quiet.vxlans
    events, stats, attached_again = run_in_netns(
        lab.ns, _thousands_scenario, lab.vx, lab.vx6, quiet
    )
    assert stats.kernel_filter and attached_again and stats.overflows == 0
    fdb = [e for e in events if isinstance(e, FdbUpdated)]
    assert {e.entry.mac for e in fdb if e.entry.ifindex == lab.vx6} == {
        f"02:00:5e:00:60:{i:02x}" for i in range(20)
    }
    # the listed device's echoes never reached userspace, not even to be recognised there
    assert not [e for e in fdb if e.entry.ifindex == lab.vx] and stats.quiet == 0
