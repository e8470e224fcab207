"""The launcher's self-test: before ExaBGP's main runs, every internal it relies on is
exercised in this process (registry and dispatch, peer selection, last-command-wins queueing,
the IPv6 and JSON patches, our packed UPDATEs through ExaBGP's send path, the receive fast
path). A failure is one line naming the step and the fix; ExaBGP does not start. What the
internals are and the version gate are in :mod:`compat`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evpn_agent.model import (
    AdvertChange,
    MacAdvert,
    RouteDistinguisher,
    RouteTarget,
    one_per_route,
)
from evpn_agent.speaker import wire_encode
from evpn_agent.speaker.compat import (
    BEHIND,
    INTERNALS,
    AdvertHooks,
    CompatError,
    _advert_hooks,
    _advert_originals,
    _exabgp_raw,
    _exabgp_read_message,
    _fast_raw,
    _fix,
    _one_line,
    _process,
    _read_message,
    _send_timers,
    _version_text,
    direct_handler,
    evpn_family,
    exa,
    idle_timeout,
    queue,
    select_peers,
    wire_receive_wanted,
)
from evpn_agent.speaker.grammar import BATCH
from evpn_agent.speaker.wire_decode import decode_update
from evpn_agent.speaker.wire_records import decode_events

log = logging.getLogger(__name__)


_RD, _MAC, _RT = "rd 192.0.2.21:1", "mac 02:00:5e:00:00:01", "rt 65000:100"
SAMPLE_ANNOUNCE = f"announce evpn mac {_RD} {_MAC} label 100 next-hop 192.0.2.21 {_RT}"
SAMPLE_WITHDRAW = f"withdraw evpn mac {_RD} {_MAC} label 100 next-hop 192.0.2.21"
_V6 = "2001:db8::21"
SAMPLE_ROUTES = (  # IPv6 next hop, IPv6 PMSI tunnel, IPv4 as ExaBGP decodes it
    f"announce evpn mac {_RD} {_MAC} label 100 next-hop {_V6} {_RT}",
    f"announce evpn multicast {_RD} ip {_V6} label 100 next-hop {_V6} {_RT}",
    f"announce evpn multicast {_RD} ip 192.0.2.21 label 100 next-hop 192.0.2.21 {_RT}",
)
_PEERS = tuple(  # as Neighbor.name() spells them
    f"neighbor {ip} local-ip 192.0.2.21 local-as 65000 peer-as 65000 router-id 192.0.2.21"
    " family-allowed in-open"
    for ip in ("192.0.2.1", "192.0.2.2")
)

Build = Callable[[str], Any]  # an API line -> the Change the launcher queues for it


class SelfTestFailed(Exception):
    """One check of the self-test failed; the message says what was seen."""


class _Peers:
    """The one reactor method select_peers calls."""

    def peers(self, service: str) -> list[str]:
        return list(_PEERS)


def _check_internals(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    found, problems = {}, []
    for name, internal in INTERNALS.items():
        try:
            found[name] = internal.resolve()
        except Exception as exc:
            problems.append(f"{name} ({internal.where}: {type(exc).__name__})")
    if problems:
        raise SelfTestFailed(f"missing {', '.join(problems)}")
    if not inspect.isgeneratorfunction(found["Processes"].received):
        # read_commands_fully yields from it
        raise SelfTestFailed("Processes.received is not a generator function")
    for name in ("answer_done", "answer_error"):
        if inspect.iscoroutinefunction(found[name]):
            # called without an await it would do nothing: no ack, ever
            raise SelfTestFailed(f"Processes.{name} is a coroutine function")


def _dispatched_to(functions: Sequence[str], line: str) -> str | None:
    # ExaBGP 5.0.15's rule (reactor/api/__init__.py, API.response): first match wins.
    for registered in functions:
        if registered == line or line.endswith(" " + registered) or registered + " " in line:
            return registered
    return None


def _check_registry(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    command = exa.Command
    for name in names:
        if command.callback["text"].get(name) is not handler or name not in command.functions:
            raise SelfTestFailed(f"{name!r} is not registered to the launcher's handler")
    lines = (
        SAMPLE_ANNOUNCE,
        SAMPLE_WITHDRAW,
        f"neighbor 192.0.2.2 {SAMPLE_WITHDRAW}",
        *SAMPLE_ROUTES,
    )
    for line in lines:
        target = _dispatched_to(command.functions, line)
        if target not in names:
            raise SelfTestFailed(f"ExaBGP would hand {line!r} to {target!r}")
    # batch lines skip ExaBGP's search, straight to the handler; nothing else does
    if exa.API.__dict__.get("process") is not _process:
        raise SelfTestFailed("API.process does not send batch lines to their handler directly")
    if direct_handler(f"{BATCH} []") is not handler or direct_handler(SAMPLE_ANNOUNCE):
        raise SelfTestFailed("batch lines do not reach the launcher's handler directly")


def _check_peers(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    reactor = _Peers()
    cases = {
        SAMPLE_WITHDRAW: (list(_PEERS), SAMPLE_WITHDRAW),
        f"neighbor 192.0.2.2 {SAMPLE_WITHDRAW}": ([_PEERS[1]], SAMPLE_WITHDRAW),
        f"neighbor 192.0.2.9 {SAMPLE_WITHDRAW}": ([], SAMPLE_WITHDRAW),
    }
    for line, expected in cases.items():
        got = select_peers(reactor, "agent", line)
        if got != expected:
            peers = [" ".join(name.split()[:2]) for name in got[0]]
            raise SelfTestFailed(f"{line[:40]!r}... selects {peers} and {got[1][:40]!r}...")


def _check_queue(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    outgoing = exa.OutgoingRIB(True, [evpn_family()])
    announce = exa.Action.ANNOUNCE
    # one send cycle each: what the peer is sent
    steps: list[tuple[str, tuple[str, ...], list[str]]] = [
        ("an announce then a withdraw", (SAMPLE_ANNOUNCE, SAMPLE_WITHDRAW), ["withdraw"]),
        ("an announce", (SAMPLE_ANNOUNCE,), ["announce"]),
        ("the same announce again", (SAMPLE_ANNOUNCE,), []),
    ]
    for what, lines, expected in steps:
        for line in lines:
            queue(outgoing, build(line))
        sent = [
            "announce" if nlri.action == announce else "withdraw"
            for update in outgoing.updates(False)
            for nlri in update.nlris
        ]
        if sent != expected:
            raise SelfTestFailed(f"after {what}, ExaBGP sends {sent}, expected {expected}")


def _check_ipv6(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    negotiated = exa.Negotiated(exa.Neighbor())
    negotiated.families = [evpn_family()]
    negotiated.asn4 = True
    for line in SAMPLE_ROUTES:
        change = build(line)
        [message] = list(exa.Update([change.nlri], change.attributes).messages(negotiated))
        update = exa.Update.unpack_message(bytes(message)[19:], exa.Direction.IN, negotiated)
        [nlri] = update.nlris
        next_hop = line.split("next-hop ")[1].split()[0]
        if str(nlri.nexthop) != next_hop:
            raise SelfTestFailed(f"next hop {next_hop} decodes as {nlri.nexthop}")
        if " multicast " in line:
            pmsi = [a for a in update.attributes.values() if isinstance(a, exa.PMSI)]
            expected = f"pmsi:ingressreplication:0:6(100):{next_hop}"
            if [repr(p) for p in pmsi] != [expected]:
                raise SelfTestFailed(f"PMSI decodes as {pmsi!r}, expected {expected}")


def _check_json(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    if not _exabgp_raw:
        raise SelfTestFailed("EVPN._raw was never replaced")
    [original] = _exabgp_raw
    for line in SAMPLE_ROUTES:
        nlri = build(line).nlri
        if type(nlri)._raw is not _fast_raw:
            raise SelfTestFailed(f"{type(nlri).__name__}._raw is not the replacement")
        if nlri._raw() != original(nlri):
            raise SelfTestFailed(f"{nlri._raw()} differs from ExaBGP's {original(nlri)}")


class _Api(dict[str, Any]):
    """A neighbor's api table: our process wants parsed updates, nothing else."""

    def __missing__(self, key: str) -> Any:
        return {"receive-update": ["agent"], "receive-parsed": True}.get(key, False)


class _Processes:
    """ExaBGP's Processes as read_message uses them: the lines written, and the agent's
    pipe (``_process``, as ExaBGP keeps it) with ``queued`` bytes the core has not read."""

    silence = False

    def __init__(self, queued: int = 0) -> None:
        self.lines: list[str] = []
        read, write = os.pipe()
        self._pipe = os.fdopen(read, "rb"), os.fdopen(write, "wb")
        os.set_blocking(write, False)
        os.write(write, bytes(queued))
        self._process = {"agent": _Stand(stdin=self._pipe[1])}

    def close(self) -> None:
        for end in self._pipe:
            end.close()

    def write(self, process: str, line: str, neighbor: Any = None) -> bool:
        self.lines.append(line)
        return True

    def message(self, *args: Any) -> None:
        self.lines.append("parsed")


class _Connection:
    def __init__(self, body: bytes, io: socket.socket | None = None) -> None:
        self.body = body
        self.io = io  # what else is queued on the session's socket
        self.msg_size = 4096

    def reader(self) -> Iterator[tuple[int, int, bytes, bytes, None]]:
        yield 0, 0, b"", b"", None  # nothing arrived yet
        yield 19 + len(self.body), 2, b"\xff" * 16, self.body, None

    def session(self) -> str:
        return "self-test"


class _Protocol:
    """What ExaBGP's read_message uses of its Protocol, with one UPDATE to read."""

    log_routes = False

    def __init__(self, body: bytes, io: socket.socket | None = None, queued: int = 0) -> None:
        class Neighbor(dict[str, Any]):
            api = _Api()

        self.neighbor = Neighbor({"peer-address": "192.0.2.1", "adj-rib-in": False})
        self.processes = _Processes(queued)
        reactor = type("Reactor", (), {"processes": self.processes, "_peers": {}})()
        receive = type("ReceiveTimer", (), {"holdtime": 90})()
        self.peer = type(
            "Peer",
            (),
            {
                "neighbor": self.neighbor,
                "reactor": reactor,
                "recv_timer": receive,
                "fsm": exa.FSM.ESTABLISHED,
            },
        )()
        self.peer.stats = dict.fromkeys(("receive-update",), 0)
        self.connection = _Connection(body, io)
        negotiated = exa.Negotiated(exa.Neighbor())
        negotiated.families = [evpn_family()]
        negotiated.asn4 = True
        self.negotiated = negotiated

    def read(self) -> list[Any]:
        try:
            return list(exa.Protocol.read_message(self))
        finally:
            self.processes.close()


def _check_wire_receive(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    if not wire_receive_wanted():
        return  # turned off: ExaBGP reads every message itself
    if exa.Protocol.__dict__.get("read_message") is not _read_message or not _exabgp_read_message:
        raise SelfTestFailed("Protocol.read_message is not the replacement")
    negotiated = _Protocol(b"").negotiated
    change = build(SAMPLE_ANNOUNCE)
    [message] = list(exa.Update([change.nlri], change.attributes).messages(negotiated))
    body = bytes(message)[19:]
    good = _Protocol(body)
    read = good.read()
    if read != [exa.protocol_NOP, exa.protocol_UPDATE] or good.peer.stats["receive-update"] != 1:
        raise SelfTestFailed(f"an EVPN UPDATE read as {read!r}")
    [line] = good.processes.lines
    if line.split()[:2] != ["wire-update", "192.0.2.1"] or line.split()[3] != body.hex():
        raise SelfTestFailed(f"an EVPN UPDATE reached the API as {line[:60]!r}...")
    _check_batch(body)
    # a MAC length of 47 bits: ExaBGP's own decoder answers, with its NOTIFICATION 3/5
    mac = body.index(b"\x30" + bytes.fromhex(_MAC.split()[1].replace(":", "")))
    bad = _Protocol(body[:mac] + b"\x2f" + body[mac + 1 :])
    try:
        read = bad.read()
    except exa.Notify as exc:
        if (exc.code, exc.subcode) != (3, 5) or bad.processes.lines:
            raise SelfTestFailed(f"a bad MAC length gave {exc} and {bad.processes.lines}") from None
    else:
        raise SelfTestFailed(f"a bad MAC length read as {read!r}, not a NOTIFICATION")


def _events_of(line: str) -> list[Any]:
    """The events a ``wire-events`` line carries (as the core reads them)."""
    fields = line.split()
    return one_per_route(decode_events(fields[3].encode(), fields[1])) if len(fields) == 4 else []


def _decoded(body: bytes) -> list[Any]:
    return one_per_route(decode_update(body, "192.0.2.1"))


def _check_batch(body: bytes) -> None:
    """UPDATEs queued behind the first go in its line: as records while the core is behind
    (a burst: decoded here), as their bytes while it keeps up; what follows them stays
    queued."""
    _check_batch_as(body, behind=True)
    _check_batch_as(body, behind=False)


def _check_batch_as(body: bytes, behind: bool) -> None:
    header = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02"
    keepalive = b"\xff" * 16 + b"\x00\x13\x04"
    count = 8  # any number of UPDATEs: queued behind the first, they all share its line
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall((header + body) * (count - 1) + keepalive)
        ours.setblocking(False)
        batch = _Protocol(body, ours, queued=BEHIND if behind else 0)
        read = batch.read()
        lines = batch.processes.lines
        if read[-1] is not exa.protocol_UPDATE or batch.peer.stats["receive-update"] != count:
            raise SelfTestFailed(f"{count} queued UPDATEs read as {read!r}, {lines!r}")
        if len(lines) != 1:
            raise SelfTestFailed(f"{count} queued UPDATEs reached the API as {len(lines)} lines")
        if behind and _events_of(lines[0]) != _decoded(body) * count:
            raise SelfTestFailed(f"{count} UPDATEs for a core behind gave {lines[0][:60]!r}...")
        if not behind and lines[0].split()[3:] != [body.hex()] * count:
            raise SelfTestFailed(f"{count} UPDATEs for a core keeping up gave {lines[0][:60]!r}...")
        left = ours.recv(100)
        if left != keepalive:
            raise SelfTestFailed(f"after the UPDATEs the socket held {left.hex()}, not a KEEPALIVE")


class _Stand:
    """An object with the attributes given: stands in for the reactor's parts."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class _IdleNeighbor(_Stand):
    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]


def _idle_reactor(now: float, **peer_state: Any) -> tuple[Any, Any, Any]:
    """A reactor with one session, established and quiet; its KA and ReceiveTimer are
    ExaBGP's own (the KA's SendTimer is known through the patched KA)."""
    hold = exa.HoldTime(90)
    proto = _Stand(negotiated=_Stand(holdtime=hold))
    keepalive = exa.KA(lambda: "self-test", proto)
    receive = exa.ReceiveTimer(lambda: "self-test", hold, 4, 0)
    outgoing = exa.OutgoingRIB(True, [evpn_family()])
    neighbor = _IdleNeighbor(
        messages=[], refresh=[], eor=[], rib=_Stand(outgoing=outgoing), **{"rate-limit": 0}
    )
    state = {
        "fsm": exa.FSM.ESTABLISHED,
        "proto": proto,
        "_teardown": None,
        "recv_timer": receive,
        **peer_state,
    }
    peer = _Stand(neighbor=neighbor, **state)
    reactor = _Stand(
        _peers={"peer": peer},
        asynchronous=_Stand(ready=lambda: True),
        signal=_Stand(received=0),
        _stopping=False,
    )
    return reactor, keepalive, outgoing


def _check_idle(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    reactor_class = exa.Reactor
    if not getattr(reactor_class._wait_for_io, "evpn_agent_idle", False):
        raise SelfTestFailed("Reactor._wait_for_io was never replaced")
    if "_wait_for_io" not in reactor_class.run.__code__.co_names:
        raise SelfTestFailed("Reactor.run no longer waits through _wait_for_io")
    # what idle_timeout reads of the real objects (the checks below use stand-ins)
    for cls, attributes in (
        (reactor_class, ("_peers", "asynchronous", "signal", "_stopping", "_poller", "listener")),
        (exa.Peer, ("fsm", "proto", "_teardown", "recv_timer", "neighbor")),
    ):
        missing = set(attributes) - set(cls.__init__.__code__.co_names)
        if missing:
            raise SelfTestFailed(f"{cls.__name__} no longer sets {', '.join(sorted(missing))}")
    now = float(int(time.time()))  # ExaBGP's timers count whole seconds
    reactor, keepalive, outgoing = _idle_reactor(now)
    send_timer = keepalive.send_timer
    # The timers read the clock when built, a second or two after ``now`` on a loaded
    # machine (a core start under load refused ExaBGP: "sleeps 32.0 s"): pinned to it.
    send_timer.last_sent = reactor._peers["peer"].recv_timer.last_read = int(now)
    if id(_send_timers.get(reactor._peers["peer"].proto)) != id(send_timer):
        raise SelfTestFailed("a new KA's SendTimer is not seen by the idle sleep")
    wait = idle_timeout(reactor, now)
    if wait is None or not 29 <= wait <= 31:  # keepalive every 90/3 s, within 1 s
        raise SelfTestFailed(f"an idle session sleeps {wait} s, expected its 30 s keepalive")
    send_timer.last_sent -= 29
    wait = idle_timeout(reactor, now)
    if wait is None or wait > 2:
        raise SelfTestFailed(f"a keepalive due in 1 s sleeps {wait} s")
    queue(outgoing, build(SAMPLE_ANNOUNCE))
    if idle_timeout(reactor, now) is not None:
        raise SelfTestFailed("a route waiting to be sent does not keep the reactor awake")
    short = exa.SendTimer(lambda: "self-test", exa.HoldTime(3))  # keepalive every second
    for _ in range(3):  # need_ka reads the clock: a second that ends midway moves "due in"
        second = int(time.time())
        send_timer.last_sent = second - 28  # due in 2 s: not yet
        early = send_timer.need_ka()
        send_timer.last_sent -= 1  # due in 1 s: goes with this wake-up
        once = send_timer.need_ka() and not send_timer.need_ka()
        short.last_sent = second
        short_early = short.need_ka()
        if int(time.time()) == second:
            break
    if early:
        raise SelfTestFailed("a keepalive due in 2 s is sent already")
    if not once:
        raise SelfTestFailed("a keepalive due in 1 s is not sent once, now")
    if short_early:
        raise SelfTestFailed("1 s keepalives are sent early (more than one a second)")
    connecting, _, _ = _idle_reactor(now, fsm=exa.FSM.CONNECT)
    if idle_timeout(connecting, now) is not None:
        raise SelfTestFailed("a session being set up does not keep ExaBGP's short sleep")


# ---------------------------------------------------------------- advert fast path


class _ProbeHooks(AdvertHooks):
    """Stands in for the launcher's table while the check drives ExaBGP's peer code."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = messages
        self.calls: list[str] = []

    def has_work(self, outgoing: Any) -> bool:
        return bool(self.messages)

    def session_up(self, outgoing: Any) -> None:
        self.calls.append("session up")

    def take(self, outgoing: Any, max_size: int) -> tuple[bool, list[bytes]]:
        self.calls.append(f"take {max_size}")
        messages, self.messages = self.messages, []
        return True, messages

    def resend(self, outgoing: Any, enhanced: bool) -> bool:
        self.calls.append(f"resend {enhanced}")
        return True


class _Session:
    """What Protocol.new_update and Peer.resend use of a session and its peer."""

    def __init__(self, outgoing: Any, negotiated: Any) -> None:
        self.sent: list[bytes] = []
        self.negotiated = negotiated
        rib = type("Rib", (), {"outgoing": outgoing})()
        self.neighbor = _Neighbor(rib)
        self._delay = type("Delay", (), {"reset": lambda self: None})()

    def send(self, raw: bytes) -> Iterator[bool]:
        self.sent.append(bytes(raw))
        yield True

    def write(self, message: Any, negotiated: Any = None) -> Iterator[bool]:
        self.sent.append(bytes(message.message(negotiated)))
        yield True


class _Neighbor(dict[str, Any]):
    def __init__(self, rib: Any) -> None:
        super().__init__({"group-updates": True})
        self.rib = rib


def _check_advert_path(names: Sequence[str], handler: Callable[..., bool], build: Build) -> None:
    if not _advert_originals or exa.Protocol.new_update is _advert_originals["new_update"]:
        raise SelfTestFailed("Protocol.new_update is not wrapped")
    family = evpn_family()
    negotiated = exa.Negotiated(exa.Neighbor())
    negotiated.families = [family]
    negotiated.asn4 = True
    rd, rt = RouteDistinguisher.parse("192.0.2.21:1"), (RouteTarget.parse("65000:100"),)
    macs = [f"02:00:5e:00:{i // 256:02x}:{i % 256:02x}" for i in range(200)]
    changes = [AdvertChange(MacAdvert(rd, 100, mac, None, "192.0.2.21", rt)) for mac in macs]
    messages = wire_encode.encode_changes(changes, negotiated.msg_size).messages
    probe = _ProbeHooks(messages)
    outgoing = exa.OutgoingRIB(True, [family])
    session = _Session(outgoing, negotiated)
    saved, _advert_hooks[0] = _advert_hooks[0], probe
    try:
        outgoing.replace_restart([], [])
        if not outgoing.pending():
            raise SelfTestFailed("OutgoingRIB.pending does not see our routes")
        for _ in exa.Protocol.new_update(session, False):
            pass
        exa.Peer.resend(session, True, family)
    finally:
        _advert_hooks[0] = saved
    expected = ["session up", f"take {negotiated.msg_size}", "resend True"]
    if probe.calls != expected:
        raise SelfTestFailed(f"the hooks saw {probe.calls}, expected {expected}")
    if outgoing.pending():
        raise SelfTestFailed("ExaBGP's own refresh of l2vpn evpn was kept enhanced")
    borr, *updates, eorr = session.sent
    if updates != messages or borr[18] != 5 or eorr[18] != 5 or borr[21:] == eorr[21:]:
        raise SelfTestFailed(f"new_update sent {len(session.sent)} messages, not ours in BoRR/EoRR")
    seen = []
    for raw in updates:
        update = exa.Update.unpack_message(raw[19:], exa.Direction.IN, negotiated)
        seen += [str(nlri.mac).lower() for nlri in update.nlris]
    if seen != macs:
        raise SelfTestFailed(f"our UPDATEs decode in ExaBGP as {len(seen)} other routes")


CHECKS: tuple[tuple[str, Callable[[Sequence[str], Callable[..., bool], Build], None]], ...] = (
    ("internals", _check_internals),
    ("command registry", _check_registry),
    ("neighbor selection", _check_peers),
    ("adj-rib-out queue", _check_queue),
    ("IPv6 underlay", _check_ipv6),
    ("JSON raw NLRI", _check_json),
    ("idle sleep", _check_idle),
    ("advert fast path", _check_advert_path),
    ("receive fast path", _check_wire_receive),
)


class _Discard:
    """Stands in for ExaBGP's logger before its main sets it up (nothing is logged:
    before then ExaBGP's log levels are all off)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def _exabgp_logger() -> Iterator[None]:
    try:
        option = exa.log_option
    except Exception:  # the internals check says so
        option = None
    if option is None or option.logger is not None:
        yield
        return
    option.logger = _Discard()
    try:
        yield
    finally:
        option.logger = None


def self_test(
    names: Sequence[str],
    handler: Callable[..., bool],
    build: Build,
    only: Sequence[str] | None = None,
) -> None:
    """Check, in this process, that the patches hold: CompatError (one line) if not.

    Run after :func:`patch` and before ExaBGP's main. It reads ExaBGP's environment
    (building path attributes does), so the launcher sets that up first.
    """
    for name, check in CHECKS:
        if only is not None and name not in only:
            continue
        try:
            with _exabgp_logger():
                check(names, handler, build)
        except Exception as exc:
            detail = str(exc) if isinstance(exc, SelfTestFailed) else _one_line(exc)
            raise CompatError(
                f"ExaBGP {_version_text()} fails the launcher's self-test ({name}:"
                f" {_one_line(detail)}); not starting it. Fix: {_fix()}"
            ) from None


def check_internals(names: Sequence[str], handler: Callable[..., bool]) -> None:
    """Only that every internal is there: before patching, so a changed ExaBGP is reported
    whole rather than by the first patch that fails."""
    self_test(names, handler, lambda line: None, only=("internals",))
