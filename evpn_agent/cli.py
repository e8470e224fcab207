"""The ``evpn-agent`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from evpn_agent import __version__, control
from evpn_agent.cli_config import register
from evpn_agent.config import DEFAULT_SOCKET, Config, ConfigError, check_file, load
from evpn_agent.control import show_text
from evpn_agent.identity import IdentityError, resolve
from evpn_agent.logs import setup_logging

DEFAULT_CONFIG = "/etc/evpn-agent/evpn-agent.yaml"

EPILOG = """\b
Examples:
  evpn-agent run --config /etc/evpn-agent/evpn-agent.yaml
  evpn-agent show vni
  evpn-agent show vni 100 --json
  evpn-agent show mac 100
  evpn-agent show vxlans hrep
"""


def _load(path: str) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evpn-agent")
def main() -> None:
    """BGP EVPN VTEP agent: ExaBGP speaks BGP to FRR route reflectors, the agent programs
    the kernel's VXLAN FDB, flood lists and neighbour tables."""


# the agent's configuration file, for the commands that start or replace it
_config_file_option = click.option(
    "--config",
    "-c",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
)


@main.command()
@_config_file_option
@click.option(
    "--print-exabgp-config",
    is_flag=True,
    help="Print the ExaBGP configuration that would be used, and exit.",
)
# set by 'restart' only: a new instance starting next to the old one
@click.option("--handover", is_flag=True, hidden=True)
@click.option("--peer", "peers", multiple=True, hidden=True)
@click.option("--exabgp-conf", hidden=True)
@click.option("--after-pid", "after_pids", type=int, multiple=True, hidden=True)
def run(
    config_path: str,
    print_exabgp_config: bool,
    handover: bool = False,
    peers: tuple[str, ...] = (),
    exabgp_conf: str | None = None,
    after_pids: tuple[int, ...] = (),
) -> None:
    """Run the agent: ExaBGP (with our EVPN commands) and the agent core under it.

    \b
    Example:
      evpn-agent run --config /etc/evpn-agent/evpn-agent.yaml
    """
    from evpn_agent.daemon.instance import HANDOVER_ENV
    from evpn_agent.kernel import dump_links
    from evpn_agent.speaker.process import AFTER_PIDS_ENV, exabgp_config, exec_exabgp

    cfg = _load(config_path)
    setup_logging(cfg.log_level, cfg.log_destination)
    try:
        # The links alone: a whole dump (FDB, neighbours) took seconds at 1,000 VNIs, and
        # the core dumps everything again once it runs. None at all with vtep-ip set: a
        # dump waits for the kernel's RTNL lock, which deleting namespaces of thousands of
        # devices holds for a minute.
        links = asyncio.run(dump_links()) if cfg.vtep_ip is None else ()
        router_id, vtep_ip = resolve(cfg, links)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the kernel's links: {exc}") from None
    try:
        text = exabgp_config(cfg, router_id, config_path, set(peers) if peers else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if print_exabgp_config:
        click.echo(text, nl=False)
        return
    state_dir = Path(cfg.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf_file = Path(exabgp_conf) if exabgp_conf else state_dir / "exabgp.conf"
        conf_file.write_text(text)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write the ExaBGP configuration in {state_dir}: {exc}"
        ) from None
    click.echo(f"evpn-agent: router-id {router_id}, VTEP {vtep_ip}; starting ExaBGP", err=True)
    if handover:
        os.environ[HANDOVER_ENV] = "1"
    if after_pids:  # 'restart' without handover: ExaBGP starts once the old one is gone
        os.environ[AFTER_PIDS_ENV] = ",".join(map(str, after_pids))
    exec_exabgp(str(conf_file), cfg.log_destination)


@main.command()
@_config_file_option
@click.option(
    "--no-handover",
    is_flag=True,
    help="Stop the old instance, then start the new one (the reflectors withdraw our routes).",
)
@click.option(
    "--settle",
    type=click.FloatRange(0, 60),
    default=3.0,
    show_default=True,
    help="Seconds for the reflectors to pass the new instance's routes on.",
)
def restart(config_path: str, no_handover: bool, settle: float) -> None:
    """Replace the running agent (ExaBGP and the core) by this installation's code and
    the file's configuration, without losing traffic when there are two or more route
    reflectors. Returns once the new instance is in charge and the old one is gone.

    \b
    Example (an upgrade):
      /opt/evpn-agent/bin/pip install evpn-agent-NEW.whl
      evpn-agent restart --config /etc/evpn-agent/evpn-agent.yaml
    """
    from evpn_agent.restart import RestartError
    from evpn_agent.restart import restart as restart_agent

    cfg = _load(config_path)
    setup_logging(cfg.log_level, "stderr")
    try:
        outcome = restart_agent(
            cfg,
            config_path,
            handover=not no_handover,
            settle=settle,
            say=lambda text: click.echo(f"evpn-agent restart: {text}", err=True),
        )
    except (RestartError, control.ControlError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"restarted ({outcome.mode}): old PIDs {', '.join(map(str, outcome.old_pids))} gone, "
        f"new ExaBGP PID {outcome.new_pid}"
    )


@main.group()
def show() -> None:
    """Show the running agent's state (through its control socket)."""


def _socket_option(f: Any) -> Any:
    f = click.option(
        "--socket",
        "socket_path",
        envvar="EVPN_AGENT_SOCKET",
        help="Control socket of the agent (default: from --config).",
    )(f)
    f = click.option(
        "--config",
        "-c",
        "config_path",
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Configuration naming the control socket.",
    )(f)
    return f


def _socket(config_path: str, socket_path: str | None) -> str:
    if socket_path:
        return socket_path
    if os.path.exists(config_path):
        return _load(config_path).control_socket
    return DEFAULT_SOCKET


def _ask(config_path: str, socket_path: str | None, command: str, **args: Any) -> Any:
    try:
        return control.request(_socket(config_path, socket_path), command, **args)
    except control.ControlError as exc:
        raise click.ClickException(str(exc)) from None


VNI = click.IntRange(1, (1 << 24) - 1)
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac_option(mac: str | None) -> str | None:
    if mac is None:
        return None
    norm = mac.strip().lower().replace("-", ":")
    if not _MAC.match(norm):
        raise click.BadParameter(f"{mac!r} is not a MAC address", param_hint="--mac")
    return norm


def _emit(data: Any, as_json: bool, text: Any) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text(data))


@show.command("vni")
@click.argument("vni", required=False, type=VNI)
@click.option("--detail", is_flag=True, help="One block per VNI with RD, RTs and VTEPs.")
@click.option("--json", "as_json", is_flag=True, help="JSON with FRR's field names.")
@_socket_option
def show_vni(
    vni: int | None, detail: bool, as_json: bool, config_path: str, socket_path: str | None
) -> None:
    """VNIs with their devices, MAC counts and remote VTEPs (flood list).

    \b
    Example:
      evpn-agent show vni
      evpn-agent show vni 100 --json
    """
    rows = _ask(config_path, socket_path, "show vni", vni=vni)
    if as_json:
        # FRR's shapes: a map by VNI, a single object for one VNI, a list in detail.
        data: Any = (
            rows if detail else ({str(r["vni"]): r for r in rows} if vni is None else rows[0])
        )
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(show_text.vni_detail(rows) if detail or vni else show_text.vni_summary(rows))


@show.command("mac")
@click.argument("vni", required=False, type=VNI)
@click.option("--mac", "mac", help="Only this MAC (aa:bb:cc:dd:ee:ff).")
@click.option("--json", "as_json", is_flag=True, help="JSON as FRR's 'show evpn mac vni all json'.")
@_socket_option
def show_mac(
    vni: int | None, mac: str | None, as_json: bool, config_path: str, socket_path: str | None
) -> None:
    """Local and remote MACs with interface or VTEP, VLAN and mobility sequence numbers."""
    mac = _mac_option(mac)
    _emit(_ask(config_path, socket_path, "show mac", vni=vni, mac=mac), as_json, show_text.macs)


@show.command("neigh")
@click.argument("vni", required=False, type=VNI)
@click.option("--json", "as_json", is_flag=True, help="JSON as FRR's 'show evpn arp-cache'.")
@_socket_option
def show_neigh(vni: int | None, as_json: bool, config_path: str, socket_path: str | None) -> None:
    """MAC+IP bindings (ARP/ND suppression entries) per VNI."""
    _emit(_ask(config_path, socket_path, "show neigh", vni=vni), as_json, show_text.neighbours)


@show.command("peers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_socket_option
def show_peers(as_json: bool, config_path: str, socket_path: str | None) -> None:
    """Route reflector sessions: state, uptime, routes received and advertised, whether
    graceful restart was negotiated, whether the table is complete and why, last error."""
    _emit(_ask(config_path, socket_path, "show peers"), as_json, show_text.peers)


@show.command("routes")
@click.option("--type", "route_type", type=click.Choice(["2", "3"]), help="Only this route type.")
@click.option("--vni", type=VNI, help="Only routes carrying this VNI.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_socket_option
def show_routes(
    route_type: str | None, vni: int | None, as_json: bool, config_path: str,
    socket_path: str | None,
) -> None:  # fmt: skip
    """EVPN routes as received and as advertised, in RFC 7432 prefix notation."""
    data = _ask(
        config_path, socket_path, "show routes",
        type=int(route_type) if route_type else None, vni=vni,
    )  # fmt: skip
    _emit(data, as_json, show_text.routes)


@show.command("vxlans")
@click.argument("hrep", required=False, type=click.Choice(["hrep"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_socket_option
def show_vxlans(hrep: str | None, as_json: bool, config_path: str, socket_path: str | None) -> None:
    """LNV's 'vxrdctl vxlans [hrep]' layout, filled from EVPN state.

    \b
    Example:
      evpn-agent show vxlans
      evpn-agent show vxlans hrep
    """
    rows = _ask(config_path, socket_path, "show vxlans")
    _emit(rows, as_json, show_text.hrep if hrep else show_text.vxlans)


@show.command("counters")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_socket_option
def show_counters(as_json: bool, config_path: str, socket_path: str | None) -> None:
    """Routes received and rejected (by reason), kernel operations, latencies, peers."""
    data = _ask(config_path, socket_path, "show counters")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for name, value in data["counters"].items():
        click.echo(f"{name:<32} {value}")
    for name, summary in data["latency"].items():
        fields = " ".join(f"{k}={v}" for k, v in summary.items())
        click.echo(f"latency {name:<24} {fields}")


@show.command("memory")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (table sizes in bytes).")
@_socket_option
def show_memory(as_json: bool, config_path: str, socket_path: str | None) -> None:
    """RSS of the core and ExaBGP, the core's heap, and its tables by size.

    A table's size is that of its own hash tables, not of the routes and keys it shares
    with the others: what grows when a table keeps the size of its busiest moment.
    """
    _emit(_ask(config_path, socket_path, "show memory"), as_json, show_text.memory)


@main.group()
def clear() -> None:
    """Clear state in the running agent."""


@clear.command("duplicate")
@click.argument("vni", required=False, type=VNI)
@click.option("--mac", "mac", help="Only this MAC.")
@_socket_option
def clear_duplicate(
    vni: int | None, mac: str | None, config_path: str, socket_path: str | None
) -> None:
    """Forget duplicate-address marks, so frozen MACs are followed and advertised again.

    \b
    Example:
      evpn-agent clear duplicate 100 --mac 02:00:5e:00:00:01
    """
    mac = _mac_option(mac)
    cleared = _ask(config_path, socket_path, "clear duplicate", vni=vni, mac=mac)
    click.echo(f"cleared {len(cleared)} duplicate MAC(s)")
    for item in cleared:
        click.echo(f"  VNI {item['vni']} {item['mac']}")


@clear.command("session")
@click.argument("peer")
@_socket_option
def clear_session(peer: str, config_path: str, socket_path: str | None) -> None:
    """Reset the BGP session with PEER (a route reflector's address), as FRR's ``clear bgp``.

    The agent closes the session and connects again. With graceful restart negotiated it
    closes the connection without a NOTIFICATION, so the reflector keeps this VTEP's routes
    (as stale) until the new session's End-of-RIB; without, it sends one (Cease,
    administrative reset) and the reflector withdraws them until then. The routes the
    reflector sent are held as when a session is lost. For a reflector that keeps the
    session up and sends nothing: the agent resets such a session once by itself, and
    warns (no End-of-RIB) where it does not.

    \b
    Example:
      evpn-agent clear session 192.0.2.1
    """
    done = _ask(config_path, socket_path, "clear session", peer=peer)
    click.echo(f"reset the session with {done['peer']} (it was {done['was']})")


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the planned changes without making them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_socket_option
def reconcile(dry_run: bool, as_json: bool, config_path: str, socket_path: str | None) -> None:
    """Compare the kernel with what the agent wants now, and fix the difference.

    Only entries the agent owns are touched (extern_learn entries and flood lists on its
    VXLAN devices, extern_learn neighbours on their SVIs). Stale entries are removed only
    once the routing table is known complete.

    \b
    Example:
      evpn-agent reconcile --dry-run
    """
    data = _ask(config_path, socket_path, "reconcile", dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    verb = "would make" if dry_run else "made"
    click.echo(f"reconcile {verb} {len(data['ops'])} change(s)")
    for line in data["ops"]:
        click.echo(f"  {line}")
    for line in data["failed"]:
        click.echo(f"  failed: {line}")
    if not data["sweeping"]:
        click.echo("  (stale entries are kept until the routing table is known complete)")
    if not data.get("complete", True):
        click.echo("  (the kernel changed during the dump: local entries it missed are kept)")
    if data["failed"]:
        sys.exit(1)


@main.command("reload")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    help="The file to apply (default: the file the agent runs from, its 'run --config').",
)
@click.option("--dry-run", is_flag=True, help="Print the changes without making them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--socket",
    "socket_path",
    envvar="EVPN_AGENT_SOCKET",
    help="Control socket of the agent (default: from --config, else the default file's).",
)
def reload_config(
    config_path: str | None, dry_run: bool, as_json: bool, socket_path: str | None
) -> None:
    """Apply a changed configuration to the running agent, without a restart.

    The file is validated as 'config check' does; on any problem nothing changes and
    every problem is printed. Keys that need a restart (router-id, local-as, vtep-ip,
    local-address, control-socket, state-dir, netlink-buffer-size)
    make it refuse, with the reason. The same happens on SIGHUP and 'systemctl reload'.
    If the installed evpn-agent differs from the running one (an upgrade since it started),
    reload runs 'evpn-agent restart' instead: the upgrade path of 'systemctl reload'.

    \b
    Example:
      evpn-agent reload --dry-run
      evpn-agent reload --config /etc/evpn-agent/evpn-agent.yaml
    """
    args: dict[str, Any] = {"dry_run": dry_run}
    if config_path is not None:
        args["config"] = os.path.abspath(config_path)
    try:
        # checked here first for the socket it names; the agent checks it again
        cfg = check_file(config_path or DEFAULT_CONFIG)
    except ConfigError as exc:
        if config_path is not None:
            _reload_exit({"source": config_path, "valid": False, "problems": exc.problems}, as_json)
        cfg = None  # the agent re-reads its own file and reports what is wrong with it
    socket = socket_path or (cfg.control_socket if cfg else DEFAULT_SOCKET)
    if cfg is not None and _upgraded(socket, dry_run):
        # 'systemctl reload' after an upgrade: the new code must run, not only the file
        if dry_run:
            return
        ctx = click.get_current_context()
        ctx.invoke(restart, config_path=config_path or DEFAULT_CONFIG)
        return
    try:
        result = control.request(socket, "reload", timeout=120.0, **args)
    except control.ControlError as exc:
        raise click.ClickException(str(exc)) from None
    _reload_exit(result, as_json)


def _upgraded(socket: str, dry_run: bool) -> bool:
    """The running instance runs other code than this installation's (an upgrade since it
    started): say so; reload then restarts it (hitless)."""
    from evpn_agent import code

    try:
        running = control.request(socket, "instance").get("codeHash")
    except control.ControlError:
        return False  # reload itself reports an agent that does not answer
    installed = code.fingerprint()
    if running is None or running == installed:
        return False
    verb = "would restart" if dry_run else "restarting"
    click.echo(
        f"evpn-agent reload: the running agent runs other code ({running}) than the installed"
        f" ({installed}): {verb} it (evpn-agent restart) to run the installed code",
        err=True,
    )
    return True


def _reload_exit(result: dict[str, Any], as_json: bool) -> None:
    from evpn_agent.control import reload_text

    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        out, err = reload_text.render(result)
        if out:
            click.echo(out)
        if err:
            click.echo(err, err=True)
    ok = result.get("valid") and not result.get("refused") and not result.get("failed")
    sys.exit(0 if ok else 1)


register(main)

if __name__ == "__main__":
    main()
