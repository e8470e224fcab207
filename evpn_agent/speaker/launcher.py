"""Run ExaBGP with ``announce evpn`` / ``withdraw evpn`` API commands registered.

No released ExaBGP can announce EVPN from its API. Its command registry is a class-level
table, so registering our handler before calling ExaBGP's own ``main()`` teaches an
unpatched ExaBGP the :mod:`evpn_agent.speaker.grammar` lines (route lines, ``announce evpn
batch`` lines, sync begin/end).

Our routes do not go through ExaBGP's adj-rib-out (one Change object and one UPDATE per
route). The handler records them in an :class:`AdvertTable` and queues their keys per
peer; each session's send path (``compat.install_advert_path``) packs what its peer is
owed into few UPDATEs with :mod:`wire_encode`, before ExaBGP's own UPDATEs and End-of-RIB.
The table is the source of truth: a new session, a route refresh and a respawned core
(``sync begin/end``) send exactly what it holds.

Every ExaBGP internal is reached through :mod:`evpn_agent.speaker.compat`, which refuses an
ExaBGP version they were not verified with and self-tests the patches before ExaBGP runs.

Usage: ``python -m evpn_agent.speaker CONF`` (any further arguments go to ``exabgp server``).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

from evpn_agent import code
from evpn_agent.heap import tune_collector
from evpn_agent.model import AdvertChange, ImetAdvert, MacAdvert
from evpn_agent.speaker import compat, grammar, process, selftest, wire_encode
from evpn_agent.speaker.advert_table import AdvertTable
from evpn_agent.speaker.compat import exa

# The patches live in compat now; these names stay importable from here.
from evpn_agent.speaker.compat import speed_up_json as speed_up_json
from evpn_agent.speaker.compat import teach_ipv6_underlay as teach_ipv6_underlay

log = logging.getLogger("evpn_agent.speaker")

COMMANDS = ("announce evpn", "withdraw evpn", grammar.BATCH)

# ExaBGP reads its settings from the environment (exabgp_<section>_<key>, or the dotted
# form, which wins). These are defaults: an operator's own setting is kept.
ENVIRONMENT_DEFAULTS = {
    # explicit, so that no env file can send logs to stdout (the API-process convention
    # is that stdout carries commands only; keep ours clean too).
    "exabgp_log_destination": "stderr",
    # no named-pipe CLI: the agent core is the only API client.
    "exabgp_api_cli": "false",
    # the agent core works on the acks (done/error) to pace and check its commands.
    "exabgp_api_ack": "true",
    # stay in the foreground: systemd or the test harness tracks our PID.
    "exabgp_daemon_daemonize": "false",
    # one log line per BGP message received or sent: far too much under bulk.
    "exabgp_log_statistics": "false",
}


def environment_defaults(euid: int | None = None) -> dict[str, str]:
    """Settings the launcher puts in the environment unless already set."""
    defaults = dict(ENVIRONMENT_DEFAULTS)
    if (os.geteuid() if euid is None else euid) == 0:
        # Otherwise ExaBGP and its API process drop to "nobody" and cannot use netlink.
        defaults["exabgp_daemon_user"] = "root"
    return defaults


def apply_environment(
    environ: MutableMapping[str, str] | None = None, euid: int | None = None
) -> None:
    """Put :func:`environment_defaults` into ``environ`` (os.environ) where unset."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    for key, value in environment_defaults(euid).items():
        dotted = key.replace("_", ".", 2)  # exabgp_api_cli -> exabgp.api.cli
        if key not in env and dotted not in env:
            env[key] = value


# ---------------------------------------------------------------- route building
# ExaBGP classes come from compat.exa, imported at first use: ``--help``-style use and unit
# tests of the pure helpers do not pay for (or depend on) ExaBGP's import-time setup.


def _admin_number_bytes(value: grammar.RouteDistinguisher | grammar.RouteTarget) -> bytes:
    """Six bytes after the type: administrator then assigned number (RFC 4360/4364)."""
    if isinstance(value.admin, ipaddress.IPv4Address):
        return value.admin.packed + struct.pack("!H", value.number)
    if value.type == 0:
        return struct.pack("!HL", value.admin, value.number)
    return struct.pack("!LH", value.admin, value.number)


# ExaBGP only reads these value objects once built, so equal values can share one object.
@functools.lru_cache(maxsize=4096)
def _exa_rd(rd: grammar.RouteDistinguisher) -> Any:
    # Packed here rather than with RouteDistinguisher.fromElements, which picks the type
    # from the magnitude of the numbers and cannot build every valid type-0 RD.
    return exa.RouteDistinguisher(struct.pack("!H", rd.type) + _admin_number_bytes(rd))


def _exa_rt(rt: grammar.RouteTarget) -> Any:
    if isinstance(rt.admin, ipaddress.IPv4Address):
        return exa.RouteTargetIPNumber(str(rt.admin), rt.number)
    if rt.type == 0:
        return exa.RouteTargetASN2Number(rt.admin, rt.number)
    return exa.RouteTargetASN4Number(rt.admin, rt.number)


@functools.lru_cache(maxsize=4096)
def _exa_ip(address: grammar.IPAddress) -> Any:
    return exa.IP.create(str(address))


@functools.lru_cache(maxsize=4096)
def _attributes(
    label: int,
    route_targets: tuple[grammar.RouteTarget, ...],
    mobility: grammar.MacMobility | None,
    pmsi_tunnel: grammar.IPAddress | None,
) -> Any:
    """Path attributes for an announce; cached because many routes share them.

    Sharing is safe: ExaBGP deep-copies every injected change (Neighbor.remove_self).
    """
    attributes = exa.Attributes()
    attributes.add(exa.Origin(exa.Origin.IGP))
    attributes.add(exa.LocalPreference(100))
    communities = exa.ExtendedCommunities()
    for rt in route_targets:
        communities.add(_exa_rt(rt))
    communities.add(exa.Encapsulation(exa.Encapsulation.Type.VXLAN))
    if mobility is not None:
        communities.add(exa.MacMobility(mobility.sequence, mobility.sticky))
    attributes.add(communities)
    if pmsi_tunnel is not None:
        # FRR installs no flood entry for a type 3 without PMSI ingress replication.
        # raw_label: the VNI is a raw 24-bit value, not an MPLS label (RFC 8365).
        # tunnel: given packed, so an IPv6 address is sent as its 16 bytes (ExaBGP would
        # otherwise pack the string as IPv4).
        attributes.add(
            exa.PMSIIngressReplication(
                str(pmsi_tunnel),
                label=label >> 4,
                tunnel=pmsi_tunnel.packed,
                raw_label=label,
            )
        )
    return attributes


@functools.cache
def _no_attributes() -> Any:
    return exa.Attributes()


def build_change(cmd: grammar.Command) -> Any:
    """The ExaBGP ``Change`` (NLRI + attributes, action set) for ``cmd``."""
    rd = _exa_rd(cmd.rd)
    next_hop = _exa_ip(cmd.next_hop)
    announce = cmd.action is grammar.Action.ANNOUNCE
    nlri: Any
    if isinstance(cmd, grammar.MacRoute):
        # Labels([vni]) would encode vni<<4|BOS and FRR would read VNI 100 as 1601.
        label = exa.Labels([], raw_labels=[cmd.label])
        ip = None if cmd.ip is None else _exa_ip(cmd.ip)
        mac = exa.MacQualifier(cmd.mac)
        nlri = exa.MAC(rd, exa.ESI(), exa.EthernetTag(0), mac, 48, label, ip, nexthop=next_hop)
        pmsi = None
        mobility = cmd.mobility
    else:
        nlri = exa.Multicast(rd, exa.EthernetTag(0), _exa_ip(cmd.ip), nexthop=next_hop)
        pmsi = cmd.ip
        mobility = None
    nlri.action = exa.Action.ANNOUNCE if announce else exa.Action.WITHDRAW
    if announce:
        attributes = _attributes(cmd.label, cmd.route_targets, mobility, pmsi)
    else:
        attributes = _no_attributes()
    return exa.Change(nlri, attributes)


def _build_line(line: str) -> Any:
    """The Change for one API line (the self-test's way in)."""
    return build_change(grammar.parse(line))


# ---------------------------------------------------------------- API handler


def advert_change(cmd: grammar.Command) -> AdvertChange:
    """A route command as the change the advert table keeps (GrammarError if it cannot be).

    The table's type 3 has one address, the VTEP: originating IP, PMSI tunnel and next hop
    (as the agent sends it); a command with another originating IP is refused.
    """
    advert: MacAdvert | ImetAdvert
    if isinstance(cmd, grammar.MacRoute):
        ip = None if cmd.ip is None else str(cmd.ip)
        mobility = cmd.mobility or grammar.MacMobility(0)
        seq, sticky = mobility.sequence, mobility.sticky
        advert = MacAdvert(
            cmd.rd, cmd.label, cmd.mac, ip, str(cmd.next_hop), cmd.route_targets, seq, sticky
        )
    else:
        if cmd.ip != cmd.next_hop:
            raise grammar.GrammarError("multicast ip must be the next-hop (the VTEP)")
        advert = ImetAdvert(cmd.rd, cmd.label, str(cmd.next_hop), cmd.route_targets)
    return AdvertChange(advert, cmd.action is grammar.Action.WITHDRAW)


def keyed(
    items: Sequence[AdvertChange | grammar.MacWithdraws],
) -> tuple[list[tuple[bytes, wire_encode.Prepared | None]], list[str]]:
    """Each change with its route key, prepared (encoded once, here), or None for a
    withdraw of a :class:`grammar.MacWithdraws` (its route is all the table needs), in
    order; and why each change that cannot be sent was not."""
    out: list[tuple[bytes, wire_encode.Prepared | None]] = []
    errors: list[str] = []
    run: list[AdvertChange] = []  # consecutive changes, prepared together

    def prepare_run() -> None:
        prepared, refused = wire_encode.prepare_many(run)
        out.extend(prepared)
        errors.extend(f"{change.advert!r}: {reason}" for change, reason in refused)
        run.clear()

    for item in items:
        if not isinstance(item, grammar.MacWithdraws):
            run.append(item)
            continue
        if run:
            prepare_run()
        routes, bad = wire_encode.mac_routes(item.rd, item.vni, item.macs)
        out.extend([(route, None) for route in routes])
        errors.extend(
            f"withdraw of {item.macs[2 * n]!r} (IP {item.macs[2 * n + 1]!r}) in VNI "
            f"{item.vni!r}: {reason}"
            for n, reason in bad
        )
    if run:
        prepare_run()
    return out, errors


class AdvertPath(compat.AdvertHooks):
    """The advert table tied to ExaBGP's sessions: one queue per adj-rib-out of an l2vpn
    evpn peer (ExaBGP keeps that object across the peer's sessions)."""

    def __init__(self) -> None:
        self.table = AdvertTable()

    def has_work(self, outgoing: Any) -> bool:
        queue = self.table.queues.get(outgoing)
        return queue is not None and queue.has_work()

    def session_up(self, outgoing: Any) -> None:
        if compat.evpn_family() in outgoing.families:
            self.table.queue(outgoing).new_session(self.table.routes)

    def resend(self, outgoing: Any, enhanced: bool) -> bool:
        queue = self.table.queues.get(outgoing)
        if queue is None:
            return False
        queue.resend(self.table.routes, bracket=enhanced)
        return True

    def take(self, outgoing: Any, max_size: int) -> tuple[bool, list[bytes]]:
        queue = self.table.queues.get(outgoing)
        if queue is None:
            return False, []
        bracket, queue.bracket = queue.bracket, False
        try:
            encoded = wire_encode.encode_prepared(queue.take(self.table.routes), max_size)
        except Exception:
            # A bug here must not reset the session from inside ExaBGP's peer loop.
            log.exception("cannot encode our routes")
            return False, []
        for change, reason in encoded.refused:
            log.error("cannot send %r: %s", change, reason)
        return bracket, encoded.messages

    def apply(
        self,
        reactor: Any,
        peers: Sequence[str],
        changes: Sequence[AdvertChange | grammar.MacWithdraws],
    ) -> str:
        """Record ``changes`` and queue them for ``peers``: '' if all were, else why not."""
        outgoings = list(compat.evpn_ribs(reactor, peers))
        if not outgoings:
            return "no neighbor has family l2vpn evpn"
        good, errors = keyed(changes)
        self.table.apply(good, outgoings)
        return "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")


ADVERTS = AdvertPath()


def handle(api: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
    """ExaBGP command handler for every EVPN command (route lines, batches, sync).

    Runs synchronously, not queued on reactor.asynchronous: that queue is rescanned on
    every pass and measured slower under bursts. Answers ``done`` or ``error`` per line;
    a batch with entries that cannot be sent records the others and answers ``error``
    (the agent then retries each change of the line; the good ones change nothing).
    ExaBGP itself logs nothing for a failed command, so the reason is logged here.
    """
    try:
        peers, command = compat.select_peers(reactor, service, line)
        if not peers:
            log.error("no neighbor matches %r (from %s)", line[:200], service)
            compat.answer(reactor, service, ok=False)
            return False
        head = command[: len(grammar.BATCH) + 1]
        if head == grammar.BATCH + " ":
            changes, errors = grammar.parse_batch_items(command[len(head) :])
        elif (words := " ".join(command.split())) == grammar.SYNC_BEGIN:
            ADVERTS.table.begin()
            compat.answer(reactor, service, ok=True)
            return True
        elif words == grammar.SYNC_END:
            stale = ADVERTS.table.end()
            if stale:
                log.info("withdrew %d routes no agent core announces any more", stale)
            compat.answer(reactor, service, ok=True)
            return True
        else:
            changes, errors = [advert_change(grammar.parse(command))], []
        problem = ADVERTS.apply(reactor, peers, changes)
        if errors or problem:
            log.error(
                "EVPN command from %s not (wholly) taken: %s: %r",
                service,
                problem or "; ".join(errors[:3]),
                line[:200],
            )
            compat.answer(reactor, service, ok=False)
            return False
    except grammar.GrammarError as exc:
        log.error("bad EVPN command from %s: %s: %r", service, exc, line[:200])
        compat.answer(reactor, service, ok=False)
        return False
    except Exception:
        # A bug here must not take ExaBGP (and so the BGP session) down.
        log.exception("failed EVPN command from %s: %r", service, line[:200])
        compat.answer(reactor, service, ok=False)
        return False
    compat.answer(reactor, service, ok=True)
    return True


# ---------------------------------------------------------------- start-up


def forward_sighup() -> None:
    """SIGHUP means "reload" for evpn-agent (``systemctl reload``), but ExaBGP 5.0.15 shuts
    down on it, sessions and all. Its handler is a method it installs again after every
    signal (``Signal.rearm``), so the method itself is replaced: SIGHUP goes on to the agent
    core, which re-reads its file; ExaBGP changes nothing."""
    exa.Signal.sighup = _sighup_to_core


def _sighup_to_core(_signal: object, signum: int, frame: object) -> None:
    pids = core_pids(os.getpid())
    log.info("SIGHUP: the agent core reloads its configuration (pid %s)", pids or "none yet")
    for pid in pids:
        # one that just died is respawned by ExaBGP, and the new one reads the file anyway
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


def core_pids(parent: int, proc: str = "/proc") -> list[int]:
    """Our children running the agent core (ExaBGP's API processes, in their own group)."""
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/stat", "rb") as stat:
                ppid = int(stat.read().rpartition(b")")[2].split()[1])
            if ppid != parent:
                continue
            with open(f"{entry.path}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not readable
        if process.DAEMON_MODULE.encode() in argv:
            found.append(int(entry.name))
    return found


def register() -> None:
    """Add the EVPN commands to ExaBGP's registry (idempotent)."""
    compat.register_commands(COMMANDS, handle)


def _configure_logging() -> None:
    # Our own handler, not the root logger: ExaBGP's loggers propagate to the root and
    # would print every ExaBGP line twice if the root had a handler.
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _env_file_to_environment(args: list[str], environ: MutableMapping[str, str]) -> list[str]:
    """Hand ``--env-file FILE`` to ExaBGP as EXABGP_ENVFILE, which it reads when its
    environment module is first imported. Its main would handle the option itself, but
    the self-test has read ExaBGP's environment by then (building attributes does)."""
    rest = []
    words = iter(args)
    for word in words:
        if word == "--env-file":
            environ["EXABGP_ENVFILE"] = next(words, "")
        elif word.startswith("--env-file="):
            environ["EXABGP_ENVFILE"] = word.split("=", 1)[1]
        else:
            rest.append(word)
    return rest


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``main(["CONF", ...])`` runs ``exabgp server CONF ...``.

    Before ExaBGP's main: refuse an ExaBGP version the launcher was not verified with,
    patch ExaBGP, and self-test the patches. Any failure is one line on stderr, exit 1,
    and ExaBGP does not start (a broken patch would answer ``error`` to every command
    while the BGP sessions looked healthy).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m evpn_agent.speaker CONF [exabgp server options]\n")
        return 0 if args else 2
    _configure_logging()
    tune_collector()  # ExaBGP's process holds our advert table
    args = _env_file_to_environment(args, os.environ)
    apply_environment()
    # what this ExaBGP runs, for its cores to report (a core respawned after an upgrade
    # loads the new files; the session and the patches are still this process's)
    os.environ[code.ENV] = code.fingerprint()
    try:
        compat.check_version()
        selftest.check_internals(COMMANDS, handle)
        compat.patch(COMMANDS, handle, ADVERTS)
        forward_sighup()
        selftest.self_test(COMMANDS, handle, _build_line)
    except compat.CompatError as exc:
        log.error("%s", exc)
        return 1
    if not wait_for_predecessor(os.environ):
        return 1
    return compat.run_exabgp(args, sys.argv[0])


def wait_for_predecessor(environ: MutableMapping[str, str], timeout: float = 30.0) -> bool:
    """``evpn-agent restart`` without handover: ExaBGP is imported, patched and checked;
    it starts the moment the old instance is gone (its session must close first). False
    if the old instance is still there after ``timeout`` seconds."""
    pids = [int(pid) for pid in environ.pop(process.AFTER_PIDS_ENV, "").split(",") if pid]
    deadline = time.monotonic() + timeout
    while not all(process.process_gone(pid) for pid in pids):
        if time.monotonic() >= deadline:
            log.error("the old instance (PIDs %s) did not exit: not starting", pids)
            return False
        time.sleep(0.01)  # a poll: no event tells us another process exited
    return True
