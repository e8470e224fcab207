"""``evpn-agent config check`` and ``evpn-agent migrate-lnv``: configuration files, no kernel.

Register them on the main group with :func:`register`.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from evpn_agent.config import Config, ConfigError, check_file
from evpn_agent.core.targets import default_export_rt, route_distinguisher
from evpn_agent.lnv import INTERFACES, VXRD_CONF, LnvError, Migration, migrate_files

REDACTED = "<redacted>"
# What a key left unset means; such keys are decided at run time, from the kernel.
_UNSET = {
    "router-id": "not set: the VTEP address, known at run time",
    "vtep-ip": "not set: the 'local' address of the VXLAN devices, read at run time",
    "local-address": "not set: chosen by the kernel's routing",
    "vnis": "not set: every VXLAN device enslaved to a bridge, found at run time",
}
_NOT_SET = {"metrics-address": "not set: no metrics endpoint"}


def register(group: click.Group) -> None:
    group.add_command(config_group)
    group.add_command(migrate_lnv)


def _exit(code: int) -> NoReturn:
    click.get_current_context().exit(code)


# ---------------------------------------------------------------- config check


@click.group("config")
def config_group() -> None:
    """Check configuration files without running anything."""


@config_group.command("check")
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--show-secrets", is_flag=True, help="Print passwords instead of hiding them.")
def check(file: str, as_json: bool, show_secrets: bool) -> None:
    """Validate FILE and print the effective configuration: defaults filled in, values
    derived from it (route targets, route distinguishers) shown. Exit status 0 when
    valid, 1 when not (every problem listed with its key).

    \b
    Example:
      evpn-agent config check /etc/evpn-agent/evpn-agent.yaml
      evpn-agent config check --json /etc/evpn-agent/evpn-agent.yaml
    """
    try:
        cfg = check_file(file)
    except ConfigError as exc:
        if as_json:
            doc = {"source": file, "valid": False, "problems": exc.problems}
            click.echo(json.dumps(doc, indent=2))
        else:
            for problem in exc.problems:
                click.echo(f"{file}: {problem}", err=True)
            click.echo(f"{file}: invalid ({len(exc.problems)} problem(s))", err=True)
        _exit(1)
    doc = effective(cfg, show_secrets=show_secrets)
    notes = warnings(cfg)
    if as_json:
        out = {"source": file, "valid": True, "config": doc, "derived": derived(cfg)}
        click.echo(json.dumps({**out, "warnings": notes}, indent=2))
        return
    for note in notes:
        click.echo(f"{file}: warning: {note}", err=True)
    click.echo(render_effective(cfg, doc, file), nl=False)


def _router_id(cfg: Config) -> str | None:
    if cfg.router_id is not None:
        return cfg.router_id
    if cfg.vtep_ip is not None and ipaddress.ip_address(cfg.vtep_ip).version == 4:
        return cfg.vtep_ip
    return None


def warnings(cfg: Config) -> list[str]:
    if cfg.vnis is None:
        return []
    return [
        f"key 'route-targets.{vni}': VNI {vni} is not in vnis, so these route targets are unused"
        for vni in sorted(set(cfg.route_targets) - cfg.vnis)
    ]


def _known_vnis(cfg: Config) -> list[int]:
    return sorted(set(cfg.vnis or ()) | set(cfg.route_targets))


def _reflectors(cfg: Config, show_secrets: bool) -> list[dict[str, Any]]:
    out = []
    for rr in cfg.route_reflectors:
        item: dict[str, Any] = {"address": rr.address}
        if rr.password is not None:
            item["password"] = rr.password if show_secrets else REDACTED
        out.append({**item, "hold-time": rr.hold_time, "port": rr.port, "passive": rr.passive})
    return out


def _targets(cfg: Config) -> dict[int, dict[str, list[str]]]:
    out: dict[int, dict[str, list[str]]] = {}
    for vni in _known_vnis(cfg):
        override = cfg.route_targets.get(vni)
        entry = {}
        if override is not None and override.import_rts:
            entry["import"] = [str(rt) for rt in override.import_rts]
        # An explicit export equal to the default behaves exactly as the default; an
        # explicit import does not (it replaces *:VNI), so a default import stays unset.
        exports = override.export_rts if override and override.export_rts else ()
        entry["export"] = [str(rt) for rt in exports or (default_export_rt(cfg.local_as, vni),)]
        out[vni] = entry
    return out


def effective(cfg: Config, *, show_secrets: bool = False) -> dict[str, Any]:
    """Every key of the configuration, defaults filled in, under our key names; None
    marks a key left unset. Loading the YAML form again gives the same behaviour."""
    doc: dict[str, Any] = {}
    # From the dataclass, so keys added to Config later show up here too.
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "source":
            continue
        if f.name == "router_id":
            value = _router_id(cfg)
        elif f.name == "route_reflectors":
            value = _reflectors(cfg, show_secrets)
        elif f.name == "vnis":
            value = sorted(value) if value is not None else None
        elif f.name == "route_targets":
            value = _targets(cfg)
        elif f.name == "duplicate_detection":
            freeze = value.freeze
            value = {
                "max-moves": value.max_moves,
                "time": value.window,
                "freeze": "off"
                if freeze is None
                else "permanent"
                if math.isinf(freeze)
                else freeze,
            }
        doc[f.name.replace("_", "-")] = value
    return doc


def derived(cfg: Config) -> dict[str, Any]:
    """Values the agent derives from the file alone: per-VNI RTs (import as FRR's *:VNI
    unless set) and RDs (router-id:VNI; VNIs above 65535 get an index at run time)."""
    router_id = _router_id(cfg)
    targets = {}
    rds: dict[str, str | None] = {}
    for vni in _known_vnis(cfg):
        override = cfg.route_targets.get(vni)
        imports = override.import_rts if override else ()
        exports = override.export_rts if override and override.export_rts else ()
        targets[str(vni)] = {
            "import": [str(rt) for rt in imports] or [f"*:{vni}"],
            "export": [str(rt) for rt in exports or (default_export_rt(cfg.local_as, vni),)],
        }
        rds[str(vni)] = (
            str(route_distinguisher(router_id, vni)) if router_id and vni <= 0xFFFF else None
        )
    doc = effective(cfg)
    return {
        "router-id": router_id,
        "route-targets": targets,
        "route-distinguishers": rds,
        "decided-at-run-time": [key for key in _UNSET if doc[key] is None],
    }


def _dump(key: str, value: Any) -> str:
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return f"{key}: {_flow(value)}"
    return str(yaml.safe_dump({key: value}, sort_keys=False, default_flow_style=False)).rstrip()


def _flow(values: list[Any]) -> str:
    return str(yaml.safe_dump(values, default_flow_style=True)).strip()


def render_effective(cfg: Config, doc: dict[str, Any], source: str) -> str:
    lines = [
        f"# Effective configuration of {source}: valid, defaults filled in.",
        "# Keys shown as comments are decided at run time.",
    ]
    for key, value in doc.items():
        if key == "route-targets":
            lines += _render_targets(cfg, value)
        elif value is None:
            lines.append(f"# {key}: {_UNSET.get(key) or _NOT_SET.get(key, 'not set')}")
        else:
            lines.append(_dump(key, value))
    return "\n".join(lines) + "\n"


def _render_targets(cfg: Config, targets: dict[int, dict[str, list[str]]]) -> list[str]:
    default = f"{cfg.local_as & 0xFFFF}:VNI"
    if not targets:
        return [
            "route-targets: {}",
            f"# every VNI by default: export {default}, import *:VNI (any AS, as FRR)",
        ]
    lines = ["route-targets:"]
    for vni, entry in targets.items():
        lines.append(f"  {vni}:")
        if "import" in entry:
            lines.append(f"    import: {_flow(entry['import'])}")
        else:
            lines.append(f"    # import: *:{vni} (default: any AS, as FRR)")
        override = cfg.route_targets.get(vni)
        note = "" if override and override.export_rts else f"  # default: {default}"
        lines.append(f"    export: {_flow(entry['export'])}{note}")
    return lines


# ---------------------------------------------------------------- migrate-lnv


class FileReader:
    """The lnv parsers' access to the file system."""

    def read(self, path: str) -> str:
        data = Path(path).read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OSError(f"not UTF-8 text (byte {exc.start})") from None

    def glob(self, pattern: str) -> list[str]:
        return sorted(glob.glob(pattern))

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))


def _addresses(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an IP address") from None
        if str(ip) in out:
            raise click.BadParameter(f"{ip} is given twice")
        out.append(str(ip))
    return tuple(out)


@click.command("migrate-lnv")
@click.option(
    "--vxrd-conf",
    default=VXRD_CONF,
    show_default=True,
    metavar="FILE",
    help="vxrd's configuration; FILE.override is read too when present.",
)
@click.option(
    "--interfaces",
    default=INTERFACES,
    show_default=True,
    metavar="FILE",
    help="ifupdown2 interfaces file; 'source' and 'source-directory' lines are followed.",
)
@click.option(
    "--output",
    "-o",
    metavar="FILE|-",
    help="Write the evpn-agent configuration to FILE, or to stdout with '-' (the report "
    "then goes to stderr). Default: shown in the report.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --output FILE.")
@click.option(
    "--local-as",
    type=click.IntRange(1, 4294967295),
    required=True,
    help="The fabric's iBGP AS (LNV has none to take it from).",
)
@click.option(
    "--route-reflector",
    "route_reflectors",
    multiple=True,
    metavar="ADDR",
    callback=_addresses,
    help="Address of an FRR route reflector; repeat for each.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
def migrate_lnv(
    vxrd_conf: str,
    interfaces: str,
    output: str | None,
    force: bool,
    local_as: int,
    route_reflectors: tuple[str, ...],
    as_json: bool,
) -> None:
    """Convert a Cumulus LNV VTEP to evpn-agent.

    Reads vxrd.conf and the ifupdown2 interfaces file, then gives the evpn-agent
    configuration, the changes to make on the host (file, line, interface) and the FRR
    route reflector configuration. Reads files only; changes nothing but --output FILE.

    \b
    Example:
      evpn-agent migrate-lnv --local-as 65000 --route-reflector 192.0.2.1 \\
          --output /etc/evpn-agent/evpn-agent.yaml
    """
    if as_json and output == "-":
        raise click.UsageError("--json and --output - both write to stdout; choose one")
    try:
        result = migrate_files(
            vxrd_conf,
            interfaces,
            FileReader(),
            local_as=local_as,
            route_reflectors=route_reflectors,
        )
    except LnvError as exc:
        _fail(exc.problems, as_json)
    written = output if output not in (None, "-") else None
    if written is not None:
        write_config(written, result.config_text, force=force)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "output": output}, indent=2))
    elif output == "-":
        click.echo(result.config_text, nl=False)
        click.echo(format_report(result, show_config=False, written=None), err=True)
    else:
        click.echo(format_report(result, show_config=written is None, written=written))


def _fail(problems: list[str], as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"errors": problems}, indent=2))
    else:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
    _exit(1)


def write_config(path: str, text: str, *, force: bool) -> None:
    """Write whole or not at all (temporary file, then rename); 0600, as it may later
    hold TCP-MD5 passwords."""
    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite it")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=96, initial_indent=" " * 6, subsequent_indent=" " * 6)


def format_report(result: Migration, *, show_config: bool, written: str | None) -> str:
    vnis = ", ".join(
        f"{v.vni} ({v.device}" + (f", VLAN {v.vlan})" if v.vlan is not None else ")")
        for v in result.vnis
    )
    lines = [
        f"Read: {', '.join(result.sources)}",
        f"LNV {result.replication} replication; VTEP {result.vtep_ip or 'unknown'}; VNIs {vnis}",
        "",
    ]
    if show_config:
        lines += ["== evpn-agent configuration (/etc/evpn-agent/evpn-agent.yaml) ==", ""]
        lines += [result.config_text]
    elif written is not None:
        lines += [f"Wrote the evpn-agent configuration to {written}.", ""]
    else:
        lines += ["The evpn-agent configuration went to stdout.", ""]
    lines += [f"== Changes to make ({len(result.changes)}) ==", ""]
    explained: dict[str, int] = {}
    for number, change in enumerate(result.changes, 1):
        iface = f" ({change.interface})" if change.interface else ""
        lines.append(f"{number:>3}. {change.where}{iface}: {change.summary}")
        # Each reason once, then a reference: the same three per VXLAN device otherwise.
        first = explained.setdefault(change.why, number)
        lines.append(_wrap(change.why if first == number else f"(why: see {first})"))
    lines += ["", "== FRR route reflector configuration ==", "", result.frr_config]
    if result.warnings:
        lines += ["== Warnings ==", ""]
        lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines).rstrip("\n") + "\n"
