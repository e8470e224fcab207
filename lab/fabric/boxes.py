"""Boxes (routers and VTEPs on the underlay) and their VNIs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.fabric.addressing import VXLAN_PORT, tenant
from lab.fabric.frr import Frr
from lab.fabric.netns import Netns


@dataclass
class Vni:
    vni: int
    bridge: str
    vxlan: str


@dataclass
class Box:
    """A router/VTEP namespace attached to the underlay switch as ``eth0``."""

    name: str
    netns: Netns
    address: str  # underlay address (IPv4, or IPv6 with underlay6), also the VTEP
    directory: Path
    frr: Frr | None = None
    vnis: dict[int, Vni] = field(default_factory=dict)
    router_id: str = ""  # BGP router-id (IPv4); defaults to ``address``

    def __post_init__(self) -> None:
        if not self.router_id:
            self.router_id = self.address

    def exec(self, *argv: str, check: bool = True) -> str:
        return self.netns.exec(*argv, check=check)

    def vtysh(self, *commands: str, check: bool = True) -> str:
        if self.frr is None:
            raise RuntimeError(f"{self.name} runs no FRR")
        return self.frr.vtysh(*commands, check=check)

    def vtysh_json(self, command: str) -> Any:
        if self.frr is None:
            raise RuntimeError(f"{self.name} runs no FRR")
        return self.frr.vtysh_json(command)

    def add_vni(self, vni: int, *, svi_addresses: Sequence[str] = ()) -> Vni:
        """A Linux bridge ``br<vni>`` with a VXLAN port ``vxlan<vni>`` (FRR's layout).

        ``svi_addresses`` (tenant addresses with prefix) go on the bridge so the box
        learns host ARP/ND entries (FRR then advertises MAC+IP routes).
        """
        bridge, vxlan = f"br{vni}", f"vxlan{vni}"
        self.netns.ip("link", "add", bridge, "type", "bridge", "stp_state", "0")
        self.netns.ip(
            "link", "add", vxlan, "type", "vxlan", "id", str(vni), "local", self.address,
            "dstport", str(VXLAN_PORT), "nolearning",
        )  # fmt: skip
        self.netns.ip("link", "set", vxlan, "master", bridge, "addrgenmode", "none")
        self.netns.ip("link", "set", vxlan, "type", "bridge_slave", "learning", "off")
        for svi_address in svi_addresses:
            self.netns.ip("address", "add", tenant(svi_address), "dev", bridge)
        self.netns.ip("link", "set", bridge, "up")
        self.netns.ip("link", "set", vxlan, "up")
        self.vnis[vni] = Vni(vni, bridge, vxlan)
        return self.vnis[vni]

    def del_vni(self, vni: int) -> None:
        entry = self.vnis.pop(vni)
        self.netns.ip("link", "del", entry.vxlan)
        self.netns.ip("link", "del", entry.bridge)

    def fdb(self, device: str) -> str:
        """``bridge fdb show dev DEVICE`` (a port, e.g. ``vxlan100``) inside the box."""
        return self.netns.bridge("fdb", "show", "dev", device)

    def bridge_fdb(self, vni: int) -> str:
        """Every FDB entry of the VNI's bridge and its ports (``bridge fdb show br``)."""
        return self.netns.bridge("fdb", "show", "br", self.vnis[vni].bridge)

    def evpn_peer_state(self, peer: str) -> str | None:
        """BGP state of ``peer`` in the l2vpn evpn summary (None if unknown)."""
        summary = self.vtysh_json("show bgp l2vpn evpn summary json")
        peers = summary.get("peers", {})
        entry = peers.get(peer)
        return None if entry is None else str(entry.get("state"))


def vtysh(box: Box, *commands: str, check: bool = True) -> str:
    """Run vtysh commands against ``box``'s FRR; returns the output."""
    return box.vtysh(*commands, check=check)


def vtysh_json(box: Box, command: str) -> Any:
    """Run one ``... json`` vtysh command against ``box``'s FRR; returns the decoded JSON."""
    return box.vtysh_json(command)
