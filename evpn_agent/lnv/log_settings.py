"""vxrd's logging settings as evpn-agent's."""

from __future__ import annotations

from evpn_agent.lnv.findings import Findings, Location
from evpn_agent.lnv.values import as_bool
from evpn_agent.lnv.vxrd import VxrdConf

_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "error",
}


def log_settings(vxrd: VxrdConf, f: Findings) -> list[tuple[str, str, Location]]:
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
    if debug is not None and as_bool(debug.value):
        return "debug", debug.where
    setting = vxrd.get("common", "loglevel")
    if setting is None:
        return None
    level = _LOG_LEVELS.get(setting.value.lower())
    if level is None:
        f.warn(setting.where, f"loglevel {setting.value!r} is not a log level; using info")
        return None
    return level, setting.where
