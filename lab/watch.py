"""``./lab/demo watch``: a fabric converging, as it happens.

Once a second, per VTEP: its flood entries (remote VTEPs per VNI, against what the plan
says they must be) and the remote MACs on its VXLAN devices (against the hosts behind the
other VTEPs of its VNIs), read from the kernel with ``bridge fdb``. Stops when every VTEP
is complete and nothing changed for ``--settle`` seconds (or at ``--timeout``); run it in
a second terminal beside ``up`` (it waits for the lab's record), ``move``, ``rr-restart``
or ``agent-restart``; it takes no lock.
"""

from __future__ import annotations

import argparse
import json
import time

from lab import topology
from lab.console import Usage, say
from lab.fabric import BRIDGE, run
from lab.live import Lab, open_lab


def expected(lab: Lab) -> dict[str, tuple[int, int]]:
    """Per VTEP: (flood entries, remote MACs) once converged and every host has talked."""
    vteps = {n.name: n for n in lab.plan.by_role(*topology.VTEP_ROLES) if n.vtep is not None}
    serving: dict[int, set[str]] = {}
    for name, node in vteps.items():
        assert node.vtep is not None
        for setup in node.vtep.vnis:
            serving.setdefault(setup.vni, set()).add(name)
    out = {}
    for name, node in vteps.items():
        assert node.vtep is not None
        mine = [setup.vni for setup in node.vtep.vnis]
        flood = sum(len(serving[vni]) - 1 for vni in mine)
        macs = sum(1 for h in lab.plan.hosts if h.vni in mine and h.vtep != name)
        out[name] = (flood, macs)
    return out


def kernel_counts(netns: str) -> tuple[int, int]:
    """(flood entries, remote MACs): VXLAN-side (``self``) FDB entries with a destination."""
    rows = json.loads(run([BRIDGE, "-n", netns, "-j", "fdb", "show"], check=False) or "[]")
    flood = macs = 0
    for row in rows:
        if row.get("dst") is None or "self" not in row.get("flags", []):
            continue
        if row.get("mac") == "00:00:00:00:00:00":
            flood += 1
        else:
            macs += 1
    return flood, macs


def cmd_watch(args: argparse.Namespace) -> int:
    # started beside ``up``: the lab's record appears once its daemons are started
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            lab = open_lab(args)
            break
        except Usage:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    wanted = expected(lab)
    names = sorted(wanted)
    say("per VTEP: flood entries have/need, remote MACs have/hosts behind other VTEPs")
    say(f"{'t':>6}  " + "  ".join(f"{n:>16}" for n in names))
    started = time.monotonic()
    last: dict[str, tuple[int, int]] = {}
    stable_since = started
    while True:
        now = time.monotonic()
        counts = {n: kernel_counts(lab.state.nodes[n].netns) for n in names}
        if counts != last:
            stable_since, last = now, counts
        cells = []
        complete = True
        for n in names:
            (flood, macs), (need_flood, need_macs) = counts[n], wanted[n]
            done = flood == need_flood and macs >= need_macs
            complete = complete and done
            cells.append(
                f"{flood:>3}/{need_flood:<3} {macs:>3}/{need_macs:<3}{'*' if done else ' '}"
            )
        say(f"{now - started:6.1f}  " + "  ".join(f"{c:>16}" for c in cells))
        if complete and now - stable_since >= args.settle:
            say(f"converged: every VTEP complete (*) and unchanged for {args.settle:g} s")
            return 0
        if now - started >= args.timeout:
            say(f"not converged after {args.timeout:g} s")
            return 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))  # the display's period
