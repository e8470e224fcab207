"""The scale lab's fabric: two FRR route reflectors that also peer with the generator of
emulated VTEPs (sending it nothing), VTEP boxes with many VNIs made by ``ip -batch``, and
the check of a VTEP's kernel against the routes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from lab.fabric import BRIDGE, IP, Box, Fabric, Vni, render_rr_config, run
from lab.fabric.addressing import ASN, VXLAN_PORT


def with_timers(config: str, hold_time: int) -> str:
    """FRR's ``timers 3 9`` (the lab's fast failure detection) as keepalive/hold
    ``hold_time // 3`` / ``hold_time``: with 9 s, a speaker starved of CPU by a cold start
    of many VTEPs on one small machine misses its keepalives and the sessions flap."""
    return config.replace(" timers 3 9\n", f" timers {max(1, hold_time // 3)} {hold_time}\n")


def rr_config(box: Box, generator: str, hold_time: int = 9) -> str:
    """A route reflector for the clients of the underlay, plus the generator: a client
    whose routes are reflected but which receives none (route-map out: deny), so that the
    emulated VTEPs cost no CPU decoding the fabric's routes."""
    base = render_rr_config(
        router_id=box.router_id,
        log_file=box.directory / "frr" / "bgpd.log",
        hostname=box.name,
    )
    lines = base.rstrip("\n").split("\n")
    at = lines.index(" address-family l2vpn evpn")
    lines[at:at] = [f" neighbor {generator} remote-as {ASN}", f" neighbor {generator} timers 3 9"]
    at = lines.index(" exit-address-family")
    lines[at:at] = [
        f"  neighbor {generator} activate",
        f"  neighbor {generator} route-reflector-client",
        f"  neighbor {generator} route-map SCALE-SEND-NOTHING out",
    ]
    lines += ["route-map SCALE-SEND-NOTHING deny 10", "!"]
    return with_timers("\n".join(lines) + "\n", hold_time)


def add_route_reflectors(fab: Fabric, generator: str, hold_time: int) -> list[Box]:
    rrs = []
    for index in (1, 2):
        box = fab.add_box(f"rr{index}", index)
        fab.start_frr(box, rr_config(box, generator, hold_time))
        box.vtysh("configure terminal", "log timestamp precision 3")
        rrs.append(box)
    return rrs


def restart_frr(box: Box) -> None:
    """Start a stopped box's FRR again with the configs it had."""
    assert box.frr is not None
    config = (box.frr.directory / "bgpd.conf").read_text()
    box.frr.start(config, box.name)


def _batch(box: Box, commands: Iterable[str], tool: str = IP) -> None:
    """``commands`` in one ``ip -batch`` (or ``bridge -batch``) in the box's namespace."""
    with tempfile.NamedTemporaryFile("w", suffix=".batch", dir=box.directory) as batch:
        batch.write("".join(command + "\n" for command in commands))
        batch.flush()
        run([tool, "-n", box.netns.name, "-batch", batch.name], timeout=600)


def flush_fdb(box: Box, vnis: Sequence[int]) -> None:
    """Remove every FDB entry a VTEP's daemon wrote on its VXLAN devices (flood entries,
    remote MACs: the device's own entries stay), in one ``bridge -batch``."""
    _batch(
        box,
        [
            f"fdb flush dev vxlan{vni} self\nfdb flush dev vxlan{vni} master nopermanent"
            for vni in vnis
        ],
        tool=BRIDGE,
    )


def add_vnis(box: Box, vnis: Sequence[int]) -> None:
    """A traditional bridge ``br<vni>`` with VXLAN port ``vxlan<vni>`` per VNI (Box.add_vni's
    layout), all in one ``ip -batch`` per step: one process, not several per device."""

    _batch(
        box,
        [
            f"link add br{vni} type bridge stp_state 0\n"
            f"link add vxlan{vni} type vxlan id {vni} local {box.address} "
            f"dstport {VXLAN_PORT} nolearning\n"
            f"link set vxlan{vni} master br{vni} addrgenmode none\n"
            f"link set vxlan{vni} type bridge_slave learning off"
            for vni in vnis
        ],
    )
    _batch(box, [f"link set br{vni} up\nlink set vxlan{vni} up" for vni in vnis])
    for vni in vnis:
        box.vnis[vni] = Vni(vni, f"br{vni}", f"vxlan{vni}")


def del_vnis(box: Box, vnis: Sequence[int]) -> None:
    _batch(box, [f"link del vxlan{vni}\nlink del br{vni}" for vni in vnis])
    for vni in vnis:
        box.vnis.pop(vni, None)


def kernel_state(box: Box) -> tuple[set[tuple[int, str]], dict[tuple[int, str], str]]:
    """(flood entries {(vni, dst)}, remote MACs {(vni, mac): dst}) from one FDB dump."""
    rows: list[dict[str, Any]] = json.loads(
        run([BRIDGE, "-n", box.netns.name, "-j", "fdb", "show"], timeout=300) or "[]"
    )
    flood: set[tuple[int, str]] = set()
    macs: dict[tuple[int, str], str] = {}
    for row in rows:
        name, dst = row.get("ifname", ""), row.get("dst")
        if not name.startswith("vxlan") or dst is None or "self" not in row.get("flags", []):
            continue
        vni = int(name[len("vxlan") :])
        if row["mac"] == "00:00:00:00:00:00":
            flood.add((vni, dst))
        else:
            macs[(vni, row["mac"])] = dst
    return flood, macs


def compare(
    expected: tuple[set[tuple[int, str]], dict[tuple[int, str], str]],
    actual: tuple[set[tuple[int, str]], dict[tuple[int, str], str]],
) -> dict[str, int]:
    """Missing, stale (in the kernel, in no route) and wrong-destination entries."""
    flood_want, macs_want = expected
    flood_have, macs_have = actual
    return {
        "flood_missing": len(flood_want - flood_have),
        "flood_stale": len(flood_have - flood_want),
        "macs_missing": len(macs_want.keys() - macs_have.keys()),
        "macs_stale": len(macs_have.keys() - macs_want.keys()),
        "macs_wrong_vtep": sum(
            1 for key, dst in macs_want.items() if key in macs_have and macs_have[key] != dst
        ),
    }
