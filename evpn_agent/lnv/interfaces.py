"""ifupdown2's ``/etc/network/interfaces``: iface stanzas and their attributes, following
``source`` and ``source-directory`` includes."""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.reader import Reader, reason

log = logging.getLogger(__name__)

INTERFACES = "/etc/network/interfaces"

_SINGLE_LINE_KEYWORDS = {"auto", "no-auto-down", "no-scripts", "rename"}
# Stanzas whose bodies say nothing about VXLAN; their attributes are skipped.
_OPAQUE_STANZAS = {"mapping", "vlan", "template"}


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


def read_interfaces(path: str, reader: Reader, findings: Findings) -> Interfaces:
    parser = _Parser(reader, findings)
    parser.read(path)
    return Interfaces(parser.stanzas, tuple(parser.files))


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


class _Parser:
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
            self.findings.error(origin or Location(path), what + reason(exc))
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
                self.findings.error(where, f"source-directory {directory}: {reason(exc)}")
                continue
            for name in names:
                # run-parts names only, as ifupdown: skips editor backups and *.dpkg-old
                if re.fullmatch(r"[A-Za-z0-9_-]+", name):
                    self.read(posixpath.join(directory, name), where)
