"""The agent's YAML configuration: loading, validation, defaults.

Every error names the file, the key path and what is wrong, and all errors of a file are
reported together, so an operator fixes the file in one pass.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from evpn_agent.model import MAX_VNI, RouteTarget
from evpn_agent.model.settings import (
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    Config,
    DadSettings,
    RouteReflector,
    VniTargets,
)

__all__ = [
    "DEFAULT_SOCKET",
    "DEFAULT_STATE_DIR",
    "MAX_VNI",
    "Config",
    "ConfigError",
    "DadSettings",
    "RouteReflector",
    "VniTargets",
    "check_file",
    "extra_problems",
    "load",
    "parse",
    "read_text",
]


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists every finding."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


_KNOWN_KEYS = {
    "local-as",
    "router-id",
    "vtep-ip",
    "local-address",
    "route-reflectors",
    "vnis",
    "route-targets",
    "control-socket",
    "state-dir",
    "log-level",
    "log-destination",
    "metrics-address",
    "route-hold-time",
    "mac-limit-per-vni",
    "mac-limit",
    "duplicate-detection",
    "sweep-delay",
    "reconcile-interval",
    "reconcile-budget",
    "netlink-buffer-size",
}
_RR_KEYS = {"address", "password", "hold-time", "port", "passive"}
_LOG_LEVELS = ("debug", "info", "warning", "error")


class _Checker:
    """Collects problems with their key paths instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, what: str) -> None:
        self.problems.append(f"key '{path}': {what}")

    def integer(self, path: str, value: object, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {value!r}")
            return None
        if not lo <= value <= hi:
            self.fail(path, f"{value} is out of range {lo}..{hi}")
            return None
        return value

    def address(self, path: str, value: object, *, v4_only: bool = False) -> str | None:
        try:
            ip = ipaddress.ip_address(str(value)) if isinstance(value, str) else None
        except ValueError:
            ip = None
        if ip is None:
            self.fail(path, f"not an IP address: {value!r}")
            return None
        if v4_only and ip.version != 4:
            self.fail(path, f"must be an IPv4 address (BGP router-id), got {value!r}")
            return None
        if ip.is_multicast or ip.is_unspecified:
            self.fail(path, f"not a unicast address: {value!r}")
            return None
        return str(ip)

    def seconds(self, path: str, value: object, default: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.fail(path, f"expected seconds >= 0, got {value!r}")
            return default
        return float(value)

    def percent(self, path: str, value: object, default: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            self.fail(path, f"expected a percentage 0..100, got {value!r}")
            return default
        return float(value)

    def unknown_keys(self, path: str, doc: Mapping[str, Any], known: set[str]) -> None:
        for key in doc:
            if key not in known:
                prefix = f"{path}." if path else ""
                hint = f"; known keys: {', '.join(sorted(known))}"
                self.fail(f"{prefix}{key}", f"unknown key{hint}")


def load(path: str | Path) -> Config:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text (byte {exc.start})"]) from None
    return parse(text, source)


def check_file(path: str) -> Config:
    """The file as ``evpn-agent config check`` validates it (and ``reload`` with it): every
    problem with its key path in one ConfigError, else the Config."""
    cfg = parse(read_text(path), path)
    problems = extra_problems(cfg)
    if problems:
        raise ConfigError(path, problems)
    return cfg


def read_text(path: str) -> str:
    """The file's text, or a ConfigError saying why not (never an exception of another kind)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (byte {exc.start})"]) from None


def extra_problems(cfg: Config) -> list[str]:
    """What parse() accepts but the agent would refuse at start, knowable without a kernel."""
    vtep = cfg.vtep_ip
    if cfg.router_id is None and vtep is not None and ipaddress.ip_address(vtep).version != 4:
        return [f"key 'router-id': must be set when vtep-ip is IPv6 ({vtep})"]
    return []


def parse(text: str, source: str = "<config>") -> Config:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    if not isinstance(doc, dict):
        raise ConfigError(source, ["expected a mapping of keys at the top level"])
    c = _Checker()
    c.unknown_keys("", doc, _KNOWN_KEYS)

    local_as = None
    if "local-as" not in doc:
        c.fail("local-as", "missing (the iBGP AS number shared with the route reflectors)")
    else:
        local_as = c.integer("local-as", doc["local-as"], 1, 4294967295)

    router_id = (
        c.address("router-id", doc["router-id"], v4_only=True) if "router-id" in doc else None
    )
    vtep_ip = c.address("vtep-ip", doc["vtep-ip"]) if "vtep-ip" in doc else None
    local_address = (
        c.address("local-address", doc["local-address"]) if "local-address" in doc else None
    )

    reflectors = _reflectors(c, doc.get("route-reflectors"))
    for i, rr in enumerate(reflectors):
        if rr.passive and local_address is None and "local-address" not in doc:
            # ExaBGP listens for a passive peer on the session's local address only
            c.fail(
                f"route-reflectors[{i}].passive",
                "needs 'local-address' (the address to listen on for this peer)",
            )
    vnis = _vnis(c, doc["vnis"]) if "vnis" in doc and doc["vnis"] is not None else None
    targets = _targets(c, doc.get("route-targets") or {}, local_as)

    strings = {}
    for key, default in (
        ("control-socket", DEFAULT_SOCKET),
        ("state-dir", DEFAULT_STATE_DIR),
        ("log-level", "info"),
    ):
        value = doc.get(key, default)
        if not isinstance(value, str) or not value:
            c.fail(key, f"expected a non-empty string, got {value!r}")
            value = default
        strings[key] = value
    destination = doc.get("log-destination", "stderr")
    if not isinstance(destination, str) or not (
        destination in ("stderr", "stdout", "syslog")
        or (destination.startswith("file:/") and len(destination) > 6)
    ):
        c.fail(
            "log-destination",
            f"expected stderr, syslog or file:/absolute/path, got {destination!r}",
        )
        destination = "stderr"
    if destination == "stdout":
        destination = "stderr"  # stdout is ExaBGP's command channel in the agent core
    metrics = doc.get("metrics-address")
    if metrics is not None:
        metrics = _host_port(c, "metrics-address", metrics)
    if strings["log-level"] not in _LOG_LEVELS:
        c.fail("log-level", f"{strings['log-level']!r} is not one of {', '.join(_LOG_LEVELS)}")
    sweep_delay = c.seconds("sweep-delay", doc.get("sweep-delay", 5.0), 5.0)
    reconcile = c.seconds("reconcile-interval", doc.get("reconcile-interval", 60.0), 60.0)
    budget = c.percent("reconcile-budget", doc.get("reconcile-budget", 0.1), 0.1)
    nl_buffer = c.integer(
        "netlink-buffer-size", doc.get("netlink-buffer-size", 64 << 20), 1 << 16, 1 << 30
    )
    hold = c.seconds("route-hold-time", doc.get("route-hold-time", 120.0), 120.0)
    limit_vni = c.integer("mac-limit-per-vni", doc.get("mac-limit-per-vni", 100_000), 1, 1 << 30)
    limit = c.integer("mac-limit", doc.get("mac-limit", 1_000_000), 1, 1 << 30)
    dad = _dad(c, doc.get("duplicate-detection", {}))

    if c.problems or local_as is None:
        raise ConfigError(source, c.problems)
    return Config(
        local_as=local_as,
        route_reflectors=reflectors,
        router_id=router_id,
        vtep_ip=vtep_ip,
        local_address=local_address,
        vnis=vnis,
        route_targets=targets,
        control_socket=strings["control-socket"],
        state_dir=strings["state-dir"],
        log_level=strings["log-level"],
        log_destination=destination,
        metrics_address=metrics,
        route_hold_time=hold,
        mac_limit_per_vni=limit_vni or 100_000,
        mac_limit=limit or 1_000_000,
        duplicate_detection=dad,
        sweep_delay=sweep_delay,
        reconcile_interval=reconcile,
        reconcile_budget=budget,
        netlink_buffer_size=nl_buffer or 64 << 20,
        source=source,
    )


def _dad(c: _Checker, value: object) -> DadSettings:
    path = "duplicate-detection"
    if not isinstance(value, dict):
        c.fail(path, "expected a mapping with max-moves, time and freeze")
        return DadSettings()
    c.unknown_keys(path, value, {"max-moves", "time", "freeze"})
    moves = c.integer(f"{path}.max-moves", value.get("max-moves", 5), 2, 1000) or 5
    window = c.seconds(f"{path}.time", value.get("time", 180), 180.0)
    freeze_value = value.get("freeze", False)
    freeze: float | None
    if freeze_value is False or freeze_value == "off":
        freeze = None
    elif freeze_value == "permanent":
        freeze = math.inf
    else:
        freeze = c.seconds(f"{path}.freeze", freeze_value, 0.0) or None
        if freeze_value is True or freeze is None:
            c.fail(
                f"{path}.freeze", f"expected off, permanent or seconds > 0, got {freeze_value!r}"
            )
    return DadSettings(moves, window, freeze)


def _host_port(c: _Checker, path: str, value: object) -> str | None:
    host, sep, port = str(value).rpartition(":")
    if not isinstance(value, str) or not sep or not port.isdigit() or not 0 < int(port) < 65536:
        c.fail(path, f"expected ADDRESS:PORT (e.g. 127.0.0.1:9600), got {value!r}")
        return None
    if c.address(path, host.strip("[]")) is None:
        return None
    return value


def _reflectors(c: _Checker, value: object) -> tuple[RouteReflector, ...]:
    if value is None:
        c.fail("route-reflectors", "missing (a list of route reflectors, each with 'address')")
        return ()
    if not isinstance(value, list) or not value:
        c.fail("route-reflectors", "expected a non-empty list")
        return ()
    out: list[RouteReflector] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = f"route-reflectors[{i}]"
        if isinstance(item, str):
            item = {"address": item}
        if not isinstance(item, dict):
            c.fail(path, f"expected a mapping with 'address', got {item!r}")
            continue
        c.unknown_keys(path, item, _RR_KEYS)
        if "address" not in item:
            c.fail(f"{path}.address", "missing")
            continue
        address = c.address(f"{path}.address", item["address"])
        password = item.get("password")
        if password is not None and (not isinstance(password, str) or not password):
            c.fail(f"{path}.password", "expected a non-empty string")
            password = None
        if isinstance(password, str) and ('"' in password or "\n" in password):
            c.fail(f"{path}.password", "must not contain quotes or newlines")
        hold = c.integer(f"{path}.hold-time", item.get("hold-time", 9), 3, 65535)
        port = c.integer(f"{path}.port", item.get("port", 179), 1, 65535)
        passive = item.get("passive", False)
        if not isinstance(passive, bool):
            c.fail(f"{path}.passive", f"expected true or false, got {passive!r}")
            passive = False
        if address is None or hold is None or port is None:
            continue
        if address in seen:
            c.fail(f"{path}.address", f"{address} is listed twice")
            continue
        seen.add(address)
        out.append(RouteReflector(address, password, hold, port, passive))
    return tuple(out)


def _vnis(c: _Checker, value: object) -> frozenset[int] | None:
    if not isinstance(value, list):
        c.fail("vnis", f"expected a list of VNIs, got {value!r}")
        return None
    vnis = {c.integer(f"vnis[{i}]", v, 1, MAX_VNI) for i, v in enumerate(value)}
    return frozenset(v for v in vnis if v is not None)


def _targets(c: _Checker, value: object, local_as: int | None) -> dict[int, VniTargets]:
    if not isinstance(value, dict):
        c.fail("route-targets", f"expected a mapping of VNI to import/export lists, got {value!r}")
        return {}
    out: dict[int, VniTargets] = {}
    for key, spec in value.items():
        path = f"route-targets.{key}"
        vni = c.integer(path, key, 1, MAX_VNI)
        if vni is None:
            continue
        if not isinstance(spec, dict):
            c.fail(path, "expected a mapping with 'import' and/or 'export' lists")
            continue
        c.unknown_keys(path, spec, {"import", "export", "both"})
        lists: dict[str, tuple[RouteTarget, ...]] = {}
        for which in ("import", "export", "both"):
            items = spec.get(which, [])
            if isinstance(items, str):
                items = [items]
            if not isinstance(items, list):
                c.fail(f"{path}.{which}", f"expected a list of route targets, got {items!r}")
                items = []
            rts = []
            for i, text in enumerate(items):
                try:
                    rts.append(RouteTarget.parse(str(text)))
                except ValueError as exc:
                    c.fail(f"{path}.{which}[{i}]", str(exc))
            lists[which] = tuple(rts)
        out[vni] = VniTargets(
            import_rts=lists["import"] + lists["both"], export_rts=lists["export"] + lists["both"]
        )
    return out
