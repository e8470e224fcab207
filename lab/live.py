"""The running lab as the demo's commands see it: its record and plan, and checks on it."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lab import topology
from lab.console import LabFailed, Usage
from lab.fabric import BRIDGE, IP, pid_alive, run
from lab.runner import LabState, evpn_peers
from lab.topology import Host, Plan

SESSION_DEADLINE = 60.0  # every BGP session up, after a build or a route reflector restart


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` is truthy, or None at the deadline (no fixed sleeps)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            return None
        time.sleep(interval)


@dataclass
class Lab:
    state: LabState
    plan: Plan

    @property
    def vtep_addresses(self) -> dict[str, str]:
        return {n.name: n.address or "" for n in self.plan.by_role(*topology.VTEP_ROLES)}

    @property
    def route_reflectors(self) -> list[str]:
        return [n.name for n in self.plan.by_role("route-reflector")]

    @property
    def agents(self) -> list[str]:
        return [n.name for n in self.plan.by_role("agent-vtep")]

    def sessions(self) -> dict[str, dict[str, str]]:
        """Per RR: VTEP name -> BGP state."""
        out = {}
        for rr in self.route_reflectors:
            peers = evpn_peers(self.state, rr)
            out[rr] = {v: peers.get(a, "-") for v, a in self.vtep_addresses.items()}
        return out

    def all_established(self, rrs: Iterable[str] | None = None) -> bool:
        sessions = self.sessions()
        wanted = self.route_reflectors if rrs is None else list(rrs)
        return all(s == "Established" for rr in wanted for s in sessions[rr].values())

    def ip_json(self, node: str, *args: str) -> Any:
        """``ip -j ARGS`` in the node's namespace, decoded."""
        return json.loads(run([IP, "-n", self.state.nodes[node].netns, "-j", *args]) or "[]")

    def vxlan_of(self, node: str, vni: int) -> str:
        for link in self.ip_json(node, "-d", "link", "show", "type", "vxlan"):
            if link.get("linkinfo", {}).get("info_data", {}).get("id") == vni:
                return str(link["ifname"])
        raise LabFailed(f"{node} has no VXLAN device for VNI {vni}")

    def remote_vtep_of(self, node: str, vni: int, mac: str) -> str | None:
        """The VTEP that ``node`` sends ``mac`` to over VXLAN (None: unknown, or local)."""
        netns, vxlan = self.state.nodes[node].netns, self.vxlan_of(node, vni)
        out = run([BRIDGE, "-n", netns, "fdb", "show", "dev", vxlan], check=False)
        for line in out.splitlines():
            words = line.split()
            if words[:1] == [mac] and "dst" in words:
                return words[words.index("dst") + 1]
        return None


def open_lab(args: argparse.Namespace) -> Lab:
    state = LabState.load(args.state_dir)
    if state is None:
        raise Usage(f"no lab is up (no {LabState.path(args.state_dir)}): ./lab/demo up")
    missing = set(rec.netns for rec in state.nodes.values()) - set(state.existing_namespaces())
    if missing:
        raise Usage(f"the lab is broken ({len(missing)} namespaces gone): ./lab/demo down")
    return Lab(state, topology.load(state.topology))


def is_alive(state: LabState) -> bool:
    """Every namespace there, every daemon running."""
    if len(state.existing_namespaces()) != len(state.nodes):
        return False
    for node, rec in state.nodes.items():
        if rec.agent_pid is not None and not pid_alive(rec.agent_pid):
            return False
        if rec.role in topology.FRR_ROLES and state.frr(node).pid("bgpd") is None:
            return False
    return True


def peers_in_vni(plan: Plan, host: Host) -> list[Host]:
    return [h for h in plan.hosts if h.vni == host.vni and h.name != host.name]
