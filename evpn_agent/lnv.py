"""Migration from Cumulus LNV (vxrd/vxsnd, flood-and-learn) to evpn-agent: parsing and
conversion, no I/O of its own.

An LNV VTEP keeps its state in ``/etc/vxrd.conf`` (plus the ``.override`` file ifupdown2
writes from the loopback's ``vxrd-*`` attributes) and in the ifupdown2 stanzas of
``/etc/network/interfaces``. Files are read through a :class:`Reader`, so everything here
runs without a file system in tests. Every problem names its file and line, and all
problems are reported together, as for our own configuration.
"""

from __future__ import annotations

import ipaddress
import logging
import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from evpn_agent.config import MAX_VNI, ConfigError, parse

log = logging.getLogger(__name__)

VXRD_CONF = "/etc/vxrd.conf"
INTERFACES = "/etc/network/interfaces"
# Cumulus Linux reserves VNI 0 and 2^24-1.
MAX_LNV_VNI = MAX_VNI - 1
PEER_GROUP = "VTEPS"

# The settings vxrd reads, by section; it ignores everything else.
_VXRD_KEYS = {
    "common": {
        "loglevel",
        "debug",
        "logdest",
        "logfilesize",
        "logbackupcount",
        "pidfile",
        "udsfile",
        "vxfld_port",
        "holdtime",
        "svcnode_ip",
        "eventlet_backdoor_port",
        "max_packet_size",
        "src_ip",
        "concurrency",
    },
    "vxrd": {"refresh_rate", "config_check_rate", "head_rep"},
}
_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "error",
}
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_SINGLE_LINE_KEYWORDS = {"auto", "no-auto-down", "no-scripts", "rename"}
# Stanzas whose bodies say nothing about VXLAN; their attributes are skipped.
_OPAQUE_STANZAS = {"mapping", "vlan", "template"}


class Reader(Protocol):
    """File access for the parsers. ``read`` and ``listdir`` raise OSError."""

    def read(self, path: str) -> str: ...

    def glob(self, pattern: str) -> list[str]: ...

    def listdir(self, path: str) -> list[str]: ...


class LnvError(Exception):
    """The LNV input is unusable; ``problems`` lists every finding as 'file:line: what'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


class Findings:
    """Errors (the input is unusable) and warnings (worth a look) of one migration."""

    def __init__(self) -> None:
        self._errors: list[tuple[Location, str]] = []
        self.warnings: list[str] = []

    @property
    def errors(self) -> list[str]:
        """Files in the order their first problem was found, lines ascending within each."""
        order: dict[str, int] = {}
        for where, _ in self._errors:
            order.setdefault(where.file, len(order))
        ranked = sorted(self._errors, key=lambda e: (order[e[0].file], e[0].line or 0))
        return [f"{where}: {what}" for where, what in ranked]

    def error(self, where: Location, what: str) -> None:
        self._errors.append((where, what))

    def warn(self, where: Location | None, what: str) -> None:
        self.warnings.append(f"{where}: {what}" if where else what)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _bool(value: str) -> bool | None:
    low = value.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


def _number(text: str) -> int | None:
    # str.isdigit() would pass '²', which int() refuses
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip("'\"")))
    except ValueError:
        return None


# ---------------------------------------------------------------- vxrd.conf


@dataclass(frozen=True)
class Setting:
    value: str
    where: Location


@dataclass(frozen=True)
class VxrdConf:
    """vxrd's settings after the ``.override`` file, by (section, key)."""

    settings: Mapping[tuple[str, str], Setting]
    files: tuple[str, ...]

    def get(self, section: str, key: str) -> Setting | None:
        # vxrd reads through RawConfigParser, which falls back to [DEFAULT].
        return self.settings.get((section, key)) or self.settings.get(("DEFAULT", key))


def parse_ini(text: str, source: str, findings: Findings) -> dict[tuple[str, str], Setting]:
    """RawConfigParser's syntax: [section], 'key = value' or 'key: value', full-line
    comments, indented continuation lines."""
    out: dict[tuple[str, str], Setting] = {}
    section: str | None = None
    last: tuple[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0].isspace() and last is not None:
            prev = out[last]
            out[last] = Setting(f"{prev.value}\n{stripped}", prev.where)
            continue
        where = Location(source, number)
        last = None
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if header:
            section = header.group(1).strip()
            continue
        cut = min((i for i in (stripped.find("="), stripped.find(":")) if i >= 0), default=-1)
        key = stripped[:cut].strip().lower() if cut > 0 else ""
        if not key:
            findings.error(where, f"not a 'key = value' line: {stripped!r}")
            continue
        if section is None:
            findings.error(where, f"{key!r} comes before any [section] header")
            continue
        last = (section, key)
        out[last] = Setting(stripped[cut + 1 :].strip(), where)
    return out


def read_vxrd(path: str, reader: Reader, findings: Findings) -> VxrdConf:
    settings: dict[tuple[str, str], Setting] = {}
    files: list[str] = []
    try:
        settings.update(parse_ini(reader.read(path), path, findings))
        files.append(path)
    except OSError as exc:
        findings.error(Location(path), f"cannot read: {_reason(exc)}")
    override = path + ".override"
    try:
        # Later values win, as in vxrd, which reads both files in this order.
        settings.update(parse_ini(reader.read(override), override, findings))
        files.append(override)
    except FileNotFoundError:
        pass  # ifupdown2 writes it only when lo has vxrd-* attributes
    except OSError as exc:
        findings.error(Location(override), f"cannot read: {_reason(exc)}")
    _check_vxrd_keys(settings, findings)
    return VxrdConf(settings, tuple(files))


def _check_vxrd_keys(settings: Mapping[tuple[str, str], Setting], findings: Findings) -> None:
    for (section, key), setting in settings.items():
        if section in ("DEFAULT", "vxsnd"):
            continue
        if section not in _VXRD_KEYS:
            findings.warn(setting.where, f"section [{section}] is not read by vxrd; ignored")
        elif key not in _VXRD_KEYS[section]:
            home = [s for s, keys in _VXRD_KEYS.items() if key in keys]
            hint = f"vxrd reads it from [{home[0]}] only" if home else "vxrd does not know it"
            findings.warn(setting.where, f"{key} in [{section}] is ignored: {hint}")


# ---------------------------------------------------------------- /etc/network/interfaces


@dataclass(frozen=True)
class Attr:
    name: str
    value: str
    where: Location

    @property
    def text(self) -> str:
        return f"{self.name} {self.value}"


@dataclass
class Stanza:
    """One interface; several 'iface NAME' stanzas of the same name are merged, as
    ifupdown2 does."""

    name: str
    where: Location
    attrs: list[Attr] = field(default_factory=list)

    def all(self, name: str) -> list[Attr]:
        return [a for a in self.attrs if a.name == name]

    def first(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)


@dataclass(frozen=True)
class Interfaces:
    stanzas: Mapping[str, Stanza]
    files: tuple[str, ...]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, numbered by their first physical line."""
    pending: list[str] = []
    start = 1
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        yield start, "".join(pending)
        pending = []
    if pending:
        yield start, "".join(pending)


class _InterfacesParser:
    def __init__(self, reader: Reader, findings: Findings) -> None:
        self.reader = reader
        self.findings = findings
        self.stanzas: dict[str, Stanza] = {}
        self.files: list[str] = []
        self._stack: list[str] = []

    def read(self, path: str, origin: Location | None = None) -> None:
        norm = posixpath.normpath(path)
        if norm in self._stack:
            self.findings.error(origin or Location(path), f"source loop: {path} includes itself")
            return
        if norm in (posixpath.normpath(f) for f in self.files):
            self.findings.warn(origin, f"{path} is sourced more than once; read once")
            return
        try:
            text = self.reader.read(path)
        except OSError as exc:
            what = f"source {path}: cannot read: " if origin else "cannot read: "
            self.findings.error(origin or Location(path), what + _reason(exc))
            return
        log.debug("reading %s", path)
        self.files.append(path)
        self._stack.append(norm)
        self._parse(text, path)
        self._stack.pop()

    def _parse(self, text: str, path: str) -> None:
        current: Stanza | None = None
        opaque = False
        for number, line in _logical_lines(text):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            where = Location(path, number)
            if stripped.startswith("%"):
                self.findings.warn(
                    where, "template line not evaluated: stanzas it makes are unseen"
                )
                continue
            word, *tail = stripped.split(None, 1)
            rest = tail[0].strip() if tail else ""
            if word == "iface":
                current, opaque = self._iface(rest, where), False
            elif word in _OPAQUE_STANZAS:
                current, opaque = None, True
            elif word in _SINGLE_LINE_KEYWORDS or word.startswith("allow-"):
                current, opaque = None, False
                if not rest:
                    self.findings.error(where, f"'{word}' without interface names")
            elif word in ("source", "source-directory"):
                current, opaque = None, False
                self._include(word, rest, where)
            elif opaque:
                continue
            elif current is None:
                self.findings.error(where, f"{stripped!r} is outside any iface stanza")
            elif not rest:
                self.findings.error(where, f"iface {current.name}: '{word}' has no value")
            else:
                # ifupdown2 accepts vxlan_id for vxlan-id.
                current.attrs.append(Attr(word.replace("_", "-"), rest, where))

    def _iface(self, rest: str, where: Location) -> Stanza | None:
        words = rest.split()
        if not words:
            self.findings.error(where, "'iface' without an interface name")
            return None
        name = words[0].split(":")[0]  # legacy alias lo:1 is lo
        if len(words) > 1 and words[1] not in ("inet", "inet6"):
            self.findings.error(where, f"iface {name}: unknown address family {words[1]!r}")
        existing = self.stanzas.get(name)
        if existing is not None:
            return existing
        stanza = Stanza(name, where)
        self.stanzas[name] = stanza
        return stanza

    def _include(self, word: str, rest: str, where: Location) -> None:
        if not rest:
            self.findings.error(where, f"'{word}' without a path")
            return
        pattern = rest.split()[0]
        if not posixpath.isabs(pattern):
            pattern = posixpath.join(posixpath.dirname(where.file), pattern)
        magic = any(c in pattern for c in "*?[")
        targets = sorted(self.reader.glob(pattern)) if magic else [pattern]
        if word == "source":
            for target in targets:
                self.read(target, where)
            return
        for directory in targets:
            try:
                names = sorted(self.reader.listdir(directory))
            except OSError as exc:
                self.findings.error(where, f"source-directory {directory}: {_reason(exc)}")
                continue
            for name in names:
                # run-parts names only, as ifupdown: skips editor backups and *.dpkg-old
                if re.fullmatch(r"[A-Za-z0-9_-]+", name):
                    self.read(posixpath.join(directory, name), where)


def read_interfaces(path: str, reader: Reader, findings: Findings) -> Interfaces:
    parser = _InterfacesParser(reader, findings)
    parser.read(path)
    return Interfaces(parser.stanzas, tuple(parser.files))


# ---------------------------------------------------------------- conversion


@dataclass(frozen=True)
class VniInfo:
    vni: int
    device: str
    bridge: str | None
    vlan: int | None
    where: Location


@dataclass(frozen=True)
class Change:
    """One edit the operator must make. ``action`` is remove, add, change, keep,
    recommend or service; ``current`` is the line as it is, ``wanted`` as it should be."""

    action: str
    where: Location
    interface: str | None
    current: str | None
    wanted: str | None
    why: str

    @property
    def summary(self) -> str:
        if self.action == "remove":
            return f"remove '{self.current}'"
        if self.action == "keep":
            return f"keep '{self.current}'"
        if self.action == "service":
            return self.wanted or ""
        verb = f"change '{self.current}' to" if self.current else "add"
        tail = " (recommended)" if self.action == "recommend" else ""
        return f"{verb} '{self.wanted}'{tail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "file": self.where.file,
            "line": self.where.line,
            "interface": self.interface,
            "current": self.current,
            "wanted": self.wanted,
            "why": self.why,
        }


@dataclass(frozen=True)
class Migration:
    config_text: str
    vtep_ip: str | None
    vnis: tuple[VniInfo, ...]
    route_reflectors: tuple[str, ...]
    service_nodes: tuple[str, ...]
    replication: str
    changes: tuple[Change, ...]
    frr_config: str
    warnings: tuple[str, ...]
    sources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "vtep-ip": self.vtep_ip,
            "vnis": [
                {
                    "vni": v.vni,
                    "device": v.device,
                    "bridge": v.bridge,
                    "vlan": v.vlan,
                    "file": v.where.file,
                    "line": v.where.line,
                }
                for v in self.vnis
            ],
            "route-reflectors": list(self.route_reflectors),
            "lnv-service-nodes": list(self.service_nodes),
            "lnv-replication": self.replication,
            "config": self.config_text,
            "changes": [c.to_json() for c in self.changes],
            "frr-route-reflector": self.frr_config,
            "warnings": list(self.warnings),
        }


def migrate_files(
    vxrd_path: str,
    interfaces_path: str,
    reader: Reader,
    *,
    local_as: int,
    route_reflectors: Sequence[str] = (),
) -> Migration:
    """Read an LNV host's files and convert them; raises LnvError listing every problem."""
    findings = Findings()
    vxrd = read_vxrd(vxrd_path, reader, findings)
    ifaces = read_interfaces(interfaces_path, reader, findings)
    # Conversion checks run even after read errors, so every problem shows at once.
    return convert(
        vxrd,
        ifaces,
        local_as=local_as,
        route_reflectors=route_reflectors,
        vxrd_path=vxrd_path,
        findings=findings,
    )


def convert(
    vxrd: VxrdConf,
    ifaces: Interfaces,
    *,
    local_as: int,
    route_reflectors: Sequence[str] = (),
    vxrd_path: str = VXRD_CONF,
    findings: Findings | None = None,
) -> Migration:
    f = findings or Findings()
    devices = _vxlan_devices(ifaces, f)
    if not devices and not f.errors:
        f.error(Location(ifaces.files[0] if ifaces.files else INTERFACES), _NO_DEVICES)
    vnis = _vni_map(devices, ifaces, f)
    vtep, vtep_origin = _vtep_ip(devices, ifaces, vxrd, f)
    if f.errors:
        raise LnvError(f.errors)
    service_nodes = _service_nodes(ifaces, vxrd, f)
    replication = _replication(vxrd, devices, f)
    changes = _changes(devices, ifaces, vtep, vxrd_path, service_nodes, vxrd)
    log_settings = _log_settings(vxrd, f)
    sources = vxrd.files + ifaces.files
    if not route_reflectors:
        _warn_no_reflectors(service_nodes, f)
    text = render_config(
        local_as=local_as,
        route_reflectors=route_reflectors,
        vtep_ip=vtep,
        vtep_origin=vtep_origin,
        vnis=vnis,
        log_settings=log_settings,
        service_nodes=service_nodes,
        sources=sources,
    )
    validate_generated(text, rr_given=bool(route_reflectors))
    seen = [vtep] if vtep else []
    seen += [r for r in _remote_vteps(ifaces) if r not in seen]
    return Migration(
        config_text=text,
        vtep_ip=vtep,
        vnis=tuple(vnis),
        route_reflectors=tuple(route_reflectors),
        service_nodes=tuple(service_nodes),
        replication=replication,
        changes=tuple(changes),
        frr_config=render_frr(local_as, route_reflectors, seen),
        warnings=tuple(f.warnings),
        sources=sources,
    )


def _warn_no_reflectors(service_nodes: Sequence[str], f: Findings) -> None:
    hint = f" (the LNV service nodes were {', '.join(service_nodes)}: a hint only)"
    f.warn(
        None,
        "no --route-reflector given: the configuration has a placeholder and evpn-agent "
        "will not start until route-reflectors is filled in" + (hint if service_nodes else ""),
    )


_NO_DEVICES = "no VXLAN device (an iface stanza with vxlan-id) found: nothing to migrate"


@dataclass(frozen=True)
class _Device:
    stanza: Stanza
    vni: int
    vni_attr: Attr


def _single(stanza: Stanza, name: str, f: Findings) -> Attr | None:
    attrs = stanza.all(name)
    for other in attrs[1:]:
        if other.value != attrs[0].value:
            f.error(
                other.where,
                f"iface {stanza.name}: {name} {other.value} conflicts with "
                f"{name} {attrs[0].value} at {attrs[0].where}",
            )
    return attrs[0] if attrs else None


def _vxlan_devices(ifaces: Interfaces, f: Findings) -> list[_Device]:
    devices: list[_Device] = []
    by_vni: dict[int, _Device] = {}
    for stanza in ifaces.stanzas.values():
        attr = _single(stanza, "vxlan-id", f)
        if attr is None:
            continue
        vni = _number(attr.value)
        if vni is None:
            f.error(attr.where, f"iface {stanza.name}: vxlan-id {attr.value!r} is not a number")
            continue
        if not 1 <= vni <= MAX_LNV_VNI:
            f.error(
                attr.where,
                f"iface {stanza.name}: vxlan-id {vni} is out of range 1..{MAX_LNV_VNI}",
            )
            continue
        if vni in by_vni:
            first = by_vni[vni]
            f.error(
                attr.where,
                f"iface {stanza.name}: VNI {vni} is also used by {first.stanza.name} "
                f"({first.vni_attr.where})",
            )
            continue
        device = _Device(stanza, vni, attr)
        by_vni[vni] = device
        devices.append(device)
    return devices


def _bridges_by_port(ifaces: Interfaces, f: Findings) -> dict[str, Stanza]:
    out: dict[str, Stanza] = {}
    for stanza in ifaces.stanzas.values():
        for attr in stanza.all("bridge-ports"):
            for port in attr.value.split():
                if port in out and out[port] is not stanza:
                    f.warn(attr.where, f"{port} is a port of {out[port].name} and {stanza.name}")
                out.setdefault(port, stanza)
    return out


def _vlan_aware(bridge: Stanza) -> bool:
    attr = bridge.first("bridge-vlan-aware")
    return attr is not None and _bool(attr.value) is True


def _vid(attr: Attr, owner: str, f: Findings) -> int | None:
    vid = _number(attr.value)
    if vid is None or not 1 <= vid <= 4094:
        f.error(attr.where, f"iface {owner}: {attr.name} {attr.value!r} is not a VLAN id 1..4094")
        return None
    return vid


def _access_vlan(device: Stanza, bridge: Stanza, f: Findings) -> int | None:
    """The VLAN a VXLAN port carries untagged: bridge-access, else the PVID."""
    for owner, name in (
        (device, "bridge-access"),
        (device, "bridge-pvid"),
        (bridge, "bridge-pvid"),
    ):
        attr = owner.first(name)
        if attr is not None:
            return _vid(attr, owner.name, f)
    f.warn(
        device.where,
        f"{device.name} has no bridge-access in VLAN-aware bridge {bridge.name}: "
        "it carries the default PVID 1",
    )
    return 1


def _vids(bridge: Stanza) -> set[int] | None:
    """The bridge's bridge-vids (e.g. '10 20 100-110'); None when absent or unreadable."""
    out: set[int] = set()
    attrs = bridge.all("bridge-vids")
    for attr in attrs:
        for word in attr.value.split():
            first, _, last = word.partition("-")
            low, high = _number(first), _number(last or first)
            if low is None or high is None:
                return None
            out.update(range(low, high + 1))
    return out if attrs else None


def _vni_map(devices: list[_Device], ifaces: Interfaces, f: Findings) -> list[VniInfo]:
    bridges = _bridges_by_port(ifaces, f)
    out: list[VniInfo] = []
    for d in devices:
        bridge = bridges.get(d.stanza.name)
        vlan = None
        if bridge is None:
            f.warn(
                d.stanza.where,
                f"{d.stanza.name} (VNI {d.vni}) is in no bridge's bridge-ports (globs and "
                "ranges are not expanded): evpn-agent serves VXLAN devices enslaved to a bridge",
            )
        elif _vlan_aware(bridge):
            vlan = _access_vlan(d.stanza, bridge, f)
            vids = _vids(bridge)
            if vlan is not None and vids is not None and vlan not in vids:
                f.warn(
                    d.stanza.where,
                    f"VLAN {vlan} of {d.stanza.name} is not in {bridge.name}'s bridge-vids",
                )
        out.append(
            VniInfo(d.vni, d.stanza.name, bridge.name if bridge else None, vlan, d.vni_attr.where)
        )
    return sorted(out, key=lambda v: v.vni)


def _local_tunnel_ip(d: _Device, lo: Stanza | None, f: Findings) -> Attr | None:
    attr = _single(d.stanza, "vxlan-local-tunnelip", f)
    if attr is None and lo is not None:
        attr = lo.first("vxlan-local-tunnelip")  # ifupdown2's global default on lo
    if attr is not None and _ip(attr.value) is None:
        f.error(
            attr.where,
            f"iface {d.stanza.name}: vxlan-local-tunnelip {attr.value!r} is not an IP address",
        )
        return None
    return attr


def _vtep_ip(
    devices: list[_Device], ifaces: Interfaces, vxrd: VxrdConf, f: Findings
) -> tuple[str | None, str]:
    """The VTEP address and where it came from: the devices' local tunnel IP, all equal,
    else vxrd's src_ip."""
    lo = ifaces.stanzas.get("lo")
    first: tuple[str, Attr, str] | None = None
    for d in devices:
        attr = _local_tunnel_ip(d, lo, f)
        if attr is None:
            continue
        ip = _ip(attr.value) or ""
        if first is None:
            first = (ip, attr, d.stanza.name)
        elif ip != first[0]:
            f.error(
                attr.where,
                f"iface {d.stanza.name}: vxlan-local-tunnelip {ip} conflicts with {first[0]} of "
                f"{first[2]} ({first[1].where}): a VTEP has one address, make them agree",
            )
    src = _src_ip(ifaces, vxrd, f)
    if first is not None:
        if src is not None and src[0] != first[0]:
            f.warn(
                src[1],
                f"vxrd src_ip {src[0]} differs from the VTEP address {first[0]}; using the latter",
            )
        return first[0], f"vxlan-local-tunnelip ({first[1].where})"
    if src is not None:
        return src[0], f"vxrd src_ip ({src[1]})"
    f.warn(None, "no VTEP address found (no vxlan-local-tunnelip, no vxrd src_ip): set vtep-ip")
    return None, ""


def _src_ip(ifaces: Interfaces, vxrd: VxrdConf, f: Findings) -> tuple[str, Location] | None:
    lo = ifaces.stanzas.get("lo")
    attr = lo.first("vxrd-src-ip") if lo else None
    # lo's attribute is what ifupdown2 writes into the override file on the next ifreload.
    found = (attr.value, attr.where) if attr else None
    setting = vxrd.get("common", "src_ip")
    if found is None and setting is not None:
        found = (setting.value, setting.where)
    if found is None or found[0].strip("'\"") in ("", "0.0.0.0"):
        return None
    ip = _ip(found[0])
    if ip is None:
        f.warn(found[1], f"vxrd src_ip {found[0]!r} is not an IP address; not used for the VTEP")
        return None
    return ip, found[1]


def _service_nodes(ifaces: Interfaces, vxrd: VxrdConf, f: Findings) -> list[str]:
    found: list[tuple[str, Location]] = []
    setting = vxrd.get("common", "svcnode_ip")
    if setting is not None:
        found.append((setting.value, setting.where))
    for stanza in ifaces.stanzas.values():
        found += [(a.value, a.where) for a in stanza.all("vxrd-svcnode-ip")]
        found += [(a.value, a.where) for a in stanza.all("vxlan-svcnodeip")]
    out: list[str] = []
    for value, where in found:
        ip = _ip(value)
        if ip is None:
            f.warn(where, f"service node {value!r} is not an IP address")
        elif ip != "0.0.0.0" and ip not in out:
            out.append(ip)
    return out


def _remote_vteps(ifaces: Interfaces) -> list[str]:
    out: list[str] = []
    for stanza in ifaces.stanzas.values():
        for attr in stanza.all("vxlan-remoteip"):
            ip = _ip(attr.value)
            if ip is not None and ip not in out:
                out.append(ip)
    return out


def _replication(vxrd: VxrdConf, devices: list[_Device], f: Findings) -> str:
    setting = vxrd.get("vxrd", "head_rep")
    head_rep = True if setting is None else _bool(setting.value)
    if setting is not None and head_rep is None:
        f.warn(
            setting.where, f"head_rep {setting.value!r} is not a boolean: vxrd takes it as false"
        )
        head_rep = False
    svcnodes = [a for d in devices for a in d.stanza.all("vxlan-svcnodeip")]
    if head_rep and svcnodes:
        f.warn(
            setting.where if setting else svcnodes[0].where,
            "head_rep is on and VXLAN devices have vxlan-svcnodeip: BUM traffic was sent twice",
        )
    return "head-end" if head_rep else "service-node"


def _log_settings(vxrd: VxrdConf, f: Findings) -> list[tuple[str, str, Location]]:
    """vxrd's logging as our keys: (key, value, where), defaults left out."""
    out: list[tuple[str, str, Location]] = []
    level = _log_level(vxrd, f)
    if level is not None and level[0] != "info":
        out.append(("log-level", *level))
    dest = vxrd.get("common", "logdest")
    if dest is not None and dest.value == "syslog":
        out.append(("log-destination", "syslog", dest.where))
    elif dest is not None and dest.value not in ("stdout", ""):
        f.warn(
            dest.where,
            f"logdest {dest.value} is not carried over: give evpn-agent its own file "
            "(log-destination: file:/PATH) if it should not log to the journal",
        )
    return out


def _log_level(vxrd: VxrdConf, f: Findings) -> tuple[str, Location] | None:
    debug = vxrd.get("common", "debug")
    if debug is not None and _bool(debug.value):
        return "debug", debug.where
    setting = vxrd.get("common", "loglevel")
    if setting is None:
        return None
    level = _LOG_LEVELS.get(setting.value.lower())
    if level is None:
        f.warn(setting.where, f"loglevel {setting.value!r} is not a log level; using info")
        return None
    return level, setting.where


# ---------------------------------------------------------------- the operator's changes

_WHY_SVCNODE = (
    "service-node replication ends: the BUM flood list comes from EVPN type-3 routes, "
    "and a remote set here would duplicate floods"
)
_WHY_REMOTEIP = "static head-end list: evpn-agent programs the flood list from EVPN type-3 routes"
_WHY_VXRD_ATTR = (
    "read only by vxrd's ifupdown2 module; ifupdown2 rejects it once the vxfld package is removed"
)
_WHY_NOLEARNING = (
    "the VXLAN device must not learn remote MACs from traffic (nolearning): "
    "evpn-agent installs them from EVPN type-2 routes"
)
_WHY_BRLEARNING = (
    "the bridge must not learn MACs behind the VXLAN port from traffic "
    "(bridge link set ... learning off); EVPN routes provide them"
)
_WHY_SUPPRESS = (
    "answers ARP/ND locally from the MAC+IP bindings in EVPN type-2 routes "
    "(neigh_suppress on), less flooding across the fabric"
)
_WHY_LOCAL = "the VXLAN device's local address is the VTEP address evpn-agent advertises"


def _port_setting(device: Stanza, bridge: Stanza | None, name: str) -> tuple[Attr, str] | None:
    """A bridge-port attribute of ``device``: under its own stanza, or on the bridge as
    PORT=VALUE (traditional bridges)."""
    attr = device.first(name)
    if attr is not None:
        return attr, attr.value
    for attr in bridge.all(name) if bridge else []:
        for word in attr.value.split():
            port, sep, value = word.partition("=")
            if sep and port == device.name:
                return attr, value
    return None


def _replace_port_value(attr: Attr, port: str, value: str) -> str:
    if "=" not in attr.value:
        return f"{attr.name} {value}"
    words = [f"{port}={value}" if w.startswith(f"{port}=") else w for w in attr.value.split()]
    return f"{attr.name} {' '.join(words)}"


def _want_off(device: Stanza, bridge: Stanza | None, name: str, why: str) -> Change | None:
    found = _port_setting(device, bridge, name)
    if found is None:
        return Change("add", device.where, device.name, None, f"{name} off", why)
    attr, value = found
    if _bool(value) is False:
        return None
    wanted = _replace_port_value(attr, device.name, "off")
    return Change("change", attr.where, device.name, attr.text, wanted, why)


def _want_on(device: Stanza, bridge: Stanza | None, name: str, why: str) -> Change | None:
    found = _port_setting(device, bridge, name)
    if found is None:
        return Change("recommend", device.where, device.name, None, f"{name} on", why)
    attr, value = found
    if _bool(value) is True:
        return None
    wanted = _replace_port_value(attr, device.name, "on")
    return Change("recommend", attr.where, device.name, attr.text, wanted, why)


def _device_changes(
    d: _Device, bridge: Stanza | None, lo: Stanza | None, vtep: str | None
) -> list[Change]:
    s = d.stanza
    out: list[Change] = []
    learning = s.first("vxlan-learning")
    if learning is None:
        out.append(Change("add", s.where, s.name, None, "vxlan-learning no", _WHY_NOLEARNING))
    elif _bool(learning.value) is not False:
        out.append(
            Change(
                "change",
                learning.where,
                s.name,
                learning.text,
                "vxlan-learning no",
                _WHY_NOLEARNING,
            )
        )
    for change in (
        _want_off(s, bridge, "bridge-learning", _WHY_BRLEARNING),
        _want_on(s, bridge, "bridge-arp-nd-suppress", _WHY_SUPPRESS),
    ):
        if change is not None:
            out.append(change)
    local = s.first("vxlan-local-tunnelip")
    if local is not None:
        out.append(Change("keep", local.where, s.name, local.text, local.text, _WHY_LOCAL))
    elif (lo is None or lo.first("vxlan-local-tunnelip") is None) and vtep is not None:
        out.append(Change("add", s.where, s.name, None, f"vxlan-local-tunnelip {vtep}", _WHY_LOCAL))
    return out


def _lnv_attr_changes(ifaces: Interfaces) -> list[Change]:
    removals = {
        "vxlan-svcnodeip": _WHY_SVCNODE,
        "vxlan-remoteip": _WHY_REMOTEIP,
        "vxrd-svcnode-ip": _WHY_VXRD_ATTR,
        "vxrd-src-ip": _WHY_VXRD_ATTR,
    }
    out: list[Change] = []
    for stanza in ifaces.stanzas.values():
        for attr in stanza.attrs:
            why = removals.get(attr.name)
            if why is not None:
                out.append(Change("remove", attr.where, stanza.name, attr.text, None, why))
    return out


def _service_changes(vxrd_path: str, service_nodes: list[str], vxrd: VxrdConf) -> list[Change]:
    out = [
        Change(
            "service",
            Location(vxrd_path),
            None,
            None,
            "stop and disable vxrd: systemctl disable --now vxrd.service",
            "vxrd would keep registering with the service node and rewriting the flood list; "
            "once the vxrd-* attributes are gone the vxfld package can be removed",
        )
    ]
    if service_nodes:
        setting = vxrd.get("common", "svcnode_ip")
        out.append(
            Change(
                "service",
                setting.where if setting else Location(vxrd_path),
                None,
                None,
                f"on the service node(s) {', '.join(service_nodes)}: "
                "systemctl disable --now vxsnd.service, after the last VTEP has moved",
                "no VTEP registers or floods through vxsnd any more",
            )
        )
    return out


def _changes(
    devices: list[_Device],
    ifaces: Interfaces,
    vtep: str | None,
    vxrd_path: str,
    service_nodes: list[str],
    vxrd: VxrdConf,
) -> list[Change]:
    bridges = _bridges_by_port(ifaces, Findings())
    lo = ifaces.stanzas.get("lo")
    out = _lnv_attr_changes(ifaces)
    for d in devices:
        out += _device_changes(d, bridges.get(d.stanza.name), lo, vtep)
    out.sort(key=lambda c: (c.where.file, c.where.line or 0))
    return out + _service_changes(vxrd_path, service_nodes, vxrd)


# ---------------------------------------------------------------- rendering


def _scalar(value: str | int) -> str:
    return str(yaml.safe_dump(value, default_flow_style=True)).removesuffix("\n...\n").strip()


def render_config(
    *,
    local_as: int,
    route_reflectors: Sequence[str],
    vtep_ip: str | None,
    vtep_origin: str,
    vnis: Sequence[VniInfo],
    log_settings: Sequence[tuple[str, str, Location]] = (),
    service_nodes: Sequence[str],
    sources: Sequence[str],
) -> str:
    lines = [
        "# evpn-agent configuration made by 'evpn-agent migrate-lnv' from",
        *(f"#   {s}" for s in sources),
        "# Check it with: evpn-agent config check FILE",
        "",
        "# The fabric's iBGP AS, shared with the route reflectors.",
        f"local-as: {local_as}",
        "",
    ]
    lines += _render_reflectors(route_reflectors, service_nodes)
    if vtep_ip is not None:
        lines += [f"# The VTEP address, from {vtep_origin}.", f"vtep-ip: {_scalar(vtep_ip)}", ""]
    else:
        lines += [
            "# vtep-ip: not found in the LNV files; set it (default: the VXLAN devices' local)",
            "",
        ]
    lines += ["# VNIs found: VNI, VXLAN device, bridge, VLAN (bridge-access), where."]
    for v in vnis:
        vlan = f"VLAN {v.vlan}" if v.vlan is not None else "no VLAN (traditional bridge)"
        lines.append(
            f"#   {v.vni:<8} {v.device:<15} {v.bridge or '(no bridge)':<15} {vlan:<12} {v.where}"
        )
    lines.append(f"vnis: [{', '.join(str(v.vni) for v in vnis)}]")
    for key, value, where in log_settings:
        lines += ["", f"# From vxrd's logging ({where}).", f"{key}: {value}"]
    return "\n".join(lines) + "\n"


def _render_reflectors(route_reflectors: Sequence[str], service_nodes: Sequence[str]) -> list[str]:
    if route_reflectors:
        return [
            "# The FRR route reflectors (see the FRR snippet migrate-lnv prints).",
            "route-reflectors:",
            *(f"  - address: {_scalar(rr)}" for rr in route_reflectors),
            "",
        ]
    lines = [
        "# route-reflectors: REQUIRED and not known yet; evpn-agent will not start without it.",
        "# Fill in the FRR route reflectors' addresses, e.g.",
        "#   route-reflectors:",
        "#     - address: RR-ADDRESS",
    ]
    if service_nodes:
        lines += [
            f"# Hint only: the LNV service node(s) were {', '.join(service_nodes)};",
            "# a service node is not a route reflector unless you make it one.",
        ]
    return [*lines, ""]


def validate_generated(text: str, *, rr_given: bool) -> None:
    """The generated file must load; without route reflectors only their absence may fail."""
    try:
        parse(text, "<generated>")
    except ConfigError as exc:
        problems = [
            p for p in exc.problems if rr_given or not p.startswith("key 'route-reflectors'")
        ]
        if problems:
            raise LnvError(
                [f"the generated configuration is invalid: {p}" for p in problems]
            ) from None


def listen_ranges(addresses: Sequence[str]) -> list[str]:
    """The smallest prefix per address family covering ``addresses``, at most /24 (IPv4)
    or /64 (IPv6) long: one VTEP alone says nothing about the fabric's loopback range."""
    out: list[str] = []
    for version, widest in ((4, 24), (6, 64)):
        ips = [ipaddress.ip_address(a) for a in addresses]
        ips = [ip for ip in ips if ip.version == version]
        if not ips:
            continue
        length = widest
        while length > 0:
            net = ipaddress.ip_network(f"{ips[0]}/{length}", strict=False)
            if all(ip in net for ip in ips):
                break
            length -= 1
        out.append(str(ipaddress.ip_network(f"{ips[0]}/{length}", strict=False)))
    return out


def render_frr(local_as: int, route_reflectors: Sequence[str], vteps: Sequence[str]) -> str:
    v4_rrs = [rr for rr in route_reflectors if ipaddress.ip_address(rr).version == 4]
    cluster = v4_rrs[0] if v4_rrs else "CLUSTER-ID"
    ranges = listen_ranges(vteps) or ["VTEP-RANGE"]
    seen = ", ".join(vteps) if vteps else "none"
    lines = [
        "! FRR route reflector for evpn-agent VTEPs (/etc/frr/frr.conf, bgpd=yes in",
        "! /etc/frr/daemons). The same on every route reflector; set 'bgp router-id' per RR.",
        f"router bgp {local_as}",
        " ! one cluster-id on all RRs: they form one redundant cluster"
        + ("" if v4_rrs else " (an IPv4 address or a number)"),
        f" bgp cluster-id {cluster}",
        " no bgp default ipv4-unicast",
        f" neighbor {PEER_GROUP} peer-group",
        f" neighbor {PEER_GROUP} remote-as {local_as}",
        f" neighbor {PEER_GROUP} timers 3 9",
        f" ! covers the VTEP addresses seen on this host ({seen});",
        " ! widen it to the range of every VTEP's loopback",
        *(f" bgp listen range {r} peer-group {PEER_GROUP}" for r in ranges),
        " address-family l2vpn evpn",
        f"  neighbor {PEER_GROUP} activate",
        f"  neighbor {PEER_GROUP} route-reflector-client",
        " exit-address-family",
        "exit",
    ]
    return "\n".join(lines) + "\n"
