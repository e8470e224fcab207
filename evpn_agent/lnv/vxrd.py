"""vxrd's settings: ``/etc/vxrd.conf`` and the ``.override`` file ifupdown2 writes from the
loopback's ``vxrd-*`` attributes, in RawConfigParser's syntax."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.reader import Reader, reason

VXRD_CONF = "/etc/vxrd.conf"

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
    # Later values win, as in vxrd, which reads both files in this order.
    for name, optional in ((path, False), (path + ".override", True)):
        try:
            text = reader.read(name)
        except OSError as exc:
            # ifupdown2 writes the override file only when lo has vxrd-* attributes.
            if not (optional and isinstance(exc, FileNotFoundError)):
                findings.error(Location(name), f"cannot read: {reason(exc)}")
            continue
        settings.update(parse_ini(text, name, findings))
        files.append(name)
    _check_keys(settings, findings)
    return VxrdConf(settings, tuple(files))


def _check_keys(settings: Mapping[tuple[str, str], Setting], findings: Findings) -> None:
    for (section, key), setting in settings.items():
        if section in ("DEFAULT", "vxsnd"):
            continue
        if section not in _VXRD_KEYS:
            findings.warn(setting.where, f"section [{section}] is not read by vxrd; ignored")
        elif key not in _VXRD_KEYS[section]:
            home = [s for s, keys in _VXRD_KEYS.items() if key in keys]
            hint = f"vxrd reads it from [{home[0]}] only" if home else "vxrd does not know it"
            findings.warn(setting.where, f"{key} in [{section}] is ignored: {hint}")
