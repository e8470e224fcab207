"""The route reflector of a test fabric, FRR or GoBGP, behind one small interface, so a
test runs the same scenario against either kind.

    rr = add_reflector(fab, "gobgp")           # a box; GoBGP runs once its clients exist
    frr = fab.add_frr_vtep("frr", 11, rrs=[rr.box])
    a1 = fab.add_agent_vtep("a1", 21)
    rr.start([frr, a1])                         # GoBGP: one static neighbor per client
    fab.start_agent(a1, rrs=[rr.box])
    rr.wait_established(a1.address)

Kinds: ``frr`` (FRR 8.4, ``bgp listen range``: any client may connect, End-of-RIB and
enhanced route refresh), ``gobgp`` (GoBGP 3.10 with its default neighbor settings: no
graceful restart, so no End-of-RIB, and no enhanced route refresh) and ``gobgp-gr`` (GoBGP
with graceful restart on every neighbor: End-of-RIB after the table and after a refresh).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab import gobgp as gobgp_lab
from lab.fabric import Box, CommandError, Fabric, missing_requirements, wait_until
from lab.gobgp import Client, Gobgp, start_gobgp

KINDS = ("frr", "gobgp", "gobgp-gr")


def missing_for(kind: str) -> list[str]:
    """What this machine lacks to run a reflector of ``kind`` (empty: nothing)."""
    missing = missing_requirements()
    return missing + gobgp_lab.missing_requirements() if kind.startswith("gobgp") else missing


@dataclass
class Reflector:
    kind: str
    box: Box
    gobgp: Gobgp | None = None

    @property
    def address(self) -> str:
        return self.box.address

    @property
    def graceful_restart(self) -> bool:
        """Whether End-of-RIB follows its table (FRR: always; GoBGP: only with GR)."""
        return self.kind != "gobgp"

    def start(self, clients: Sequence[Box]) -> None:
        """GoBGP: start with a static neighbor per client (FRR accepts any: nothing to do)."""
        if self.kind.startswith("gobgp") and self.gobgp is None:
            gr = self.kind == "gobgp-gr"
            self.gobgp = start_gobgp(self.box, [Client(c.address, gr) for c in clients])

    def session_state(self, address: str) -> str | None:
        """The client's session state, lower case (``established``); None if unknown."""
        if self.gobgp is not None:
            return self.gobgp.session_state(address)
        state = self.box.evpn_peer_state(address)
        return None if state is None else state.lower()

    def wait_established(self, address: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.session_state(address) == "established",
            timeout,
            f"{self.kind} reflector {self.box.name}: session with {address} established",
            retry_on=(CommandError, json.JSONDecodeError),
        )

    def mac_paths(self, mac: str) -> list[tuple[str, str, str]]:
        """(prefix, next hop, extended communities) of every type-2 path for ``mac``;
        communities as FRR writes them (``RT:65000:100 ET:8 MM:2``)."""
        if self.gobgp is None:
            return _frr_mac_paths(self.box, mac)
        found = []
        for prefix, paths in self.gobgp.evpn_rib().items():
            if f"[mac:{mac}]" not in prefix:
                continue
            for path in paths:
                attrs = {a["type"]: a for a in path.get("attrs", [])}
                nexthop = attrs.get(14, {}).get("nexthop", "")
                found.append((prefix, nexthop, _gobgp_communities(attrs.get(16, {}))))
        return found

    def logs(self) -> str:
        if self.gobgp is not None:
            return self.gobgp.logs()
        return self.box.frr.logs() if self.box.frr is not None else ""

    def stop(self) -> None:
        if self.gobgp is not None:
            self.gobgp.stop()


def add_reflector(fab: Fabric, kind: str, name: str = "rr", octet: int = 1) -> Reflector:
    """A reflector box; FRR starts now, GoBGP at :meth:`Reflector.start`."""
    if kind == "frr":
        return Reflector(kind, fab.add_route_reflector(name, octet))
    if kind not in KINDS:
        raise ValueError(f"reflector kind {kind!r}: one of {', '.join(KINDS)}")
    return Reflector(kind, fab.add_box(name, octet))


def _frr_mac_paths(rr: Box, mac: str) -> list[tuple[str, str, str]]:
    table = rr.vtysh_json("show bgp l2vpn evpn route type macip json")
    found = []
    for rd_table in table.values():
        if not isinstance(rd_table, dict):
            continue
        for prefix, entry in rd_table.items():
            if not isinstance(entry, dict) or f"[{mac}]" not in prefix:
                continue
            for group in entry.get("paths", []):
                for path in group if isinstance(group, list) else [group]:
                    nexthop = path.get("nexthops", [{}])[0].get("ip", "")
                    communities = path.get("extendedCommunity", {}).get("string", "")
                    found.append((prefix, nexthop, communities))
    return found


def _gobgp_communities(attr: dict[str, Any]) -> str:
    """GoBGP's extended communities (attribute 16) in FRR's words: ``RT:65000:100 MM:2``."""
    out = []
    for value in attr.get("value", []):
        if "sequence" in value:  # MAC mobility (type 6, subtype 0)
            out.append(
                f"MM:{value['sequence']}" + (", sticky MAC" if value.get("is_sticky") else "")
            )
        elif value.get("subtype") == 2 and isinstance(value.get("value"), str):  # route target
            out.append(f"RT:{value['value']}")
    return " ".join(out)
