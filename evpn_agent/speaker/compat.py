"""Every ExaBGP internal the launcher relies on, its version gate and its self-test.

ExaBGP has no stable Python API. The launcher registers API commands in a class-level table,
builds routes with ExaBGP's classes, edits private queues of its adj-rib-out, patches two
decoders and replaces the reactor's message reader (the receive fast path). A release can
change any of these, and a broken EVPN handler only answers ``error`` per command: the
agent would look healthy while advertising nothing. Hence:

- :data:`INTERNALS` names each ExaBGP object the launcher uses, where it lives, what we rely
  on, and the ExaBGP versions each was verified with. This module is the only place that
  reaches ExaBGP for the launcher (through :data:`exa`), lazily: importing it imports no
  ExaBGP.
- :func:`check_version` refuses a release not every internal was verified with.
- :mod:`selftest` exercises the patches in this process before ExaBGP's main runs.

``exabgp/internals.md`` gives each internal's file and line in 5.0.15 and how ExaBGP's
development branch differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import ipaddress
import logging
import math
import os
import select
import signal
import socket
import sys
import termios
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evpn_agent.heap import TrimWhenQuiet
from evpn_agent.speaker.grammar import BATCH
from evpn_agent.speaker.wire_check import wire_ok
from evpn_agent.speaker.wire_decode import decode_update
from evpn_agent.speaker.wire_encode import end_of_rib as encoded_end_of_rib
from evpn_agent.speaker.wire_format import (
    EVPN_FAMILY,
    EXTENDED_LENGTH,
    HEADER_SIZE,
    MARKER,
    MP_UNREACH_NLRI,
    OPTIONAL,
    UPDATE,
    WIRE_EVENTS,
    WIRE_UPDATE,
)
from evpn_agent.speaker.wire_records import encode_events

log = logging.getLogger(__name__)

VERIFIED = ("5.0.15",)  # the releases the whole test suite ran against
FIX = f"pip install exabgp=={VERIFIED[-1]}"
REINSTALL = f"pip install --force-reinstall exabgp=={VERIFIED[-1]}"
# For a developer trying a new ExaBGP: set it to exactly the version found (so it cannot be
# left on by accident across an upgrade). The self-test still runs.
UNVERIFIED_ENV = "EVPN_AGENT_UNVERIFIED_EXABGP"


class CompatError(Exception):
    """ExaBGP is not one the launcher can drive. ``str()`` is one line for stderr."""


@dataclass(frozen=True, slots=True)
class Internal:
    where: str  # "module:attribute", the attribute possibly dotted
    relied_on: str
    verified: tuple[str, ...] = VERIFIED
    cache: bool = True  # False: looked up at every use (tests replace it)

    def resolve(self) -> Any:
        module, _, attribute = self.where.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split("."):
            value = getattr(value, part)
        return value


_API = "exabgp.reactor.api"
_ATTR = "exabgp.bgp.message.update.attribute"
_EXT = f"{_ATTR}.community.extended"
_QUAL = "exabgp.bgp.message.update.nlri.qualifier"
_EVPN = "exabgp.bgp.message.update.nlri.evpn"

# Our name -> where it is in ExaBGP and what we rely on (exabgp/internals.md has the detail).
INTERNALS: dict[str, Internal] = {
    # the API: our commands in ExaBGP's registry, and their answers
    "Command": Internal(
        f"{_API}.command.command:Command",
        "register(name)(handler): name in .functions (matched as a substring of each line),"
        " handler in .callback['text'][name], called (api, reactor, service, line, use_json)",
    ),
    "API": Internal(
        f"{_API}:API",
        "process(reactor, service, line): one line from an API process; finds its handler"
        " by testing each name of Command.functions as a substring of the line, after"
        " splitting it into words to look for 'json'; wrapped (direct_dispatch)",
    ),
    "extract_neighbors": Internal(
        f"{_API}.command.limit:extract_neighbors",
        "'neighbor IP [key value ...] COMMAND' -> (selector lists, COMMAND)",
    ),
    "match_neighbors": Internal(
        f"{_API}.command.limit:match_neighbors",
        "(peer names, selector lists) -> the names selected, all of them without selectors",
    ),
    "answer_done": Internal(
        f"{_API}.processes:Processes.answer_done",
        "reactor.processes.answer_done(service) writes 'done' at once (api.ack on)",
    ),
    "answer_error": Internal(
        f"{_API}.processes:Processes.answer_error",
        "reactor.processes.answer_error(service) writes 'error' at once",
    ),
    "peers": Internal(
        "exabgp.reactor.loop:Reactor.peers",
        "reactor.peers(service): names of the peers whose api processes include service",
    ),
    "Configuration": Internal(
        "exabgp.configuration.configuration:Configuration",
        "reactor.configuration.neighbors: peer name -> Neighbor",
    ),
    "Neighbor": Internal(
        "exabgp.bgp.neighbor:Neighbor",
        "neighbor.families(): [(AFI, SAFI)]; neighbor.rib.outgoing: its OutgoingRIB",
    ),
    # the adj-rib-out
    "OutgoingRIB": Internal(
        "exabgp.rib.outgoing:OutgoingRIB",
        "(cache, families); in_cache(change); add_to_rib(change, force=True); updates(grouped);"
        " private _new_nlri[index] and _new_attr_af_nlri[attr index][family][index]",
    ),
    "Change": Internal(
        "exabgp.rib.change:Change",
        "Change(nlri, attributes); index(): family + NLRI (label, next hop) index",
    ),
    "Action": Internal("exabgp.bgp.message:Action", "nlri.action: ANNOUNCE or WITHDRAW"),
    # building routes
    "MAC": Internal(f"{_EVPN}.mac:MAC", "(rd, esi, etag, mac, 48, labels, ip, nexthop=)"),
    "Multicast": Internal(f"{_EVPN}.multicast:Multicast", "(rd, etag, ip, nexthop=)"),
    "RouteDistinguisher": Internal(f"{_QUAL}:RouteDistinguisher", "(8 packed bytes)"),
    "ESI": Internal(f"{_QUAL}:ESI", "(): the zero ESI"),
    "EthernetTag": Internal(f"{_QUAL}:EthernetTag", "(0)"),
    "Labels": Internal(f"{_QUAL}:Labels", "([], raw_labels=[vni]): the raw 24-bit VNI"),
    "MacQualifier": Internal(f"{_QUAL}:MAC", "('02:00:5e:00:00:01')"),
    "IP": Internal("exabgp.protocol.ip:IP", "IP.create(text): IPv4 or IPv6"),
    "IPv6": Internal("exabgp.protocol.ip:IPv6", "IPv6.ntop(16 bytes)"),
    "Attributes": Internal(f"{_ATTR}:Attributes", "(), .add(); reads ExaBGP's environment"),
    "Origin": Internal(f"{_ATTR}:Origin", "(Origin.IGP)"),
    "LocalPreference": Internal(f"{_ATTR}:LocalPreference", "(100)"),
    "ExtendedCommunities": Internal(f"{_EXT}:ExtendedCommunities", "(), .add()"),
    "Encapsulation": Internal(f"{_EXT}:Encapsulation", "(Encapsulation.Type.VXLAN)"),
    "MacMobility": Internal(f"{_EXT}:MacMobility", "(sequence, sticky)"),
    "RouteTargetASN2Number": Internal(f"{_EXT}:RouteTargetASN2Number", "(asn, number)"),
    "RouteTargetASN4Number": Internal(f"{_EXT}:RouteTargetASN4Number", "(asn, number)"),
    "RouteTargetIPNumber": Internal(f"{_EXT}:RouteTargetIPNumber", "(ip text, number)"),
    "PMSIIngressReplication": Internal(
        f"{_ATTR}.pmsi:PMSIIngressReplication",
        "(ip, label=, tunnel=packed, raw_label=vni); TUNNEL_TYPE 6, TUNNEL_SIZE 4; unpack()",
    ),
    # patched: IPv6 underlay, JSON speed
    "PMSI": Internal(
        f"{_ATTR}.pmsi:PMSI",
        "unpack() hands a tunnel to _pmsi_known[type] if its TUNNEL_SIZE is -1 or the"
        " length, else pmsi_unknown(); we replace entry 6",
    ),
    "AFI": Internal("exabgp.protocol.family:AFI", "AFI.l2vpn"),
    "SAFI": Internal("exabgp.protocol.family:SAFI", "SAFI.evpn"),
    "Family": Internal(
        "exabgp.protocol.family:Family",
        "size[(afi, safi)] = (next-hop lengths accepted, offset); we add 16 for evpn",
    ),
    "EVPN": Internal(
        f"{_EVPN}.nlri:EVPN", "_raw(): the hex NLRI in the JSON, from pack_nlri(); replaced"
    ),
    # SIGHUP: ExaBGP shuts down on it; the launcher makes it the agent's reload
    "Signal": Internal(
        "exabgp.reactor.interrupt:Signal",
        "rearm() (at start and after every signal) installs self.sighup for SIGHUP;"
        " sighup(self, signum, frame) schedules a shutdown: we replace the method",
    ),
    # running ExaBGP
    "exabgp_main": Internal(
        "exabgp.application.main:main",
        "main() parses sys.argv: ['server', CONF, ...] runs the daemon",
        cache=False,
    ),
    # the self-test
    "log_option": Internal(
        "exabgp.logger.option:option",
        "option.logger is None until ExaBGP's main sets logging up; OutgoingRIB and the"
        " decoder log through it",
    ),
    "Negotiated": Internal(
        "exabgp.bgp.message.open.capability.negotiated:Negotiated",
        "Negotiated(Neighbor()) with .families and .asn4 set",
    ),
    "Update": Internal(
        "exabgp.bgp.message.update:Update",
        "Update([nlri], attributes).messages(negotiated); Update.unpack_message(body, ...)",
    ),
    "Direction": Internal("exabgp.bgp.message.direction:Direction", "Direction.IN"),
    # patched: the reactor sleeps until the next I/O or timer when idle (idle sleep below)
    "Reactor": Internal(
        "exabgp.reactor.loop:Reactor",
        "run() calls self._wait_for_io(ms) each pass (ms 0 when work is pending) and handles"
        " the fds it yields; ._poller (select.poll), ._peers, .asynchronous.ready(),"
        " .signal.received, ._stopping, .listener._sockets, ._peers (name -> Peer: .proto,"
        " the session's Protocol or None, .recv_timer; read by the receive's turns too);"
        " _wait_for_io's own body (poll,"
        " _prevent_spin(), _termination(reason, Exit.normal)) is replaced by _poll",
    ),
    "KA": Internal(
        "exabgp.reactor.keepalive:KA",
        "KA(session, proto) per established session, in Peer._main; .send_timer",
    ),
    "SendTimer": Internal(
        "exabgp.bgp.timer:SendTimer",
        ".keepalive (s, 0: none), .last_sent (int time.time()): due at last_sent + keepalive;"
        " need_ka() (True: send one now, last_sent = now), asked on every pass of the session;"
        " replaced (last_sent then a float)",
    ),
    "ReceiveTimer": Internal(
        "exabgp.bgp.timer:ReceiveTimer",
        "peer.recv_timer: .holdtime (0: none), .last_read (int time.time()): the session"
        " ends once int(now) - last_read > holdtime",
    ),
    "HoldTime": Internal("exabgp.bgp.message.open.holdtime:HoldTime", "HoldTime(90)"),
    "FSM": Internal(
        "exabgp.bgp.fsm:FSM",
        "peer.fsm == FSM.ESTABLISHED; then peer.proto, peer.recv_timer and peer._teardown",
    ),
    # the advert fast path (install_advert_path): our UPDATEs bypass the adj-rib-out
    "Protocol": Internal(
        "exabgp.reactor.protocol:Protocol",
        "new_update(include_withdraw): generator Peer._main drains with next(); self.send(raw)"
        " writes a whole message (generator); self.write(message); self.negotiated.msg_size;"
        " self.neighbor.rib.outgoing; a new Protocol per connection. read_message(): a"
        " generator over self.connection.reader()'s (length, msg_id, header, body, notify);"
        " uses self.neighbor (.api, ['peer-address']), self.peer (.stats, .reactor.processes),"
        " self.negotiated, self.log_routes, self.connection.session(); sets no attribute of"
        " self; replaced (the receive fast path, wire_receive). self.connection.reader()"
        " reads one whole message off .connection.io (the session's non-blocking TCP"
        " socket, None once closed) with exact-size recv()s, nothing buffered, so the socket"
        " is at a message boundary between two reader() generators (and FIONREAD says what"
        " is still to read); a read_message that yields only a NOP leaves the message"
        " there and the peer loop goes on (keepalives, hold timer);"
        " .connection.msg_size: the largest message the session accepts",
    ),
    "Peer": Internal(
        "exabgp.reactor.peer:Peer",
        "resend(enhanced, family): called by _main for a ROUTE-REFRESH received, enhanced"
        " already and-ed with the negotiated capability; self.neighbor.rib.outgoing",
    ),
    "OutgoingRIB.pending": Internal(
        "exabgp.rib.outgoing:OutgoingRIB.pending",
        "Peer._main calls proto.new_update() only when it returns true; replaced",
    ),
    "OutgoingRIB.replace_restart": Internal(
        "exabgp.rib.outgoing:OutgoingRIB.replace_restart",
        "called once at the start of every established session (Peer._main), before the"
        " first new_update and the End-of-RIB; wrapped",
    ),
    "RouteRefresh": Internal(
        "exabgp.bgp.message.refresh:RouteRefresh",
        "RouteRefresh(afi, safi, RouteRefresh.start|end): BoRR/EoRR (RFC 7313)",
    ),
    # the receive fast path (wire_receive), with Protocol.read_message above
    "protocol_UPDATE": Internal(
        "exabgp.reactor.protocol:_UPDATE",
        "the empty Update read_message yields for an UPDATE nobody decodes",
    ),
    "protocol_NOP": Internal("exabgp.reactor.protocol:_NOP", "what read_message yields idle"),
    "Notify": Internal(
        "exabgp.bgp.message.notification:Notify", "raised with .code, .subcode: a NOTIFICATION"
    ),
    "Processes": Internal(
        f"{_API}.processes:Processes",
        ".silence; write(process, line, neighbor) writes one line to an API process;"
        " ._process[name] is its Popen (.stdin: the pipe, for core_unread; .stdout: what"
        " it writes us); received(): a generator of (process, command), called once per"
        " pass of the reactor, each call one os.read of 16 KiB per readable process;"
        " ._buffer[name]: the part of a line read so far; wrapped (read_commands_fully)",
    ),
}


class _Lookup:
    """``exa.NAME`` is ``INTERNALS[NAME]``, imported at first use and then kept."""

    def __getattr__(self, name: str) -> Any:
        internal = INTERNALS.get(name)
        if internal is None:
            raise AttributeError(f"{name!r} is not in compat.INTERNALS")
        value = internal.resolve()
        if internal.cache:
            setattr(self, name, value)
        return value


exa = _Lookup()


def supported_versions() -> tuple[str, ...]:
    """The ExaBGP releases every internal was verified with."""
    common = set.intersection(*(set(i.verified) for i in INTERNALS.values()))
    return tuple(v for v in VERIFIED if v in common)


# ---------------------------------------------------------------- version gate


def installed_version() -> tuple[str, str]:
    """(release, directory) of the ExaBGP this interpreter imports, read from its own
    ``exabgp.version``: pip's metadata can name another copy than the one on sys.path."""
    try:
        module = importlib.import_module("exabgp.version")
    except (Exception, SystemExit) as exc:  # later releases exit on an older Python
        raise CompatError(f"cannot import ExaBGP ({_one_line(exc)}); fix: {FIX}") from None
    where = os.path.dirname(getattr(module, "__file__", None) or "?")
    # 5.0: 'release' (its 'version' can be overridden by the exabgp_version variable);
    # the development branch only has a computed 'version'.
    for name in ("release", "version"):
        value = getattr(module, name, None)
        if isinstance(value, str) and value:
            return value, where
    return "unknown", where


def check_version(
    environ: Mapping[str, str] | None = None, found: tuple[str, str] | None = None
) -> str:
    """The installed ExaBGP's version if the launcher may run it, else CompatError."""
    env = os.environ if environ is None else environ
    version, where = installed_version() if found is None else found
    supported = supported_versions()
    if version in supported:
        return version
    allowed = env.get(UNVERIFIED_ENV)
    if allowed == version:
        log.warning(
            "UNVERIFIED EXABGP %s (%s) RUNNING because %s=%s: evpn-agent was verified with"
            " ExaBGP %s only; the self-test runs, but routes may be lost or wrong. Never in"
            " production.",
            version,
            where,
            UNVERIFIED_ENV,
            allowed,
            ", ".join(supported),
        )
        return version
    hint = f" ({UNVERIFIED_ENV}={allowed} does not name it)" if allowed else ""
    raise CompatError(
        f"ExaBGP {version} in {where} is not a version evpn-agent was verified with"
        f" ({', '.join(supported)}){hint}; not starting it. Fix: {FIX}"
    )


# ---------------------------------------------------------------- what the handler uses


def select_peers(reactor: Any, service: str, line: str) -> tuple[list[str], str]:
    """The peers an API line is for (its ``neighbor IP ...`` prefix, else every peer of
    ``service``) and the command after the prefix."""
    descriptions, command = exa.extract_neighbors(line)
    # list(): a list in 5.0.15, a generator on the development branch (always truthy)
    return list(exa.match_neighbors(reactor.peers(service), descriptions)), command


def answer(reactor: Any, service: str, ok: bool) -> None:
    """Acknowledge one command to the API process: ``done`` or ``error``."""
    if ok:
        reactor.processes.answer_done(service)
    else:
        reactor.processes.answer_error(service)


@functools.cache
def evpn_family() -> tuple[Any, Any]:
    return (exa.AFI.l2vpn, exa.SAFI.evpn)


def evpn_ribs(reactor: Any, peers: Sequence[str]) -> Iterator[Any]:
    """The adj-rib-out (OutgoingRIB) of each named peer that negotiates l2vpn evpn."""
    neighbors = reactor.configuration.neighbors
    family = evpn_family()
    for name in peers:
        neighbor = neighbors.get(name)
        if neighbor is not None and family in neighbor.families():
            yield neighbor.rib.outgoing


def queue(outgoing: Any, change: Any) -> None:
    """Queue ``change`` in ExaBGP's adj-rib-out so that it replaces whatever is still
    pending for the same route: the last command wins.

    OutgoingRIB groups pending changes by attribute set and sends the groups in the order
    they were created, but add_to_rib leaves an earlier pending change for the same route
    in its own group. An announce and a withdraw of one MAC within one send cycle then both
    go out, in group order, and the peer may keep the route we withdrew (or lose the one we
    announced). Seen with MACs that flap during a burst.
    """
    if change.nlri.action == exa.Action.ANNOUNCE and outgoing.in_cache(change):
        return  # the same route with the same attributes is already sent or queued
    index = change.index()
    pending = outgoing._new_nlri.get(index)
    if pending is not None:
        groups = outgoing._new_attr_af_nlri.get(pending.attributes.index(), {})
        groups.get(pending.nlri.family().afi_safi(), {}).pop(index, None)
    outgoing.add_to_rib(change, force=True)


def register_commands(names: Sequence[str], handler: Callable[..., bool]) -> None:
    """Add ``handler`` to ExaBGP's API command registry under each name (idempotent)."""
    for name in names:
        exa.Command.register(name)(handler)


# ExaBGP finds a line's handler by testing each of its ~40 command names as a substring of
# the whole line, after splitting the whole line into words to look for "json". A batch
# line of 1,000 changes is ~150 KB: that search was a sixth of ExaBGP's time in a burst.
# A line that starts with the batch command goes straight to the handler registered for
# it, as ExaBGP's search would send it (the self-test checks that no other name captures
# our lines); every other line takes ExaBGP's way.
_exabgp_process: list[Callable[..., Any]] = []  # API.process, once wrapped
_direct: dict[str, str] = {}  # "NAME " -> NAME, the commands dispatched directly


def direct_dispatch(name: str) -> None:
    """Wrap API.process so that lines starting with ``name`` skip the search (idempotent)."""
    _direct[f"{name} "] = name
    _replace(exa.API, "process", _process, _exabgp_process)


def _replace(owner: Any, name: str, ours: Callable[..., Any], kept: list[Any]) -> None:
    """``owner.name = ours``, ExaBGP's own kept in ``kept`` (idempotent: once ours, the
    original stays kept)."""
    current = owner.__dict__[name]
    if current is not ours:
        kept[:] = [current]
    setattr(owner, name, ours)


def direct_handler(command: str) -> Callable[..., Any] | None:
    """The handler a line goes to without the search, if it is one of those."""
    for head, name in _direct.items():
        if command.startswith(head):
            handler: Callable[..., Any] | None = exa.Command.callback["text"].get(name)
            return handler
    return None


def _process(self: Any, reactor: Any, service: str, command: str) -> Any:
    handler = direct_handler(command)
    if handler is not None:
        return handler(self, reactor, service, command, False)  # our lines are not json
    return _exabgp_process[0](self, reactor, service, command)


# ExaBGP reads 16 KiB of an API process's commands per pass of its reactor, and a pass
# waits for what a session read to be handed to the core: while the core is behind (a
# table coming in), ~110 KB of type 3s to announce (one line, 1,000 VNIs) took 7 passes.
# So a pass reads on while more waits, up to API_READS reads of ExaBGP's.
API_READS = 64
_exabgp_received: list[Callable[..., Any]] = []


def read_commands_fully() -> None:
    """Wrap Processes.received so that one pass reads what waits (idempotent)."""
    _replace(exa.Processes, "received", _received, _exabgp_received)


def _received(self: Any) -> Iterator[tuple[str, str]]:
    received = _exabgp_received[0]
    for _ in range(API_READS):
        read = False
        for command in received(self):
            read = True
            yield command
        # Most passes read nothing (a churn: thousands a second): those ask nothing more.
        # A read that ended inside a line left it in ExaBGP's buffer.
        if not (read or any(self._buffer.values())) or not _commands_waiting(self):
            return


def _commands_waiting(processes: Any) -> bool:
    """Whether an API process has written more than ExaBGP read (a pipe is readable)."""
    poller = select.poll()
    for proc in list(processes._process.values()):
        with contextlib.suppress(AttributeError, ValueError, OSError):  # gone meanwhile
            poller.register(proc.stdout, select.POLLIN | select.POLLPRI)
    return any(event & (select.POLLIN | select.POLLPRI) for _, event in poller.poll(0))


def run_exabgp(args: Sequence[str], argv0: str) -> int:
    """ExaBGP's own main, as ``exabgp server ARGS``; its exit code."""
    # ExaBGP's main parses sys.argv itself; "server" selects its daemon sub-command.
    sys.argv = [argv0, "server", *args]
    code = exa.exabgp_main()
    return int(code or 0)


# ---------------------------------------------------------------- IPv6 underlay
# ExaBGP 5.0.15 builds and decodes IPv6 addresses inside EVPN NLRIs, but two places around
# them know IPv4 VTEPs only. Taught here, in the running process, before ExaBGP's main:
# its files on disk stay as released.


@functools.cache
def _ingress_replication_any_family() -> type:
    """PMSI.unpack's class for tunnel type 6: 4-byte tunnels exactly as ExaBGP decodes
    them, 16-byte tunnels as IPv6 (ExaBGP's own class declares 4 bytes, so it handed
    them to its generic form, which drops the VNI and prints the address in hex)."""
    pmsi_class, ingress = exa.PMSI, exa.PMSIIngressReplication
    ipv6 = exa.IPv6

    class IngressReplicationAnyFamily(ingress):  # type: ignore[misc,valid-type]
        TUNNEL_SIZE = -1  # PMSI.unpack then passes every length here: decided below

        @classmethod
        def unpack(cls, tunnel: bytes, label: int, flags: int, raw_label: int) -> Any:
            # Instances are ExaBGP's own class, so repr, pack and equality stay ExaBGP's.
            if len(tunnel) == 16:
                return ingress(ipv6.ntop(tunnel), label, flags, tunnel, raw_label)
            if len(tunnel) == ingress.TUNNEL_SIZE:
                return ingress.unpack(tunnel, label, flags, raw_label)
            return pmsi_class.pmsi_unknown(cls.TUNNEL_TYPE, tunnel, label, flags, raw_label)

    return IngressReplicationAnyFamily


def teach_ipv6_underlay() -> None:
    """Let ExaBGP receive EVPN routes of IPv6 VTEPs (idempotent; IPv4 is unchanged).

    - MP_REACH_NLRI next hop: ExaBGP accepts 4 bytes only for l2vpn evpn and ends the
      session (NOTIFICATION 3/9) on the 16-byte next hop of an IPv6 VTEP (RFC 8365
      section 5.1.3: the next hop is the VTEP, IPv4 or IPv6).
    - PMSI ingress replication with a 16-byte tunnel identifier: decoded as IPv6, the
      JSON string then reads ``pmsi:ingressreplication:0:6(100):2001:db8::21``.
    """
    exa.Family.size[evpn_family()] = ((4, 16), 0)
    exa.PMSI._pmsi_known[exa.PMSIIngressReplication.TUNNEL_TYPE] = _ingress_replication_any_family()


# ---------------------------------------------------------------- JSON speed

_exabgp_raw: list[Callable[[Any], str]] = []  # ExaBGP's own EVPN._raw, once replaced


def _fast_raw(self: Any) -> str:
    return bytes(self.pack_nlri()).hex().upper()


def speed_up_json() -> None:
    """Hex the raw NLRI in ExaBGP's JSON with bytes.hex (same text, one C call).

    ExaBGP formats every byte with str.format: measured at a quarter of its CPU when it
    hands 100,000 EVPN routes to the agent, and ExaBGP is the pipeline's slowest stage.
    """
    evpn = exa.EVPN
    current = evpn.__dict__.get("_raw")
    if current is not _fast_raw:
        _exabgp_raw[:] = [current]
    evpn._raw = _fast_raw


# ---------------------------------------------------------------- receive fast path
# ExaBGP decodes every UPDATE into objects, then JSON, before the agent sees it; our own
# decoder (wire_decode) is far faster. So an EVPN UPDATE that passes wire_check is decoded
# here, on ExaBGP's process (the core only rebuilds the events: wire_records), and reaches
# the API process as one line; ExaBGP's decoder never sees it. Anything else takes
# ExaBGP's own path, unchanged (its NOTIFICATION, its JSON).

_exabgp_read_message: list[Callable[[Any], Iterator[Any]]] = []  # ExaBGP's own, once replaced
# "off": ExaBGP decodes every UPDATE and writes its JSON, as before the fast path. For API
# processes that record ExaBGP's JSON (the lab's tests/speaker_peer.py, fixture capture),
# and a way back should the fast path ever misbehave.
WIRE_RECEIVE_ENV = "EVPN_AGENT_WIRE_RECEIVE"


def wire_receive_wanted() -> bool:
    return os.environ.get(WIRE_RECEIVE_ENV, "on") != "off"


_NOP_CODE = 0  # what Connection.reader yields while nothing has arrived


class _Replay:
    """A connection whose reader yields one message already read; the rest is the real one."""

    __slots__ = ("_connection", "_item")

    def __init__(self, connection: Any, item: tuple[Any, ...]) -> None:
        self._connection = connection
        self._item = item

    def reader(self) -> Iterator[tuple[Any, ...]]:
        yield self._item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _OneMessage:
    """The Protocol as ExaBGP's read_message sees it, for one message we already read."""

    __slots__ = ("_protocol", "connection")

    def __init__(self, protocol: Any, item: tuple[Any, ...]) -> None:
        self._protocol = protocol
        self.connection = _Replay(protocol.connection, item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


def _wire_processes(protocol: Any) -> list[str]:
    """The API processes to hand this session's UPDATEs to as bytes: those that asked for
    parsed updates, provided nobody else wants ExaBGP's objects (packets, consolidated
    messages, the adj-rib-in or route logging)."""
    api = protocol.neighbor.api
    if api["receive-packets"] or api["receive-consolidate"] or not api["receive-parsed"]:
        return []
    if protocol.log_routes:  # adj-rib-in, or exabgp.log.routes
        return []
    return list(api["receive-update"])


def _evpn_only(negotiated: Any) -> bool:
    """The session decodes EVPN as wire_check assumes: negotiated, no ADD-PATH, no
    extended next hop (either changes what the bytes mean)."""
    afi, safi = evpn_family()
    return (
        (afi, safi) in negotiated.families
        and not negotiated.addpath.receive(afi, safi)
        and not negotiated.nexthop
    )


def _read_message(self: Any) -> Iterator[Any]:
    """Protocol.read_message, with the fast path for EVPN UPDATEs in front of ExaBGP's."""
    original = _exabgp_read_message[0]
    processes = _wire_processes(self)
    if not processes:
        yield from original(self)
        return
    nop = exa.protocol_NOP
    evpn = _evpn_only(self.negotiated)
    if evpn and _waits_its_turn(self, time.time()):
        yield nop  # the message stays on the socket: read on a later pass
        return
    for item in self.connection.reader():
        length, msg_id, _header, body, notify = item
        if notify is None:
            if not length and msg_id == _NOP_CODE:
                yield nop
                continue
            if msg_id == UPDATE and evpn and wire_ok(body):
                bodies = [bytes(body), *queued_updates(self.connection)]
                self.peer.stats["receive-update"] += len(bodies)
                now = time.time()
                _table_read(self, bodies, now)
                heap_trim.worked(now)
                reactor_processes = self.peer.reactor.processes
                if not reactor_processes.silence:
                    behind = core_unread(reactor_processes, processes) >= BEHIND
                    line = _line(self.neighbor, bodies, now, behind)
                    for process in processes:
                        reactor_processes.write(process, line, self.neighbor)
                yield exa.protocol_UPDATE
                continue
        yield from original(_OneMessage(self, item))


# Two reflectors send a VTEP that boots (or restarts) the same table, route for route: read
# side by side, both halves of the receive (here and in the core) spent much of their time
# on the second copy before the kernel held the first copy of every route. So while two or
# more sessions are loading their tables (up, no End-of-RIB yet), one is read first: a
# later one waits its turn while the first has bytes queued or sent some within the last
# TURN_QUIET. The first is the one that came up TOGETHER seconds or more before the others;
# among sessions that came up together, the reflector with the lowest address, the same
# on every VTEP. That matters when a rack boots at once: FRR then sends the whole table
# to all those VTEPs as one update subgroup, paced by its slowest reader, so every VTEP
# must read the same reflector first (were half of them to hold back each reflector's
# stream, both would crawl). A waiting session is read as soon as the first goes quiet
# (the reflector is slow, or done), and never waits longer than TURN_WAIT, nor a quarter
# of its hold time, at a time: its hold timer runs on what is read, and its keepalives
# queue behind its UPDATEs. After its End-of-RIB (or LOADING seconds after it came up,
# for a reflector that sends none) a session never waits: then its UPDATEs are changes,
# not a second copy.
TURN_WAIT = 2.0
TURN_QUIET = 0.1
TOGETHER = 1.0
LOADING = 120.0
EOR_SIZE = 11  # an EVPN End-of-RIB body: MP_UNREACH_NLRI with the family alone


@dataclass(slots=True)
class _TableLoad:
    """One session's table transfer, for :func:`_waits_its_turn`."""

    started: float  # the session's first read
    rank: tuple[int, int]  # its reflector's address: IP version, then value
    last_read: float = 0.0  # its last UPDATEs
    loaded: bool = False  # End-of-RIB seen (or LOADING passed)
    waiting: float | None = None  # since when it waits its turn
    waited: float = 0.0  # seconds it waited, all in all
    turns: int = 0  # how many times

    def done(self, now: float) -> bool:
        """Its End-of-RIB came, or LOADING passed without one."""
        return self.loaded or now - self.started > LOADING


_loads: weakref.WeakKeyDictionary[Any, _TableLoad] = weakref.WeakKeyDictionary()  # proto ->


def end_of_rib(body: bytes) -> bool:
    """Whether the UPDATE ``body`` is the l2vpn evpn End-of-RIB (RFC 4724): no withdrawn
    routes, one MP_UNREACH_NLRI attribute (extended length or not) with the family alone."""
    return body in _EVPN_EORS


_EVPN_EORS = frozenset(
    (
        encoded_end_of_rib()[HEADER_SIZE:],
        b"\x00\x00\x00\x07"  # the same, its attribute length in two bytes
        + bytes((OPTIONAL | EXTENDED_LENGTH, MP_UNREACH_NLRI, 0, len(EVPN_FAMILY)))
        + EVPN_FAMILY,
    )
)


def _table_read(protocol: Any, bodies: list[bytes], now: float) -> None:
    """UPDATEs ``bodies`` came on the session: its table is loaded at the End-of-RIB."""
    load = _loads.get(protocol)
    if load is None or load.loaded:
        return
    load.last_read = now
    if any(len(body) <= EOR_SIZE and end_of_rib(body) for body in bodies):
        load.loaded = True
        if load.turns:
            log.info(
                "table from %s loaded in %.1f s, %.1f s of it waiting %d times for another's",
                protocol.neighbor["peer-address"],
                now - load.started,
                load.waited,
                load.turns,
            )


def _waits_its_turn(protocol: Any, now: float) -> bool:
    """Whether this session's next message waits for an earlier session's table."""
    if protocol.peer.fsm != exa.FSM.ESTABLISHED:
        return False  # the OPEN or KEEPALIVE exchange: ExaBGP reads the next message as such
    load = _loads.get(protocol)
    if load is None:
        load = _loads[protocol] = _TableLoad(now, _rank(protocol))
    if load.done(now):
        return False
    if _one_before_sends(protocol, load, now):
        if load.waiting is None:
            load.waiting = now
            load.turns += 1
        holdtime = float(protocol.peer.recv_timer.holdtime or 0)
        limit = min(TURN_WAIT, holdtime / 4) if holdtime else TURN_WAIT
        if now - load.waiting < limit:
            return True
    if load.waiting is not None:
        load.waited += now - load.waiting
        load.waiting = None
    return False


def _one_before_sends(protocol: Any, load: _TableLoad, now: float) -> bool:
    """Whether a session still loading that goes before this one is sending: bytes
    queued, or UPDATEs read within TURN_QUIET."""
    for peer in protocol.peer.reactor._peers.values():
        other = peer.proto
        if other is None or other is protocol:
            continue
        their = _loads.get(other)
        if their is None or their.done(now):
            continue
        before = their.started < load.started - TOGETHER or (
            their.started <= load.started + TOGETHER and their.rank < load.rank
        )
        if before and (now - their.last_read < TURN_QUIET or _queued(other) >= HEADER_SIZE):
            return True
    return False


def _rank(protocol: Any) -> tuple[int, int]:
    """The reflector's address as an order (IPv4 first); last, if not an address."""
    try:
        address = ipaddress.ip_address(str(protocol.neighbor["peer-address"]))
    except (KeyError, TypeError, ValueError):
        return (99, 0)
    return (address.version, int(address))


def _queued(protocol: Any) -> int:
    """Bytes queued on the session's socket, not read yet (0 for one closed)."""
    sock = getattr(protocol.connection, "io", None)
    if sock is None:
        return 0
    try:
        return unread(sock.fileno())
    except (OSError, ValueError):
        return 0


def unread(fd: int) -> int:
    """FIONREAD: the bytes queued on a socket or pipe that its reader has not read (for a
    pipe, the same count from the end written to)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)


# A line's UPDATEs are decoded here, and handed over as records, while the core is behind:
# BEHIND bytes or more of lines it has not read yet. Decoding then runs beside the core
# instead of in it (a table, a reflector back: a burst's UPDATEs had waited 0.4-0.8 s in
# the core's queue). While the core keeps up (a churn of moves) records would only add the
# decode and their encoding here to the core's rebuild (a third more CPU in a churn soak,
# when every line of 8 UPDATEs or more went as records): the bytes go. The count of
# UPDATEs says nothing: a reflector packs up to ~1,700 routes of one VNI into one.
BEHIND = 1 << 15  # ~150 UPDATEs of a route, as hex


def core_unread(processes: Any, names: Sequence[str]) -> int:
    """The most bytes of lines one of the API processes ``names`` has not read: FIONREAD of
    its pipe (the same count from the end ExaBGP writes to); 0 for one gone."""
    most = 0
    for name in names:
        try:
            queued = unread(processes._process[name].stdin.fileno())
        except (AttributeError, KeyError, OSError, ValueError):  # gone, or not a pipe
            continue
        most = max(most, queued)
    return most


def _line(neighbor: Any, bodies: list[bytes], stamp: float, behind: bool) -> str:
    """The line for UPDATEs that passed the gate: ``wire-events`` (records) while the core
    is behind, else ``wire-update`` (their bytes)."""
    if behind:
        return _events_line(neighbor, bodies, stamp)
    hexed = " ".join(body.hex() for body in bodies)
    return f"{WIRE_UPDATE} {neighbor['peer-address']} {stamp:.6f} {hexed}"


def _events_line(neighbor: Any, bodies: list[bytes], stamp: float) -> str:
    """The ``wire-events`` line for UPDATEs that passed the gate: decoded here, on ExaBGP's
    process, so the core only rebuilds their events (wire_records); our own routes,
    reflected back, are told apart by the router id as the core would."""
    peer = str(neighbor["peer-address"])
    router_id = neighbor.get("router-id")
    own = str(router_id) if router_id is not None else None
    events = [event for body in bodies for event in decode_update(body, peer, own)]
    return f"{WIRE_EVENTS} {peer} {stamp:.6f} {encode_events(events)}"


# With one route target per VNI, a 1,000-VNI table comes as ~60,000 UPDATEs of a route or
# two. ExaBGP reads each with a poll and a recv for its header, the same for its body, a pass
# of the peer's loop and a write to the pipe: most of its time. So after an UPDATE that took
# the fast path, the UPDATEs already queued behind it on the socket go with it, in the same
# line: peeked, gated like the first, and only then consumed. The first message that is not
# such an UPDATE (or not whole yet) stays on the socket for ExaBGP's reader, which is at a
# message boundary between two read_message passes.
BATCH_PEEK = 1 << 17  # bytes looked at behind an UPDATE: a line stays under ~260 KB of hex


def complete_updates(data: bytes, max_size: int) -> tuple[list[bytes], int]:
    """The bodies of the whole UPDATEs at the start of ``data`` that pass the gate, and the
    bytes they take; stops at the first message that is anything else."""
    bodies: list[bytes] = []
    end = 0
    size = len(data)
    while end + HEADER_SIZE <= size:
        length = int.from_bytes(data[end + 16 : end + 18])
        if (
            data[end + 18] != UPDATE
            or not HEADER_SIZE + 4 <= length <= max_size
            or end + length > size
            or data[end : end + 16] != MARKER
        ):
            break
        body = data[end + HEADER_SIZE : end + length]
        if not wire_ok(body):
            break
        bodies.append(body)
        end += length
    return bodies, end


def queued_updates(connection: Any) -> list[bytes]:
    """Take the gated UPDATEs already queued on the session's socket (see BATCH_PEEK)."""
    sock = getattr(connection, "io", None)
    if sock is None:
        return []
    try:
        data = sock.recv(BATCH_PEEK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing queued yet, or an error ExaBGP's own reader meets next
        return []
    bodies, end = complete_updates(data, connection.msg_size)
    if end:
        _discard(sock, end)
    return bodies


def _discard(sock: socket.socket, count: int) -> None:
    """Consume ``count`` bytes known to be queued (we peeked them; only we read)."""
    scratch = bytearray(count)
    view = memoryview(scratch)
    got = 0
    while got < count:
        try:
            read = sock.recv_into(view[got:], count - got)
        except BlockingIOError:  # not seen, but never spin
            select.select([sock], [], [], 1.0)
            continue
        if not read:
            raise ConnectionError("the peer closed the connection inside peeked data")
        got += read


def wire_receive() -> None:
    """Replace Protocol.read_message by :func:`_read_message` (idempotent)."""
    _replace(exa.Protocol, "read_message", _read_message, _exabgp_read_message)


# ---------------------------------------------------------------- idle sleep
# ExaBGP's reactor polls its sockets for 10 ms per pass (exabgp_reactor_speed / 100) even
# when nothing is to be done, only to look at its timers: 100 wake-ups a second per
# process. When every session is established and nothing is queued, the patched wait
# sleeps until the next I/O (a BGP socket, an API pipe, a listening socket, a signal) or the
# first keepalive or hold timer. In every other state ExaBGP's own short sleep is kept.

IDLE_CAP = 60.0  # seconds: the longest idle sleep, whatever the timers say
# Free heap pages go back to the system once the UPDATEs of a burst (received on the fast
# path or sent on the advert path) have stopped: checked on every pass of the reactor.
heap_trim = TrimWhenQuiet()
_send_timers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # proto ->
_exabgp_need_ka: list[Callable[[Any], bool]] = []  # SendTimer.need_ka, once replaced
_idle_failed: list[BaseException] = []  # the first error of idle_timeout, if any
_signal_pipe: list[int] = []  # [read fd]: the wake-up fd of signal.set_wakeup_fd, once set


def idle_timeout(reactor: Any, now: float) -> float | None:
    """Seconds the reactor may sleep with nothing to do: until the first keepalive to send
    or hold timer to check of its established sessions. None when not sure it is idle."""
    if not reactor.asynchronous.ready() or reactor.signal.received or reactor._stopping:
        return None
    if not reactor._peers:
        return None
    established = exa.FSM.ESTABLISHED
    due = now + IDLE_CAP
    for peer in reactor._peers.values():
        proto, neighbor = peer.proto, peer.neighbor
        if peer.fsm != established or proto is None or peer._teardown:
            return None
        if neighbor["rate-limit"] > 0 or neighbor.messages or neighbor.refresh or neighbor.eor:
            return None
        if neighbor.rib.outgoing.pending():
            return None
        send, receive = _send_timers.get(proto), peer.recv_timer
        if send is None or receive is None:
            return None
        if send.keepalive:
            due = min(due, send.last_sent + send.keepalive + _slack(send.keepalive))
        if receive.holdtime:
            # checked on whole seconds: expires once int(now) - last_read > holdtime
            due = min(due, receive.last_read + int(receive.holdtime) + 1)
    wait = due - now
    return wait if wait > 0 else None


def _signal_fd() -> int | None:
    """A pipe that a signal makes readable, so that the poll ends at once: Python retries
    an interrupted poll (PEP 475), and ExaBGP's handlers only set a flag. None if a wake-up
    fd belongs to someone else or this is not the main thread."""
    if _signal_pipe:
        return _signal_pipe[0]
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        previous = None
    if previous != -1:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)
        return None
    _signal_pipe.append(read)
    return read


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _remember_send_timer(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def __init__(self: Any, session: Any, proto: Any) -> None:
        init(self, session, proto)
        _send_timers[proto] = self.send_timer

    __init__.evpn_agent_idle = True  # type: ignore[attr-defined]
    __init__.exabgp_init = init  # type: ignore[attr-defined]
    return __init__


def _exabgp_ka_init(ka: Any) -> Callable[..., None]:
    """KA's own __init__, whether or not it was wrapped."""
    init: Callable[..., None] = ka.__init__
    return getattr(init, "exabgp_init", init)


# A keepalive goes out with any wake-up within this many seconds of when it is due (before
# or after): the peer's own keepalives, another session's, a route. Only for keepalives
# of 3 s and more: at most a third of the interval, a ninth of the hold time. ExaBGP's
# own timer, on whole seconds, was as loose.
KEEPALIVE_SLACK = 1.0


def _slack(keepalive: float) -> float:
    return KEEPALIVE_SLACK if keepalive >= 3 * KEEPALIVE_SLACK else 0.0


def _need_ka(self: Any) -> bool:
    """ExaBGP's SendTimer.need_ka, but a keepalive due within KEEPALIVE_SLACK seconds is
    sent while the reactor is awake anyway, and the idle sleep wakes for it only once it
    is that late: a keepalive rides on the peer's (sent as often) instead of costing a
    wake-up of its own. Never more often than every keepalive - slack seconds (RFC 4271:
    not more than one a second)."""
    if not self.keepalive:
        return False
    now = time.time()
    if now >= self.last_sent + self.keepalive - _slack(self.keepalive):
        self.last_sent = now
        return True
    return False


_need_ka.evpn_agent_idle = True  # type: ignore[attr-defined]


def _poll(reactor: Any, sleeptime: int) -> Iterator[int]:
    """ExaBGP's Reactor._wait_for_io, except that a closed file descriptor leaves the poller.

    ExaBGP registers each session's socket and never unregisters it (its clean-up looks
    for -1). Once that session closes (a reflector lost, a reconnect), poll() reports the
    closed descriptor at once (POLLNVAL) on every pass: the reactor no longer sleeps for I/O,
    and its spin guard sleeps 10 ms a pass instead, while UPDATEs wait (seen in a churn soak
    after a reflector flap). Descriptors with data, hang-ups and errors are handled as
    ExaBGP does."""
    spin = False
    try:
        for fd, event in reactor._poller.poll(sleeptime):
            if event & (select.POLLIN | select.POLLPRI):
                yield fd
            elif event & select.POLLNVAL:
                reactor._poller.unregister(fd)  # closed: nothing will ever come from it
            elif event & (select.POLLHUP | select.POLLERR):
                spin = True
        if spin:
            reactor._prevent_spin()
    except KeyboardInterrupt:
        reactor._termination("^C received", reactor.Exit.normal)
    except Exception:  # as ExaBGP: never take the reactor down from its wait
        reactor._prevent_spin()


def _idle_wait(wait: Callable[[Any, int], Iterator[int]]) -> Callable[[Any, int], Iterator[int]]:
    def _wait_for_io(self: Any, sleeptime: int) -> Iterator[int]:
        wake = _signal_fd()
        ours = set()
        now = time.time()
        heap_trim.trim_if_due(now)
        if sleeptime > 0 and wake is not None:
            try:
                timeout = idle_timeout(self, now)
            except Exception as exc:  # never take ExaBGP down: its own sleep then
                if not _idle_failed:
                    log.error("idle sleep off: %s", _one_line(exc))
                    _idle_failed.append(exc)
                timeout = None
            if timeout is not None:
                trim_in = heap_trim.due_in(now)
                if trim_in is not None:  # wake once more, when the burst is over
                    timeout = min(timeout, trim_in)
                sleeptime = max(sleeptime, math.ceil(timeout * 1000))
                ours.add(wake)
                listener = self.listener
                for sock in getattr(listener, "_sockets", {}) if listener else ():
                    ours.add(sock.fileno())
                for fd in ours:
                    self._poller.register(fd, select.POLLIN | select.POLLPRI)
        try:
            for fd in _poll(self, sleeptime):
                if fd == wake:
                    _drain(fd)
                elif fd not in ours:
                    yield fd
        finally:
            for fd in ours:
                self._poller.unregister(fd)

    _wait_for_io.evpn_agent_idle = True  # type: ignore[attr-defined]
    _wait_for_io.exabgp_wait = wait  # type: ignore[attr-defined]  # ExaBGP's, to undo the patch
    return _wait_for_io


def sleep_when_idle() -> None:
    """Let ExaBGP's reactor sleep until the next I/O or timer when it is idle (idempotent).

    Measured on an established, quiet VTEP: 100 wake-ups and 2-3 % of a core per second,
    while an FRR VTEP wakes 3 times a second. Nothing waits longer than before: anything to
    do wakes the poll (socket, API pipe, listening socket, signal) or keeps ExaBGP's sleep.
    Keepalives within a second of their time ride on a wake-up at hand (``_need_ka``).
    """
    reactor, ka, send_timer = exa.Reactor, exa.KA, exa.SendTimer
    if not getattr(ka.__init__, "evpn_agent_idle", False):
        ka.__init__ = _remember_send_timer(ka.__init__)
    if not getattr(send_timer.need_ka, "evpn_agent_idle", False):
        _exabgp_need_ka[:] = [send_timer.need_ka]
        send_timer.need_ka = _need_ka
    if not getattr(reactor._wait_for_io, "evpn_agent_idle", False):
        reactor._wait_for_io = _idle_wait(reactor._wait_for_io)


# ---------------------------------------------------------------- advert fast path
# ExaBGP builds one Change per route in its adj-rib-out and sends one UPDATE per EVPN route.
# The agent's routes bypass it: the launcher keeps its own table and hands whole packed
# UPDATEs to each session's send path through these hooks.


class AdvertHooks:
    """What the advert path asks the launcher, per adj-rib-out (one per peer, kept by
    ExaBGP across that peer's sessions). Defaults: nothing of ours."""

    def has_work(self, outgoing: Any) -> bool:
        return False

    def session_up(self, outgoing: Any) -> None:
        """A session of this peer was established; nothing of ours was sent on it yet."""

    def take(self, outgoing: Any, max_size: int) -> tuple[bool, list[bytes]]:
        """(bracket with BoRR/EoRR, the UPDATE messages to send now)."""
        return False, []

    def resend(self, outgoing: Any, enhanced: bool) -> bool:
        """The peer asked for a route refresh of l2vpn evpn; True if the routes are ours."""
        return False


_advert_originals: dict[str, Any] = {}  # ExaBGP's own functions, once wrapped
_advert_hooks: list[AdvertHooks] = [AdvertHooks()]  # the one in use (the self-test swaps it)


def install_advert_path(hooks: AdvertHooks) -> None:
    """Send the launcher's UPDATEs from ExaBGP's own send path (idempotent).

    - ``OutgoingRIB.pending`` also says yes when the launcher has work for the peer, so the
      peer loop calls ``new_update``;
    - ``Protocol.new_update`` first writes our packed UPDATEs (bracketed by BoRR/EoRR after
      an enhanced route refresh), then ExaBGP's own; the End-of-RIB follows both;
    - ``OutgoingRIB.replace_restart`` (every new session) tells the launcher, which queues
      its whole table before ExaBGP's End-of-RIB;
    - ``Peer.resend`` (a ROUTE-REFRESH from the peer) for l2vpn evpn resends our table; the
      BoRR/EoRR are then ours, so ExaBGP's own refresh of that family is not enhanced.
    """
    originals = _advert_originals
    if not originals:
        originals["pending"] = exa.OutgoingRIB.pending
        originals["replace_restart"] = exa.OutgoingRIB.replace_restart
        originals["new_update"] = exa.Protocol.new_update
        originals["resend"] = exa.Peer.resend
    pending, replace_restart = originals["pending"], originals["replace_restart"]
    new_update, resend = originals["new_update"], originals["resend"]
    refresh = exa.RouteRefresh
    family = evpn_family()
    current = _advert_hooks
    current[0] = hooks

    def pending_or_ours(self: Any) -> bool:
        return bool(pending(self)) or current[0].has_work(self)

    def replace_restart_and_tell(self: Any, previous: Any, new: Any) -> None:
        replace_restart(self, previous, new)
        current[0].session_up(self)

    def ours_then_new_update(self: Any, include_withdraw: bool) -> Iterator[Any]:
        outgoing, size = self.neighbor.rib.outgoing, self.negotiated.msg_size
        bracket, messages = current[0].take(outgoing, size)
        if family not in self.negotiated.families:
            # configured, but the peer did not take l2vpn evpn: taken (so that pending()
            # is false again) and not sent, as ExaBGP's Update.messages skips the family
            bracket, messages = False, []
        if messages:
            heap_trim.worked(time.time())
        if bracket:
            yield from self.write(refresh(*family, refresh.start))
        for message in messages:
            # One message after the other, a step given back only while the socket is
            # full. Peer._main takes 25 steps of this generator per pass of its loop, and
            # a pass also hands the core what it read (waiting while the core is behind):
            # a step per message sent a 1,000-VNI VTEP's type 3s (an UPDATE each, one RT
            # per VNI) over 40 passes, 2-5 s after a restart while the tables came in.
            for written in self.send(message):
                if not written:
                    yield written
        if bracket:
            yield from self.write(refresh(*family, refresh.end))
        yield from new_update(self, include_withdraw)

    def resend_ours(self: Any, enhanced: bool, family_asked: Any = None) -> None:
        if family_asked == family and current[0].resend(self.neighbor.rib.outgoing, enhanced):
            enhanced = False
        resend(self, enhanced, family_asked)

    exa.OutgoingRIB.pending = pending_or_ours
    exa.OutgoingRIB.replace_restart = replace_restart_and_tell
    exa.Protocol.new_update = ours_then_new_update
    exa.Peer.resend = resend_ours


def patch(
    names: Sequence[str], handler: Callable[..., bool], hooks: AdvertHooks | None = None
) -> None:
    """Every change the launcher makes to ExaBGP before its main; CompatError if one fails.

    Call selftest.check_internals first, so a changed ExaBGP is reported whole."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("IPv6 underlay", teach_ipv6_underlay),
        ("JSON speed-up", speed_up_json),
        *([("receive fast path", wire_receive)] if wire_receive_wanted() else []),
        ("idle sleep", sleep_when_idle),
        ("command registry", lambda: register_commands(names, handler)),
        ("command dispatch", lambda: direct_dispatch(BATCH)),
        ("command reads", read_commands_fully),
    ]
    if hooks is not None:
        steps.append(("advert fast path", lambda: install_advert_path(hooks)))
    for step, apply in steps:
        try:
            apply()
        except Exception as exc:
            raise CompatError(
                f"cannot patch ExaBGP {_version_text()} ({step}: {_one_line(exc)});"
                f" not starting it. Fix: {_fix()}"
            ) from None


def _fix() -> str:
    # a verified version that fails was changed after its installation
    return REINSTALL if _version_text() in supported_versions() else FIX


def _version_text() -> str:
    try:
        return installed_version()[0]
    except CompatError:
        return "(unknown version)"


def _one_line(exc: object) -> str:
    text = str(exc) if not isinstance(exc, BaseException) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]
