"""Text commands the agent core writes to ExaBGP for EVPN routes, and their parser.

Pure module (no ExaBGP import) so both sides share one definition: the agent builds
values and calls :func:`render`; the launcher's handler calls :func:`parse`.

Grammar (one command per line, tokens separated by spaces)::

    announce evpn batch BASE64    (many announces and withdraws, see render_batch)

    announce evpn mac rd RD mac MAC [ip IP] label VNI next-hop IP rt RT [rt RT ...]
                                                            [mobility SEQ [sticky]]
    withdraw evpn mac rd RD mac MAC [ip IP] label VNI next-hop IP
    announce evpn multicast rd RD ip IP label VNI next-hop IP rt RT [rt RT ...]
    withdraw evpn multicast rd RD ip IP label VNI next-hop IP

The ethernet tag is always 0 and the ESI always zero (single-homed VTEPs). ``label`` is
the VNI, carried as a raw 24-bit value (RFC 8365). A withdraw repeats the announce's
label because ExaBGP's adj-rib-out index includes it.

ExaBGP dispatches API lines by substring (``registered + ' '`` anywhere in the line), so
every keyword and value here was checked against its command registry: none contains a
registered command name (``help``, ``reset``, ``version``, ``#``, ...).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import functools
import ipaddress
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from evpn_agent.model import (
    MAX_VNI,
    AdvertChange,
    ImetAdvert,
    MacAdvert,
    RouteDistinguisher,
    RouteTarget,
    build,
    parse_mac,
)
from evpn_agent.model.bgp import parse_number

__all__ = [
    "Action",
    "Command",
    "GrammarError",
    "IPAddress",
    "MacMobility",
    "MacRoute",
    "MacWithdraws",
    "MulticastRoute",
    "RouteDistinguisher",
    "RouteTarget",
    "parse",
    "parse_batch",
    "parse_batch_items",
    "render",
    "render_batch",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_LABEL = MAX_VNI  # the label is the VNI, a raw 24-bit value
MAX_U32 = (1 << 32) - 1

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


# Bracket a core's full re-announcement; the launcher then withdraws what was not repeated.
SYNC_BEGIN = "announce evpn sync begin"
SYNC_END = "announce evpn sync end"
# Many adverts in one line: this prefix, a space, then JSON without spaces (render_batch).
BATCH = "announce evpn batch"


class GrammarError(ValueError):
    """A command or value that does not follow the grammar; the message says why."""


class Action(enum.StrEnum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


def _number(text: str, what: str, maximum: int) -> int:
    try:
        return parse_number(text, what, maximum)
    except ValueError as exc:
        raise GrammarError(str(exc)) from None


@functools.lru_cache(maxsize=4096)  # next hops and RDs repeat: parsing them is the hot path
def _ip(text: str, what: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise GrammarError(f"{what} must be an IPv4 or IPv6 address, got {text!r}") from None
    _check_unicast(address, what)
    return address


def _check_unicast(address: object, what: str) -> None:
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise GrammarError(f"{what} must be an IPv4Address or IPv6Address, got {address!r}")
    if address.is_unspecified or address.is_multicast:
        raise GrammarError(f"{what} must be a unicast address, got {address}")
    if address == _BROADCAST:
        raise GrammarError(f"{what} must be a unicast address, got {address}")


@dataclass(frozen=True, slots=True)
class MacMobility:
    """RFC 7432 section 7.7 MAC Mobility extended community."""

    sequence: int
    sticky: bool = False

    def __post_init__(self) -> None:
        seq = self.sequence
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_U32:
            raise GrammarError(f"mobility sequence must be 0..{MAX_U32}, got {seq!r}")


def _check_label(label: object) -> None:
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= MAX_LABEL:
        raise GrammarError(f"label (VNI) must be 0..{MAX_LABEL}, got {label!r}")


def _check_common(route: MacRoute | MulticastRoute) -> None:
    if not isinstance(route.action, Action):
        raise GrammarError(f"action must be an Action, got {route.action!r}")
    if not isinstance(route.rd, RouteDistinguisher):
        raise GrammarError(f"rd must be a RouteDistinguisher, got {route.rd!r}")
    _check_label(route.label)
    _check_unicast(route.next_hop, "next-hop")
    if not isinstance(route.route_targets, tuple) or not all(
        isinstance(rt, RouteTarget) for rt in route.route_targets
    ):
        raise GrammarError("route_targets must be a tuple of RouteTarget")
    if route.action is Action.ANNOUNCE and not route.route_targets:
        # FRR imports EVPN routes by RT only: without one the route is silently unused.
        raise GrammarError("announce needs at least one rt")
    if route.action is Action.WITHDRAW and route.route_targets:
        raise GrammarError("withdraw carries no attributes: drop rt")


def normalize_mac(text: str) -> str:
    """Validate a unicast MAC and return it lower-case, e.g. ``02:00:5e:00:01:01``."""
    try:
        return parse_mac(text)
    except ValueError as exc:
        raise GrammarError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class MacRoute:
    """EVPN type 2, MAC/IP advertisement. ``next_hop`` is the VTEP traffic goes to."""

    action: Action
    rd: RouteDistinguisher
    mac: str
    label: int
    next_hop: IPAddress
    ip: IPAddress | None = None
    route_targets: tuple[RouteTarget, ...] = ()
    mobility: MacMobility | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", normalize_mac(self.mac))
        _check_common(self)
        if self.ip is not None:
            _check_unicast(self.ip, "ip")
        if self.mobility is not None:
            if not isinstance(self.mobility, MacMobility):
                raise GrammarError(f"mobility must be a MacMobility, got {self.mobility!r}")
            if self.action is Action.WITHDRAW:
                raise GrammarError("withdraw carries no attributes: drop mobility")

    def withdrawal(self) -> MacRoute:
        """The withdraw for this route: same key and label, no attributes."""
        return dataclasses.replace(self, action=Action.WITHDRAW, route_targets=(), mobility=None)


@dataclass(frozen=True, slots=True)
class MulticastRoute:
    """EVPN type 3, inclusive multicast ethernet tag (ingress replication).

    ``ip`` is the originating router's IP: FRR floods BUM traffic for the VNI to it.
    """

    action: Action
    rd: RouteDistinguisher
    ip: IPAddress
    label: int
    next_hop: IPAddress
    route_targets: tuple[RouteTarget, ...] = ()

    def __post_init__(self) -> None:
        _check_unicast(self.ip, "ip")
        _check_common(self)

    def withdrawal(self) -> MulticastRoute:
        """The withdraw for this route: same key and label, no attributes."""
        return dataclasses.replace(self, action=Action.WITHDRAW, route_targets=())


Command = MacRoute | MulticastRoute


def _parse_rd(text: str) -> RouteDistinguisher:
    try:
        return RouteDistinguisher.parse(text)
    except ValueError as exc:
        raise GrammarError(str(exc)) from None


def _parse_rt(text: str) -> RouteTarget:
    try:
        return RouteTarget.parse(text)
    except ValueError as exc:
        raise GrammarError(str(exc)) from None


def render(cmd: Command) -> str:
    """The ExaBGP API line for ``cmd`` (without the trailing newline)."""
    if isinstance(cmd, MacRoute):
        words = [cmd.action.value, "evpn", "mac", "rd", str(cmd.rd), "mac", cmd.mac]
        if cmd.ip is not None:
            words += ["ip", str(cmd.ip)]
    elif isinstance(cmd, MulticastRoute):
        words = [cmd.action.value, "evpn", "multicast", "rd", str(cmd.rd), "ip", str(cmd.ip)]
    else:
        raise TypeError(f"not an EVPN command: {cmd!r}")
    words += ["label", str(cmd.label), "next-hop", str(cmd.next_hop)]
    for rt in cmd.route_targets:
        words += ["rt", str(rt)]
    if isinstance(cmd, MacRoute) and cmd.mobility is not None:
        words += ["mobility", str(cmd.mobility.sequence)]
        if cmd.mobility.sticky:
            words.append("sticky")
    return " ".join(words)


_KEYWORDS = {
    "mac": frozenset({"rd", "mac", "ip", "label", "next-hop", "rt", "mobility"}),
    "multicast": frozenset({"rd", "ip", "label", "next-hop", "rt"}),
}
_REQUIRED = {
    "mac": ("rd", "mac", "label", "next-hop"),
    "multicast": ("rd", "ip", "label", "next-hop"),
}


def _pairs(tokens: Sequence[str], allowed: frozenset[str]) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(tokens):
        keyword = tokens[position]
        if keyword == "sticky":
            yield keyword, ""
            position += 1
            continue
        if keyword not in allowed:
            raise GrammarError(f"unknown keyword {keyword!r} (expected one of {sorted(allowed)})")
        if position + 1 >= len(tokens):
            raise GrammarError(f"{keyword} needs a value")
        yield keyword, tokens[position + 1]
        position += 2


def parse(line: str) -> Command:
    """Parse one command line into a route value; raise GrammarError saying why not."""
    tokens = line.split()
    if len(tokens) < 3:
        raise GrammarError(f"expected 'announce|withdraw evpn mac|multicast ...', got {line!r}")
    action_word, family, kind = tokens[:3]
    try:
        action = Action(action_word)
    except ValueError:
        raise GrammarError(f"action must be announce or withdraw, got {action_word!r}") from None
    if family != "evpn":
        raise GrammarError(f"expected 'evpn' after {action_word}, got {family!r}")
    if kind not in _KEYWORDS:
        raise GrammarError(f"route type must be mac or multicast, got {kind!r}")

    values: dict[str, str] = {}
    rts: list[RouteTarget] = []
    sticky = False
    previous = ""
    for keyword, value in _pairs(tokens[3:], _KEYWORDS[kind]):
        if keyword == "sticky":
            if previous != "mobility" or sticky:
                raise GrammarError("sticky may only follow 'mobility SEQ'")
            sticky = True
        elif keyword == "rt":
            rts.append(_parse_rt(value))
        elif keyword in values:
            raise GrammarError(f"{keyword} given twice")
        else:
            values[keyword] = value
        previous = keyword
    missing = [keyword for keyword in _REQUIRED[kind] if keyword not in values]
    if missing:
        raise GrammarError(f"{kind} route is missing: {', '.join(missing)}")

    rd = _parse_rd(values["rd"])
    label = _number(values["label"], "label (VNI)", MAX_LABEL)
    next_hop = _ip(values["next-hop"], "next-hop")
    if kind == "multicast":
        return MulticastRoute(
            action, rd, _ip(values["ip"], "ip"), label, next_hop, route_targets=tuple(rts)
        )
    ip = _ip(values["ip"], "ip") if "ip" in values else None
    mobility = None
    if "mobility" in values:
        mobility = MacMobility(_number(values["mobility"], "mobility sequence", MAX_U32), sticky)
    return MacRoute(
        action,
        rd,
        values["mac"],
        label,
        next_hop,
        ip=ip,
        route_targets=tuple(rts),
        mobility=mobility,
    )


# ---------------------------------------------------------------- batches
# One line carries many changes, as compact JSON (one C call to parse, no per-route
# tokenising), base64-encoded: ExaBGP "formats" every line it reads from its API process
# (spaces around every bracket and comma, then double spaces squeezed out, pass after
# pass), which doubled the JSON and took a fifth of ExaBGP's time in a burst; base64 holds
# none of those characters, and no space, so ExaBGP's dispatch sees only the prefix. The
# parser takes plain JSON too (the payload then starts with "["), for people and tests.
# Entries are lists:
#   type 3:  [withdraw, rd, vni, vtep, [rt, ...]]
#   type 2:  [withdraw, rd, vni, vtep, [rt, ...], mac, ip or null, mobility seq, sticky]
#   type 2s: [withdraw, rd, vni, vtep, [rt, ...], mobility seq, sticky, [mac, ip or null, ...]]
# withdraw and sticky are 0 or 1; a withdraw's route targets are []. The third kind is what
# the agent writes: the MACs of a batch that share everything but MAC and IP (a VNI's new
# hosts) spell RD, VTEP and RTs once, which halves the JSON to write and to parse.


def render_batch(changes: Sequence[AdvertChange]) -> str:
    """One ``announce evpn batch`` line for ``changes`` (without the trailing newline)."""
    entries: list[list[object]] = []
    # Spelled once per RD and RT tuple of the batch, not per change: a batch holds few
    # (one per VNI). Keyed by identity (hashing an RD is slower than spelling it); the
    # changes keep every key's object alive for the whole call.
    rd_texts: dict[int, str] = {}
    rt_texts: dict[int, list[str]] = {}
    no_rts: list[str] = []  # a withdraw's
    # Changes are grouped wherever they are in the batch (a round's adverts come in no
    # particular order), but a route's changes must stay in order: a route met again
    # closes every group so far, and what follows goes into new entries after them.
    groups: dict[tuple[object, ...], list[str | None]] = {}
    routes: set[tuple[str, str, str | None]] = set()
    for change in changes:
        advert = change.advert
        withdraw = change.withdraw
        rd = rd_texts.get(id(advert.rd))
        if rd is None:
            rd = rd_texts[id(advert.rd)] = str(advert.rd)
        rts = no_rts if withdraw else rt_texts.get(id(advert.rts))
        if rts is None:
            rts = rt_texts[id(advert.rts)] = [str(rt) for rt in advert.rts]
        if not isinstance(advert, MacAdvert):
            entries.append([int(withdraw), rd, advert.vni, advert.vtep, rts])
            continue
        route = (rd, advert.mac, advert.ip)
        if route in routes:
            groups.clear()
            routes.clear()
        routes.add(route)
        key = (withdraw, rd, advert.vni, advert.vtep, id(rts), advert.seq, advert.sticky)
        macs = groups.get(key)
        if macs is not None:
            macs += route[1:]
        else:
            macs = groups[key] = [advert.mac, advert.ip]
            entries.append([int(withdraw), rd, advert.vni, advert.vtep, rts, advert.seq,
                            int(advert.sticky), macs])  # fmt: skip
    payload = json.dumps(entries, separators=(",", ":")).encode()
    return f"{BATCH} {base64.b64encode(payload).decode('ascii')}"


@functools.lru_cache(maxsize=4096)
def _batch_rd(text: str) -> RouteDistinguisher:
    return RouteDistinguisher.parse(text)


@functools.lru_cache(maxsize=4096)
def _batch_rts(texts: tuple[str, ...]) -> tuple[RouteTarget, ...]:
    # checked here, once per distinct list, rather than on every entry
    if not all(isinstance(text, str) for text in texts):
        raise GrammarError("route targets must be strings")
    return tuple(RouteTarget.parse(text) for text in texts)


class MacWithdraws(NamedTuple):
    """The withdraws of a type 2s entry, as they came: MAC, IP, MAC, IP... of one RD and
    VNI. A withdraw needs only its route (the launcher's table holds what was sent), so
    these are not made into adverts: ~40% of a withdraw's cost in the launcher."""

    rd: RouteDistinguisher
    vni: object  # checked with the MACs and IPs, by wire_encode.mac_routes
    vtep: object  # the rest as the entry spelled it (parse_batch's changes carry them)
    rts: tuple[RouteTarget, ...]
    seq: object
    sticky: bool
    macs: list[object]


def parse_batch(payload: str) -> tuple[list[AdvertChange], list[str]]:
    """The changes of a batch line's JSON, and why each entry that is not one was refused.

    Only the shape is checked here (types, RD and RT syntax); the values (MAC, VNI range,
    unicast addresses) are checked by the encoder's ``route_of``.
    """
    items, errors = parse_batch_items(payload)
    return [change for item in items for change in _changes(item)], errors


def _changes(item: AdvertChange | MacWithdraws) -> list[AdvertChange]:
    if isinstance(item, AdvertChange):
        return [item]
    return _mac_changes(*item, withdraw=True)


def _mac_changes(
    rd: RouteDistinguisher,
    vni: object,
    vtep: object,
    rts: tuple[RouteTarget, ...],
    seq: object,
    sticky: bool,
    macs: list[object],
    *,
    withdraw: bool,
) -> list[AdvertChange]:
    """One change per MAC, IP pair of a type 2s entry (a type 2 entry is one pair)."""
    return [
        build(
            AdvertChange,
            (build(MacAdvert, (rd, vni, mac, ip, vtep, rts, seq, sticky)), withdraw),
        )
        for mac, ip in zip(macs[::2], macs[1::2], strict=True)
    ]


def parse_batch_items(payload: str) -> tuple[list[AdvertChange | MacWithdraws], list[str]]:
    """:func:`parse_batch` with each type 2s entry of withdraws kept as one
    :class:`MacWithdraws`, in its place among the changes."""
    text = payload.strip()
    try:
        data = text if text.startswith("[") else base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error
        raise GrammarError(f"batch is neither a JSON list nor base64: {exc}") from None
    try:
        entries = json.loads(data)
    except ValueError as exc:
        raise GrammarError(f"batch is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise GrammarError("batch must be a JSON list")
    changes: list[AdvertChange | MacWithdraws] = []
    errors: list[str] = []
    for entry in entries:
        try:
            _batch_changes(entry, changes)
        except (GrammarError, ValueError, TypeError) as exc:
            errors.append(f"{entry!r}: {exc}")
    return changes, errors


def _batch_changes(entry: object, out: list[AdvertChange | MacWithdraws]) -> None:
    """Append the changes of one entry to ``out``: all of them, or none and raise."""
    if not isinstance(entry, list) or len(entry) not in (5, 8, 9):
        raise GrammarError("an entry is a list of 5 (type 3), 9 (type 2) or 8 (type 2s) values")
    withdraw, rd, vni, vtep, rts = entry[:5]
    if withdraw not in (0, 1) or not isinstance(rd, str) or not isinstance(rts, list):
        raise GrammarError("withdraw must be 0 or 1, rd a string, rts a list")
    try:
        rts_ = _batch_rts(tuple(rts))
    except TypeError:  # a list or an object among them (unhashable)
        raise GrammarError("route targets must be strings") from None
    rd_ = _batch_rd(rd)
    if len(entry) == 5:
        out.append(AdvertChange(ImetAdvert(rd_, vni, vtep, rts_), withdraw == 1))
        return
    if len(entry) == 9:
        mac, ip, seq, sticky = entry[5:]
        macs = [mac, ip]
    else:
        seq, sticky, macs = entry[5:]
        if not isinstance(macs, list) or len(macs) % 2:
            raise GrammarError("a group's MACs are a list of MAC, IP pairs")
    if sticky not in (0, 1):
        raise GrammarError("sticky must be 0 or 1")
    flag, sticky_ = withdraw == 1, sticky == 1
    if flag and len(entry) == 8:
        out.append(MacWithdraws(rd_, vni, vtep, rts_, seq, sticky_, macs))
        return
    out += _mac_changes(rd_, vni, vtep, rts_, seq, sticky_, macs, withdraw=flag)
