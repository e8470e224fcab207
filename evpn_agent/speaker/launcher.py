"""Run ExaBGP with ``announce evpn`` / ``withdraw evpn`` API commands registered.

No released ExaBGP can announce EVPN from its API. Its command registry is a class-level
table, so registering two handlers before calling ExaBGP's own ``main()`` teaches an
unpatched ExaBGP the :mod:`evpn_agent.speaker.grammar` lines.

Usage: ``python -m evpn_agent.speaker CONF`` (any further arguments go to ``exabgp server``).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import struct
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any

from evpn_agent.speaker import grammar

log = logging.getLogger("evpn_agent.speaker")

COMMANDS = ("announce evpn", "withdraw evpn")

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
# ExaBGP classes are imported lazily so that ``--help``-style use and unit tests of the
# pure helpers do not pay for (or depend on) ExaBGP's import-time setup.


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
    from exabgp.bgp.message.update.nlri.qualifier import RouteDistinguisher

    # Packed here rather than with RouteDistinguisher.fromElements, which picks the type
    # from the magnitude of the numbers and cannot build every valid type-0 RD.
    return RouteDistinguisher(struct.pack("!H", rd.type) + _admin_number_bytes(rd))


def _exa_rt(rt: grammar.RouteTarget) -> Any:
    from exabgp.bgp.message.update.attribute.community.extended import (
        RouteTargetASN2Number,
        RouteTargetASN4Number,
        RouteTargetIPNumber,
    )

    if isinstance(rt.admin, ipaddress.IPv4Address):
        return RouteTargetIPNumber(str(rt.admin), rt.number)
    if rt.type == 0:
        return RouteTargetASN2Number(rt.admin, rt.number)
    return RouteTargetASN4Number(rt.admin, rt.number)


@functools.lru_cache(maxsize=4096)
def _exa_ip(address: grammar.IPAddress) -> Any:
    from exabgp.protocol.ip import IP

    return IP.create(str(address))


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
    from exabgp.bgp.message.update.attribute import Attributes, LocalPreference, Origin
    from exabgp.bgp.message.update.attribute.community.extended import (
        Encapsulation,
        ExtendedCommunities,
        MacMobility,
    )
    from exabgp.bgp.message.update.attribute.pmsi import PMSIIngressReplication

    attributes = Attributes()
    attributes.add(Origin(Origin.IGP))
    attributes.add(LocalPreference(100))
    communities = ExtendedCommunities()
    for rt in route_targets:
        communities.add(_exa_rt(rt))
    communities.add(Encapsulation(Encapsulation.Type.VXLAN))
    if mobility is not None:
        communities.add(MacMobility(mobility.sequence, mobility.sticky))
    attributes.add(communities)
    if pmsi_tunnel is not None:
        # FRR installs no flood entry for a type 3 without PMSI ingress replication.
        # raw_label: the VNI is a raw 24-bit value, not an MPLS label (RFC 8365).
        # tunnel: given packed, so an IPv6 address is sent as its 16 bytes (ExaBGP would
        # otherwise pack the string as IPv4).
        attributes.add(
            PMSIIngressReplication(
                str(pmsi_tunnel),
                label=label >> 4,
                tunnel=pmsi_tunnel.packed,
                raw_label=label,
            )
        )
    return attributes


@functools.cache
def _no_attributes() -> Any:
    from exabgp.bgp.message.update.attribute import Attributes

    return Attributes()


def build_change(cmd: grammar.Command) -> Any:
    """The ``exabgp.rib.change.Change`` (NLRI + attributes, action set) for ``cmd``."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.nlri.evpn.mac import MAC
    from exabgp.bgp.message.update.nlri.evpn.multicast import Multicast
    from exabgp.bgp.message.update.nlri.qualifier import ESI, EthernetTag, Labels
    from exabgp.bgp.message.update.nlri.qualifier import MAC as MACQUAL
    from exabgp.rib.change import Change

    rd = _exa_rd(cmd.rd)
    next_hop = _exa_ip(cmd.next_hop)
    announce = cmd.action is grammar.Action.ANNOUNCE
    nlri: Any
    if isinstance(cmd, grammar.MacRoute):
        # Labels([vni]) would encode vni<<4|BOS and FRR would read VNI 100 as 1601.
        label = Labels([], raw_labels=[cmd.label])
        ip = None if cmd.ip is None else _exa_ip(cmd.ip)
        nlri = MAC(rd, ESI(), EthernetTag(0), MACQUAL(cmd.mac), 48, label, ip, nexthop=next_hop)
        pmsi = None
        mobility = cmd.mobility
    else:
        nlri = Multicast(rd, EthernetTag(0), _exa_ip(cmd.ip), nexthop=next_hop)
        pmsi = cmd.ip
        mobility = None
    nlri.action = Action.ANNOUNCE if announce else Action.WITHDRAW
    if announce:
        attributes = _attributes(cmd.label, cmd.route_targets, mobility, pmsi)
    else:
        attributes = _no_attributes()
    return Change(nlri, attributes)


# ---------------------------------------------------------------- API handler


def inject(configuration: Any, peers: Sequence[str], cmd: grammar.Command) -> bool:
    """Queue ``cmd`` in the adj-rib-out of each named peer that has l2vpn evpn.

    Configuration.inject_change does the same through Neighbor.remove_self, which
    deep-copies the change for every peer only to resolve ``next-hop self``; our next hop
    is always explicit. That copy was half of the handler's time (~120 of ~230 us a
    route), so each peer gets its own freshly built change instead (~25 us).
    """
    injected = False
    for name in peers:
        neighbor = configuration.neighbors.get(name)
        if neighbor is None:
            continue
        change = build_change(cmd)
        if change.nlri.family().afi_safi() not in neighbor.families():
            continue
        queue(neighbor.rib.outgoing, change)
        injected = True
    return injected


def queue(outgoing: Any, change: Any) -> None:
    """Queue ``change`` in ExaBGP's adj-rib-out so that it replaces whatever is still
    pending for the same route: the last command wins.

    OutgoingRIB groups pending changes by attribute set and sends the groups in the order
    they were created, but add_to_rib leaves an earlier pending change for the same route
    in its own group. An announce and a withdraw of one MAC within one send cycle then both
    go out, in group order, and the peer may keep the route we withdrew (or lose the one we
    announced). Seen with MACs that flap during a burst.
    """
    from exabgp.bgp.message import Action

    if change.nlri.action == Action.ANNOUNCE and outgoing.in_cache(change):
        return  # the same route with the same attributes is already sent or queued
    index = change.index()
    pending = outgoing._new_nlri.get(index)
    if pending is not None:
        groups = outgoing._new_attr_af_nlri.get(pending.attributes.index(), {})
        groups.get(pending.nlri.family().afi_safi(), {}).pop(index, None)
    outgoing.add_to_rib(change, force=True)


class Advertised:
    """What the agent cores announced through this ExaBGP, which outlives them.

    A respawned core cannot know what its predecessor announced. It re-announces its
    whole desired set between ``announce evpn sync begin`` and ``announce evpn sync end``;
    at the end, whatever was announced before the begin and not since is withdrawn
    (mark and sweep), so MACs that left while no core ran do not stay advertised.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[object, ...], grammar.Command] = {}
        self.unconfirmed: set[tuple[object, ...]] | None = None

    @staticmethod
    def key(cmd: grammar.Command) -> tuple[object, ...]:
        """ExaBGP's identity of a route: the NLRI with its label, and the next hop."""
        if isinstance(cmd, grammar.MacRoute):
            return ("mac", cmd.rd, cmd.mac, cmd.ip, cmd.label, cmd.next_hop)
        return ("multicast", cmd.rd, cmd.ip, cmd.label, cmd.next_hop)

    def record(self, cmd: grammar.Command) -> None:
        key = self.key(cmd)
        if cmd.action is grammar.Action.ANNOUNCE:
            self.routes[key] = cmd
        else:
            self.routes.pop(key, None)
        if self.unconfirmed is not None:
            self.unconfirmed.discard(key)

    def begin(self) -> None:
        self.unconfirmed = set(self.routes)

    def end(self) -> list[grammar.Command]:
        """Withdraws for every route not re-announced since begin()."""
        stale = self.unconfirmed or set()
        self.unconfirmed = None
        return [self.routes.pop(key).withdrawal() for key in stale]


ADVERTISED = Advertised()


def handle(api: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
    """ExaBGP command handler for both EVPN commands.

    Runs synchronously, not queued on reactor.asynchronous: that queue is rescanned on
    every pass and measured slower under bursts. Answers ``done`` or ``error``; ExaBGP
    itself logs nothing for a failed command, so the reason is logged here.
    """
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors

    try:
        descriptions, command = extract_neighbors(line)
        peers = match_neighbors(reactor.peers(service), descriptions)
        if not peers:
            log.error("no neighbor matches %r (from %s)", line, service)
            reactor.processes.answer_error(service)
            return False
        words = command.split()
        if " ".join(words) == grammar.SYNC_BEGIN:
            ADVERTISED.begin()
            reactor.processes.answer_done(service)
            return True
        if " ".join(words) == grammar.SYNC_END:
            stale = ADVERTISED.end()
            for cmd in stale:
                inject(reactor.configuration, peers, cmd)
            if stale:
                log.info("withdrew %d routes no agent core announces any more", len(stale))
            reactor.processes.answer_done(service)
            return True
        cmd = grammar.parse(command)
        injected = inject(reactor.configuration, peers, cmd)
        if injected:
            ADVERTISED.record(cmd)
    except grammar.GrammarError as exc:
        log.error("bad EVPN command from %s: %s: %r", service, exc, line)
        reactor.processes.answer_error(service)
        return False
    except Exception:
        # A bug here must not take ExaBGP (and so the BGP session) down.
        log.exception("failed EVPN command from %s: %r", service, line)
        reactor.processes.answer_error(service)
        return False
    if not injected:
        log.error("no neighbor of %s has family l2vpn evpn: %r", service, line)
        reactor.processes.answer_error(service)
        return False
    reactor.processes.answer_done(service)
    return True


# ---------------------------------------------------------------- IPv6 underlay
# ExaBGP 5.0.15 builds and decodes IPv6 addresses inside EVPN NLRIs, but two places around
# them know IPv4 VTEPs only. Taught here, in the running process, before ExaBGP's main:
# its files on disk stay as released.


@functools.cache
def _ingress_replication_any_family() -> type:
    """PMSI.unpack's class for tunnel type 6: 4-byte tunnels exactly as ExaBGP decodes
    them, 16-byte tunnels as IPv6 (ExaBGP's own class declares 4 bytes, so it handed
    them to its generic form, which drops the VNI and prints the address in hex)."""
    from exabgp.bgp.message.update.attribute.pmsi import PMSI, PMSIIngressReplication
    from exabgp.protocol.ip import IPv6

    class IngressReplicationAnyFamily(PMSIIngressReplication):  # type: ignore[misc]
        TUNNEL_SIZE = -1  # PMSI.unpack then passes every length here: decided below

        @classmethod
        def unpack(cls, tunnel: bytes, label: int, flags: int, raw_label: int) -> Any:
            # Instances are ExaBGP's own class, so repr, pack and equality stay ExaBGP's.
            if len(tunnel) == 16:
                return PMSIIngressReplication(IPv6.ntop(tunnel), label, flags, tunnel, raw_label)
            if len(tunnel) == PMSIIngressReplication.TUNNEL_SIZE:
                return PMSIIngressReplication.unpack(tunnel, label, flags, raw_label)
            return PMSI.pmsi_unknown(cls.TUNNEL_TYPE, tunnel, label, flags, raw_label)

    return IngressReplicationAnyFamily


def teach_ipv6_underlay() -> None:
    """Let ExaBGP receive EVPN routes of IPv6 VTEPs (idempotent; IPv4 is unchanged).

    - MP_REACH_NLRI next hop: ExaBGP accepts 4 bytes only for l2vpn evpn and ends the
      session (NOTIFICATION 3/9) on the 16-byte next hop of an IPv6 VTEP (RFC 8365
      section 5.1.3: the next hop is the VTEP, IPv4 or IPv6).
    - PMSI ingress replication with a 16-byte tunnel identifier: decoded as IPv6, the
      JSON string then reads ``pmsi:ingressreplication:0:6(100):2001:db8::21``.
    """
    from exabgp.bgp.message.update.attribute.pmsi import PMSI, PMSIIngressReplication
    from exabgp.protocol.family import AFI, SAFI, Family

    Family.size[(AFI.l2vpn, SAFI.evpn)] = ((4, 16), 0)
    PMSI._pmsi_known[PMSIIngressReplication.TUNNEL_TYPE] = _ingress_replication_any_family()


def speed_up_json() -> None:
    """Hex the raw NLRI in ExaBGP's JSON with bytes.hex (same text, one C call).

    ExaBGP formats every byte with str.format: measured at a quarter of its CPU when it
    hands 100,000 EVPN routes to the agent, and ExaBGP is the pipeline's slowest stage.
    """
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN

    def _raw(self: Any) -> str:
        return bytes(self.pack_nlri()).hex().upper()

    EVPN._raw = _raw


def register() -> None:
    """Add the EVPN commands to ExaBGP's registry (idempotent)."""
    from exabgp.reactor.api.command.command import Command

    for name in COMMANDS:
        Command.register(name)(handle)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``main(["CONF", ...])`` runs ``exabgp server CONF ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m evpn_agent.speaker CONF [exabgp server options]\n")
        return 0 if args else 2
    _configure_logging()
    apply_environment()
    teach_ipv6_underlay()
    speed_up_json()
    register()

    from exabgp.application.main import main as exabgp_main

    # ExaBGP's main parses sys.argv itself; "server" selects its daemon sub-command.
    sys.argv = [sys.argv[0], "server", *args]
    code = exabgp_main()
    return int(code or 0)
