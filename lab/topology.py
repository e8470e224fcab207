"""Read a containerlab topology (lab/evpn.clab.yml) into a plan for the netns runner.

The clab file is the single description of the lab: containerlab deploys it with Docker,
and ``lab/runner.py`` realises this plan with network namespaces, veths and processes.
Everything the runner needs is in schema-valid containerlab fields:

- ``labels["evpn-lab.role"]`` says what a node is (:data:`ROLES`);
- ``exec`` commands run as they are, in the node's namespace, with container paths
  rewritten to the files bound there (``binds``);
- FRR's configuration is the file bound to ``/etc/frr/frr.conf``;
- an agent VTEP's ``cmd`` is ``evpn-agent run --config PATH`` with PATH bound;
- VTEPs describe their bridges in ``env`` for ``vtep-setup.sh`` (:class:`VtepSetup`).

Parsing is pure (no I/O besides reading the file): :func:`load` returns a :class:`Plan`
or raises :class:`TopologyError` listing every problem.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

ROLE_LABEL = "evpn-lab.role"
ROLES = ("switch", "route-reflector", "frr-vtep", "agent-vtep", "host")
VTEP_ROLES = ("frr-vtep", "agent-vtep")
FRR_ROLES = ("route-reflector", "frr-vtep")
FRR_CONFIG = "/etc/frr/frr.conf"
DEFAULT_MTU = 9500  # containerlab's default for veth links

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")
TENANTS = tuple(
    ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


class TopologyError(Exception):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class Endpoint:
    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True)
class VniSetup:
    vni: int
    vlan: int | None  # on a VLAN-aware bridge
    ports: tuple[str, ...]  # host-facing interfaces in this VNI


@dataclass(frozen=True)
class VtepSetup:
    """What vtep-setup.sh builds, read from the same env it reads."""

    interface: str
    address: ipaddress.IPv4Interface
    bridge: str  # "traditional" or "vlan-aware"
    vnis: tuple[VniSetup, ...]

    def vni_of_port(self, port: str) -> VniSetup | None:
        return next((v for v in self.vnis if port in v.ports), None)


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    image: str
    binds: Mapping[str, Path] = field(default_factory=dict)  # container path -> file here
    env: Mapping[str, str] = field(default_factory=dict)
    exec: tuple[str, ...] = ()
    entrypoint: str | None = None
    cmd: str | None = None
    # derived
    addresses: tuple[tuple[str, str], ...] = ()  # (interface, address/len)
    macs: Mapping[str, str] = field(default_factory=dict)  # interface -> MAC
    vtep: VtepSetup | None = None
    frr_config: Path | None = None
    agent_config: Path | None = None

    @property
    def address(self) -> str | None:
        """The underlay address (router id, VTEP address), if any."""
        if self.vtep is not None:
            return str(self.vtep.address.ip)
        for _, each in self.addresses:
            ip = ipaddress.ip_interface(each).ip
            if ip in UNDERLAY:
                return str(ip)
        return None

    def host_argv(self, command: str) -> list[str]:
        """An exec/entrypoint command as argv, container paths mapped to the bound files."""
        return [self._host_path(word) for word in shlex.split(command)]

    def _host_path(self, word: str) -> str:
        for target, source in self.binds.items():
            if word == target:
                return str(source)
            if word.startswith(target.rstrip("/") + "/") and source.is_dir():
                return str(source / word[len(target.rstrip("/")) + 1 :])
        return word


@dataclass(frozen=True)
class Host:
    """A tenant host: which VTEP port (and so which VNI) its link reaches."""

    name: str
    vtep: str
    port: str  # the VTEP's interface
    interface: str  # the host's interface
    vni: int
    vlan: int | None
    address: str  # with prefix length
    mac: str | None

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True)
class Plan:
    name: str
    source: Path
    nodes: Mapping[str, Node]
    links: tuple[Link, ...]
    hosts: tuple[Host, ...]

    def by_role(self, *roles: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.role in roles]

    @property
    def vnis(self) -> list[int]:
        return sorted({h.vni for h in self.hosts} | {v.vni for n in self.vteps for v in n.vnis})

    @property
    def vteps(self) -> list[VtepSetup]:
        return [n.vtep for n in self.by_role(*VTEP_ROLES) if n.vtep is not None]

    def expected_reachable(self, a: Host, b: Host) -> bool:
        return a.vni == b.vni

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def link_of(self, node: str, interface: str) -> Link | None:
        end = Endpoint(node, interface)
        return next((link for link in self.links if end in (link.a, link.b)), None)


# ---------------------------------------------------------------- parsing


def load(path: str | Path) -> Plan:
    source = Path(path).resolve()
    try:
        doc = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(str(source), [f"cannot read: {exc}"]) from None
    return parse(doc, source)


def parse(doc: Any, source: Path) -> Plan:
    """The plan for ``doc`` (a loaded clab file); ``source`` anchors relative binds."""
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("topology"), dict):
        raise TopologyError(str(source), ["no 'topology' mapping"])
    topology = doc["topology"]
    for unsupported in ("defaults", "kinds", "groups"):
        if unsupported in topology:
            problems.append(f"topology.{unsupported}: not supported by the netns runner")
    nodes: dict[str, Node] = {}
    for name, spec in (topology.get("nodes") or {}).items():
        node = _node(str(name), spec or {}, source.parent, problems)
        if node is not None:
            nodes[node.name] = node
    links = _links(topology.get("links") or [], nodes, problems)
    hosts = _hosts(nodes, links, problems)
    if problems:
        raise TopologyError(str(source), problems)
    return Plan(str(doc.get("name", source.stem)), source, nodes, tuple(links), tuple(hosts))


def _node(name: str, spec: dict[str, Any], base: Path, problems: list[str]) -> Node | None:
    where = f"node {name}"
    if not name.isalnum() or len(name) > 12:
        problems.append(f"{where}: names are up to 12 letters/digits (namespace and link names)")
        return None
    if spec.get("kind") != "linux":
        problems.append(f"{where}: kind {spec.get('kind')!r}: the netns runner builds kind linux")
        return None
    role = str((spec.get("labels") or {}).get(ROLE_LABEL, ""))
    if role not in ROLES:
        problems.append(f"{where}: label {ROLE_LABEL} is {role!r}, expected one of {ROLES}")
        return None
    binds: dict[str, Path] = {}
    for bind in spec.get("binds") or []:
        parts = str(bind).split(":")
        if len(parts) not in (2, 3):
            problems.append(f"{where}: bind {bind!r} is not SOURCE:TARGET[:OPTIONS]")
            continue
        host_path = (base / parts[0]).resolve()
        if not host_path.exists():
            problems.append(f"{where}: bind source {parts[0]} does not exist ({host_path})")
        binds[parts[1]] = host_path
    env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
    node = Node(
        name=name,
        role=role,
        image=str(spec.get("image", "")),
        binds=binds,
        env=env,
        exec=tuple(str(c) for c in spec.get("exec") or []),
        entrypoint=spec.get("entrypoint"),
        cmd=spec.get("cmd"),
    )
    addresses, macs = _from_exec(node, problems)
    vtep = _vtep_setup(node, problems) if role in VTEP_ROLES else None
    frr_config = binds.get(FRR_CONFIG)
    if role in FRR_ROLES and frr_config is None:
        problems.append(f"{where}: an FRR node needs a bind to {FRR_CONFIG}")
    agent_config = _agent_config(node, problems) if role == "agent-vtep" else None
    node = replace(
        node,
        addresses=addresses,
        macs=macs,
        vtep=vtep,
        frr_config=frr_config,
        agent_config=agent_config,
    )
    if role in ("route-reflector", *VTEP_ROLES) and node.address is None:
        problems.append(f"{where}: no underlay address in {UNDERLAY}")
    return node


def _checked_address(where: str, text: str, problems: list[str]) -> str | None:
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        problems.append(f"{where}: {text!r} is not an address with prefix length")
        return None
    if interface.ip not in UNDERLAY and not any(interface.ip in net for net in TENANTS):
        problems.append(f"{where}: {text} is not a TEST-NET address")
        return None
    return text


def _from_exec(
    node: Node, problems: list[str]
) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """Addresses (``ip address add A dev I``) and MACs (``ip link set I address M``)."""
    addresses: list[tuple[str, str]] = []
    macs: dict[str, str] = {}
    for command in node.exec:
        words = shlex.split(command)
        words = [w for w in words if w not in ("-4", "-6")]
        if words[:1] != ["ip"] or len(words) < 4:
            continue
        if words[1] in ("a", "addr", "address") and words[2] == "add" and "dev" in words:
            device = words[words.index("dev") + 1]
            checked = _checked_address(f"node {node.name}: exec {command!r}", words[3], problems)
            if checked is not None:
                addresses.append((device, checked))
        elif words[1] == "link" and words[2] == "set" and "address" in words:
            device = words[4] if words[3] == "dev" else words[3]
            macs[device] = words[words.index("address") + 1].lower()
    return tuple(addresses), macs


def _vtep_setup(node: Node, problems: list[str]) -> VtepSetup | None:
    where = f"node {node.name}"
    underlay = node.env.get("LAB_UNDERLAY", "").split()
    if len(underlay) != 2:
        problems.append(f"{where}: env LAB_UNDERLAY must be 'IFACE ADDRESS/LEN'")
        return None
    try:
        address = ipaddress.IPv4Interface(underlay[1])
    except ValueError:
        problems.append(f"{where}: LAB_UNDERLAY: {underlay[1]!r} is not an IPv4 address/len")
        return None
    if address.ip not in UNDERLAY:
        problems.append(f"{where}: LAB_UNDERLAY: {address} is not in {UNDERLAY}")
    bridge = node.env.get("LAB_BRIDGE", "traditional")
    if bridge not in ("traditional", "vlan-aware"):
        problems.append(f"{where}: LAB_BRIDGE is {bridge!r}, not traditional or vlan-aware")
    vnis: list[VniSetup] = []
    for item in node.env.get("LAB_VNIS", "").split():
        left, _, ports = item.partition("=")
        vni_text, _, vlan_text = left.partition("/")
        try:
            vni = int(vni_text)
            vlan = int(vlan_text) if vlan_text else None
        except ValueError:
            problems.append(f"{where}: LAB_VNIS item {item!r} is not VNI[/VLAN]=PORTS")
            continue
        if bridge == "vlan-aware" and vlan is None:
            problems.append(f"{where}: LAB_VNIS: VNI {vni} needs a VLAN on a VLAN-aware bridge")
        vnis.append(VniSetup(vni, vlan, tuple(p for p in ports.split(",") if p)))
    if not vnis:
        problems.append(f"{where}: env LAB_VNIS names no VNI")
    script = node.entrypoint if node.role == "agent-vtep" else next(iter(node.exec), None)
    if script is None or not Path(node.host_argv(script)[0]).is_file():
        problems.append(
            f"{where}: the VTEP setup script must be bound and run "
            "(entrypoint of an agent VTEP, first exec of an FRR VTEP)"
        )
    return VtepSetup(underlay[0], address, bridge, tuple(vnis))


def _agent_config(node: Node, problems: list[str]) -> Path | None:
    words = shlex.split(node.cmd or "")
    if words[:2] != ["evpn-agent", "run"]:
        problems.append(f"node {node.name}: cmd must be 'evpn-agent run --config PATH'")
        return None
    for flag in ("--config", "-c"):
        if flag in words[:-1]:
            target = words[words.index(flag) + 1]
            if target in node.binds:
                return node.binds[target]
            problems.append(f"node {node.name}: the agent's config {target} is not bound")
            return None
    problems.append(f"node {node.name}: cmd names no --config")
    return None


def _endpoint(value: Any) -> Endpoint | None:
    if isinstance(value, str) and value.count(":") == 1:
        node, interface = value.split(":")
        return Endpoint(node, interface)
    if isinstance(value, dict) and "node" in value and "interface" in value:
        return Endpoint(str(value["node"]), str(value["interface"]))
    return None


def _links(items: list[Any], nodes: Mapping[str, Node], problems: list[str]) -> list[Link]:
    links: list[Link] = []
    used: set[Endpoint] = set()
    for i, item in enumerate(items):
        where = f"links[{i}]"
        if not isinstance(item, dict) or item.get("type", "veth") != "veth":
            problems.append(f"{where}: the netns runner builds veth links only")
            continue
        ends = [_endpoint(e) for e in item.get("endpoints") or []]
        if len(ends) != 2 or None in ends:
            problems.append(f"{where}: expected two endpoints 'node:interface'")
            continue
        a, b = (e for e in ends if e is not None)
        bad = False
        for end in (a, b):
            if end.node not in nodes:
                problems.append(f"{where}: unknown node {end.node!r}")
                bad = True
            elif end.interface == "eth0" or not 0 < len(end.interface) <= 15:
                problems.append(f"{where}: {end}: eth0 is clab's management; max 15 characters")
                bad = True
            elif end in used:
                problems.append(f"{where}: {end} is used by two links")
                bad = True
            used.add(end)
        if not bad:
            links.append(Link(a, b, int(item.get("mtu", DEFAULT_MTU))))
    for node in nodes.values():
        needed = [node.vtep.interface] if node.vtep else []
        needed += [p for v in (node.vtep.vnis if node.vtep else ()) for p in v.ports]
        needed += [device for device, _ in node.addresses] + list(node.macs)
        for interface in needed:
            if Endpoint(node.name, interface) not in used:
                problems.append(f"node {node.name}: {interface} is used but no link makes it")
    return links


def _hosts(nodes: Mapping[str, Node], links: list[Link], problems: list[str]) -> list[Host]:
    hosts: list[Host] = []
    for node in nodes.values():
        if node.role != "host":
            continue
        mine = [(link.a, link.b) for link in links if link.a.node == node.name]
        mine += [(link.b, link.a) for link in links if link.b.node == node.name]
        if len(mine) != 1:
            problems.append(f"node {node.name}: a host needs exactly one link, to a VTEP")
            continue
        own, other = mine[0]
        vtep = nodes[other.node].vtep
        vni = vtep.vni_of_port(other.interface) if vtep is not None else None
        if vni is None:
            problems.append(f"node {node.name}: {other} is not a VNI port of a VTEP (LAB_VNIS)")
            continue
        tenant = [a for dev, a in node.addresses if dev == own.interface]
        if not tenant:
            problems.append(f"node {node.name}: no address on {own.interface} (exec)")
            continue
        hosts.append(
            Host(
                name=node.name,
                vtep=other.node,
                port=other.interface,
                interface=own.interface,
                vni=vni.vni,
                vlan=vni.vlan,
                address=tenant[0],
                mac=node.macs.get(own.interface),
            )
        )
    return hosts
