"""Devices and MACs for bench_bulk.py, in batches: one ``ip -batch`` for every bridge and
VXLAN device of a box (1,000 VNIs in one process), one ``bridge -batch`` for N MACs."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from pathlib import Path

from lab.fabric import BRIDGE, VXLAN_PORT, Box, Vni, run


def add_vnis(box: Box, vnis: Sequence[int], host_ports: bool = False) -> None:
    """``br<vni>`` + ``vxlan<vni>`` per VNI, laid out as ``Box.add_vni`` does, in one
    ``ip -batch``; with ``host_ports`` also a veth pair per VNI, ``hp<vni>`` in the bridge
    (the host port) and ``hq<vni>`` (its far end, up, in no bridge)."""
    lines = []
    for vni in vnis:
        bridge, vxlan = f"br{vni}", f"vxlan{vni}"
        lines += [
            f"link add {bridge} type bridge stp_state 0",
            f"link add {vxlan} type vxlan id {vni} local {box.address} dstport {VXLAN_PORT} "
            "nolearning",
            f"link set {vxlan} master {bridge} addrgenmode none",
            f"link set {vxlan} type bridge_slave learning off",
            f"link set {bridge} up",
            f"link set {vxlan} up",
        ]
        if host_ports:
            # no IPv6 link-local addresses: the far end would send MLD/ND from its own
            # MAC, and the VTEP would learn and advertise it besides the benchmark's MACs
            lines += [
                f"link add hp{vni} type veth peer name hq{vni}",
                f"link set hp{vni} addrgenmode none",
                f"link set hq{vni} addrgenmode none",
                f"link set hp{vni} master {bridge} up",
                f"link set hq{vni} up",
            ]
    batch = box.directory / "vnis.ipbatch"
    batch.write_text("\n".join(lines) + "\n")
    box.netns.ip("-batch", str(batch))
    for vni in vnis:
        box.vnis[vni] = Vni(vni, f"br{vni}", f"vxlan{vni}")


LOCAL_MAC_PREFIX = "02:30"  # the generator's MACs start 02:20


def local_mac(index: int) -> str:
    """A unique locally administered unicast MAC per index."""
    return f"{LOCAL_MAC_PREFIX}:" + ":".join(f"{b:02x}" for b in index.to_bytes(4, "big"))


def write_mac_batches(directory: Path, count: int, vnis: Sequence[int]) -> tuple[Path, Path]:
    """The ``bridge -batch`` files that add and delete ``count`` MACs, round-robin over
    the host ports of ``vnis``.

    ``master dynamic``: entries in the bridge exactly like learned ones (state
    reachable, no flags; they age out as learned ones do). A ``static`` entry would be
    NUD_NOARP, which the agent advertises as sticky (MAC mobility sticky bit), so
    static entries would not measure the production path.
    """
    add, delete = [], []
    for i in range(count):
        mac, port = local_mac(i), f"hp{vnis[i % len(vnis)]}"
        add.append(f"fdb add {mac} dev {port} master dynamic")
        delete.append(f"fdb del {mac} dev {port} master")
    add_path, delete_path = directory / "macs-add.batch", directory / "macs-del.batch"
    add_path.write_text("\n".join(add) + "\n")
    delete_path.write_text("\n".join(delete) + "\n")
    return add_path, delete_path


def run_bridge_batch(box: Box, path: Path, timeout: float) -> tuple[float, float]:
    """``bridge -n NS -batch PATH``; returns how long the command took and the CPU it
    used (s: the kernel's work of adding the entries is mostly its system time)."""
    started, cpu = time.monotonic(), _children_cpu()
    run([BRIDGE, "-n", box.netns.name, "-batch", str(path)], timeout=timeout)
    return time.monotonic() - started, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of children waited for
    return usage.ru_utime + usage.ru_stime
