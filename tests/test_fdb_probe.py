"""FDB lookups one key at a time (kernel.fdb_probe) against a real bridge in a throw-away
network namespace: present entries are found, absent ones are reported gone, and a dump
taken while entries are deleted is made exact for the keys asked for.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import pytest

from evpn_agent.kernel import dump
from evpn_agent.kernel.fdb_probe import FdbKey, add_missing, probe_fdb
from evpn_agent.model import KernelSnapshot

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

T = TypeVar("T")
PREFIX = "02:00:5e:"  # every MAC a test adds
MAC1, MAC2, MAC3 = f"{PREFIX}00:02:01", f"{PREFIX}00:02:02", f"{PREFIX}00:02:03"


def in_netns(ns: str, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run coro() on its own event loop in a thread that entered netns `ns`."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            from pyroute2.netns import setns

            setns(ns, flags=0)  # this thread only; flags=0: never create a namespace
            outcome.append(asyncio.run(coro()))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


@dataclass(frozen=True)
class Lab:
    ns: str
    br: int
    host: int  # veth port on br0
    directory: Path

    def sh(self, *argv: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, *argv], check=True, capture_output=True, text=True
        )
        return done.stdout

    def batch(self, name: str, lines: list[str]) -> Path:
        path = self.directory / name
        path.write_text("".join(f"{line}\n" for line in lines))
        return path

    def bridge_macs(self) -> set[str]:
        """MACs of br0's test entries on the host port, as `bridge fdb` shows them (not
        what the bridge learns from host0p's own traffic)."""
        entries = json.loads(self.sh("bridge", "-j", "fdb", "show", "br", "br0"))
        return {
            e["mac"]
            for e in entries
            if e.get("ifname") == "host0" and "master" in e and e["mac"].startswith(PREFIX)
        }


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    ns = f"fdbp-{os.getpid()}-{uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for command in (
            "ip link add br0 type bridge",
            "ip link add host0 type veth peer name host0p",
            "ip link set host0 master br0",
            "ip link set host0 up",
            "ip link set host0p up",
            "ip link set br0 up",
        ):
            subprocess.run(["ip", "netns", "exec", ns, *command.split()], check=True)
        links = json.loads(
            subprocess.run(
                ["ip", "-n", ns, "-j", "link", "show"], check=True, capture_output=True, text=True
            ).stdout
        )
        index = {link["ifname"]: link["ifindex"] for link in links}
        yield Lab(ns, index["br0"], index["host0"], tmp_path)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def nth_mac(i: int) -> str:
    return f"{PREFIX}{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


def test_present_entries_are_found_and_absent_ones_gone(lab: Lab) -> None:
    lab.sh("bridge", "fdb", "add", MAC1, "dev", "host0", "master", "static")
    lab.sh("bridge", "fdb", "add", MAC2, "dev", "host0", "master")
    keys: list[FdbKey] = [(lab.br, None, MAC1), (lab.br, None, MAC2), (lab.br, None, MAC3)]

    result = in_netns(lab.ns, lambda: probe_fdb(keys))

    assert {(e.mac, e.ifindex, e.master, e.vlan) for e in result.found} == {
        (MAC1, lab.host, lab.br, None),
        (MAC2, lab.host, lab.br, None),
    }
    static = {e.mac: e.is_static for e in result.found}
    assert static == {MAC1: True, MAC2: False}  # the entries as the kernel holds them
    assert result.gone == [(lab.br, None, MAC3)]
    assert result.unknown == []


def test_a_key_without_a_bridge_is_unknown_not_gone(lab: Lab) -> None:
    lab.sh("bridge", "fdb", "add", MAC1, "dev", "host0", "master", "static")
    # host0 is no bridge (no FDB lookup there) and 99999 no device at all: the kernel
    # refuses the question, which says nothing about the entry.
    keys: list[FdbKey] = [(lab.host, None, MAC1), (99999, None, MAC1), (lab.br, None, MAC1)]

    result = in_netns(lab.ns, lambda: probe_fdb(keys))

    assert [e.mac for e in result.found] == [MAC1]
    assert result.gone == []
    assert sorted(result.unknown) == [(lab.host, None, MAC1), (99999, None, MAC1)]


def test_thousands_of_lookups_pipelined_match_bridge_fdb(lab: Lab) -> None:
    count = 3000  # several sends of at most 256 lookups each
    macs = [nth_mac(i) for i in range(count)]
    lab.sh(
        "bridge",
        "-batch",
        str(lab.batch("add", [f"fdb add {m} dev host0 master static" for m in macs])),
    )
    lab.sh(
        "bridge",
        "-batch",
        str(lab.batch("del", [f"fdb del {m} dev host0 master" for m in macs[::3]])),
    )
    keys: list[FdbKey] = [(lab.br, None, mac) for mac in macs]

    result = in_netns(lab.ns, lambda: probe_fdb(keys))

    assert {e.mac for e in result.found} == lab.bridge_macs() == set(macs) - set(macs[::3])
    assert {mac for _br, _vlan, mac in result.gone} == set(macs[::3])
    assert result.unknown == []


def test_add_missing_restores_what_the_dump_lacked(lab: Lab) -> None:
    lab.sh("bridge", "fdb", "add", MAC1, "dev", "host0", "master", "static")
    lab.sh("bridge", "fdb", "add", MAC2, "dev", "host0", "master", "static")
    keys: list[FdbKey] = [
        (lab.br, None, MAC1),  # in the dump
        (lab.br, None, MAC2),  # taken out of the dump below, as if skipped
        (lab.br, None, MAC3),  # not in the kernel
        (99999, None, MAC1),  # a bridge the snapshot does not hold
    ]

    async def scenario() -> tuple[KernelSnapshot, KernelSnapshot]:
        snap = await dump()
        skipped = KernelSnapshot(
            snap.links, tuple(e for e in snap.fdb if e.mac != MAC2), snap.neigh, complete=False
        )
        return snap, await add_missing(skipped, keys)

    full, fixed = in_netns(lab.ns, scenario)

    def on_host(snap: KernelSnapshot) -> list[tuple[str, int | None]]:
        return sorted(
            (e.mac, e.master)
            for e in snap.fdb
            if e.ifindex == lab.host and e.mac.startswith(PREFIX)
        )

    assert on_host(fixed) == on_host(full) == [(MAC1, lab.br), (MAC2, lab.br)]
    assert fixed.fdb_gone == {(lab.br, None, MAC3), (99999, None, MAC1)}
    assert fixed.complete is False  # every lookup answered: completeness is the dump's own


def test_dump_during_deletions_is_exact_for_the_keys_asked(lab: Lab) -> None:
    """The kernel resumes an FDB dump by position: deletions meanwhile make it skip
    entries that stay. Whatever the timing, every entry that was never deleted must be
    in the dump once the keys it lacked are looked up."""
    count = 20_000
    macs = [nth_mac(i) for i in range(count)]
    lab.sh(
        "bridge",
        "-batch",
        str(lab.batch("add", [f"fdb add {m} dev host0 master static" for m in macs])),
    )
    doomed = set(macs[::2])
    deletions = lab.batch("del", [f"fdb del {m} dev host0 master" for m in macs[::2]])
    keys: list[FdbKey] = [(lab.br, None, mac) for mac in macs]

    async def scenario() -> tuple[KernelSnapshot, KernelSnapshot]:
        # started from this thread, so in its namespace
        deleting = subprocess.Popen(["bridge", "-batch", str(deletions)])
        try:
            snap = await dump()
            fixed = await add_missing(snap, keys)
        finally:
            assert deleting.wait(timeout=60) == 0
        return snap, fixed

    raw, fixed = in_netns(lab.ns, scenario)

    def macs_of(snap: KernelSnapshot) -> set[str]:
        return {e.mac for e in snap.fdb if e.master == lab.br and e.mac.startswith(PREFIX)}

    kept = set(macs) - doomed
    print(f"the raw dump lacked {len(kept - macs_of(raw))} of {len(kept)} entries never deleted")
    assert kept <= macs_of(fixed)
    # What the dump lacked and the lookups did not find was deleted, really.
    assert {mac for _br, _vlan, mac in fixed.fdb_gone} <= doomed
    assert macs_of(fixed) | {mac for _b, _v, mac in fixed.fdb_gone} == set(macs)
