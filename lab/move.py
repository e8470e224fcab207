"""``./lab/demo move``: a host moves to another leaf as a live-migrating VM, and back."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from lab import runner, topology
from lab.console import Usage, heading, say
from lab.fabric import BRIDGE, IP, PYTHON, CommandError, run
from lab.live import Lab, open_lab, peers_in_vni, poll
from lab.runner import ping_matrix
from lab.topology import Host


@dataclass(frozen=True)
class Plug:
    """Where a host's NIC is plugged in: a VTEP's port and the host's interface."""

    vtep: str
    port: str
    interface: str


def cmd_move(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    if args.host not in {h.name for h in lab.plan.hosts}:
        raise Usage(f"no host {args.host!r}: {', '.join(h.name for h in lab.plan.hosts)}")
    host = lab.plan.host(args.host)
    if host.mac is None:
        raise Usage(f"{host.name} has no fixed MAC in the clab file")
    can_take = [
        n.name
        for n in lab.plan.by_role(*topology.VTEP_ROLES)
        if n.name != host.vtep and n.vtep and any(v.vni == host.vni for v in n.vtep.vnis)
    ]
    target = args.to or next((n for n in can_take if n in lab.agents), None)
    if target not in can_take:
        raise Usage(f"{host.name} can move to a VTEP with VNI {host.vni}: {can_take}")
    say(
        f"{host.name} ({host.mac}, {host.ip}, VNI {host.vni}) moves from {host.vtep} to "
        f"{target} and back, as a live-migrating VM: a new NIC at the other leaf gets its MAC "
        "and address and sends one gratuitous ARP; the old NIC stays plugged in (its leaf "
        "still has the MAC as local) until the move is seen, then it is unplugged. Times count "
        "from the gratuitous ARP."
    )
    home = Plug(host.vtep, host.port, host.interface)
    away = Plug(target, f"mv-{host.name}", "eth9")
    ok = move_once(lab, host, home, away)
    ok &= move_once(lab, host, away, home)
    return 0 if ok else 1


def move_once(lab: Lab, host: Host, old: Plug, new: Plug) -> bool:
    state, mac = lab.state, host.mac or ""
    new_vtep = lab.vtep_addresses[new.vtep]
    link = lab.plan.link_of(host.vtep, host.port)
    mtu = str(link.mtu if link else 1500)
    heading(f"{host.name}: {old.vtep} -> {new.vtep} ({new_vtep})")
    host_ns, vtep_ns = state.nodes[host.name].netns, state.nodes[new.vtep].netns
    run([IP, "-n", vtep_ns, "link", "add", new.port, "type", "veth",
         "peer", "name", new.interface, "netns", host_ns])  # fmt: skip
    attach(lab, new.vtep, new.port, host.vni)
    run([IP, "-n", vtep_ns, "link", "set", new.port, "mtu", mtu, "up"])
    # as the clab file's hosts: IPv4 only, so the NIC left behind stays silent
    runner.in_netns(host_ns, ["sysctl", "-qw", f"net.ipv6.conf.{new.interface}.disable_ipv6=1"])
    run([IP, "-n", host_ns, "link", "set", new.interface, "address", mac, "mtu", mtu, "up"])
    run([IP, "-n", host_ns, "address", "del", host.address, "dev", old.interface])
    run([IP, "-n", host_ns, "address", "add", host.address, "dev", new.interface])

    watchers = [v for v in lab.vtep_addresses if v != new.vtep]
    followed: dict[str, float] = {}
    start = time.monotonic()
    runner.in_netns(host_ns, [PYTHON, str(runner.PINGER), "garp", new.interface, host.ip])

    def all_follow() -> bool:
        for vtep in watchers:
            if vtep not in followed and lab.remote_vtep_of(vtep, host.vni, mac) == new_vtep:
                followed[vtep] = time.monotonic() - start
        return len(followed) == len(watchers)

    poll(all_follow, 20.0, 0.01)
    # the source "hypervisor" cleans up: deleting the leaf's end deletes the host's too
    run([IP, "-n", state.nodes[old.vtep].netns, "link", "del", old.port])
    for vtep in watchers:
        seen = followed.get(vtep)
        after = f"{seen * 1000:4.0f} ms" if seen is not None else "NEVER (20 s)"
        was = " (had it as a local MAC)" if vtep == old.vtep else ""
        say(f"  {vtep:<6} sends {mac} to {new_vtep} after {after}{was}")
    everyone = len(followed) == len(watchers)
    if everyone:
        say(f"  every other VTEP followed the move within {max(followed.values()) * 1000:.0f} ms")
    for frr in lab.plan.by_role("frr-vtep"):
        say(f"  {frr.name} (FRR) sees {frr_mac_view(lab, frr.name, host.vni, mac)}")
    peers = peers_in_vni(lab.plan, host)
    result = ping_matrix(state, {host.name: [p.ip for p in peers]}, timeout=2.0)[host.name]
    reach = ", ".join(f"{p.name} {'ok' if result[p.ip] is not None else 'FAILED'}" for p in peers)
    say(f"  {host.name} pings its VNI from {new.vtep}: {reach}")
    return everyone and None not in result.values()


def attach(lab: Lab, node: str, port: str, vni: int) -> None:
    """Put ``port`` into the bridge (and VLAN) that carries ``vni`` on ``node``."""
    netns = lab.state.nodes[node].netns
    vxlan = lab.vxlan_of(node, vni)
    bridge = lab.ip_json(node, "-d", "link", "show", vxlan)[0]["master"]
    run([IP, "-n", netns, "link", "set", port, "master", bridge])
    info = lab.ip_json(node, "-d", "link", "show", bridge)[0]
    if info.get("linkinfo", {}).get("info_data", {}).get("vlan_filtering"):
        # the VNI's VLAN is the VXLAN port's PVID (as vtep-setup.sh sets it)
        vlans = json.loads(run([BRIDGE, "-n", netns, "-j", "vlan", "show", "dev", vxlan]))
        pvid = next(v["vlan"] for e in vlans for v in e["vlans"] if "PVID" in v.get("flags", []))
        run([BRIDGE, "-n", netns, "vlan", "del", "vid", "1", "dev", port], check=False)
        run([BRIDGE, "-n", netns, "vlan", "add", "vid", str(pvid), "dev", port, "pvid", "untagged"])


def frr_mac_view(lab: Lab, node: str, vni: int, mac: str) -> str:
    try:
        out = json.loads(runner.vtysh(lab.state, node, f"show evpn mac vni {vni} mac {mac} json"))
    except (CommandError, ValueError):
        return "unknown"
    entry = out.get(mac, out)
    return (
        f"{entry.get('type', '?')} MAC, remote VTEP {entry.get('remoteVtep', '-')}, "
        f"MAC mobility sequence {entry.get('remoteSequence', '?')}"
    )
