"""Decode ExaBGP's JSON lines (encoder json, receive parsed+update+refresh+open) into BGP
events, and its answer to ``show neighbor json`` into session reports.

UPDATEs reach this module only when the launcher's fast path leaves them to ExaBGP (its
gate, :mod:`wire_check`, refuses them: other route types, attributes it does not expect,
treat-as-withdraw); the others arrive as bytes and :mod:`wire_decode` reads them, with the
same events and reasons.

Every line is untrusted input: anything unexpected becomes a ``LineRejected`` or
``RouteRejected`` event with a short reason, never an exception.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from evpn_agent.model import (
    BadValue,
    BgpEvent,
    EndOfRib,
    ImetKey,
    ImetRoute,
    LineRejected,
    MacKey,
    MacRoute,
    PeerOpened,
    RefreshBegun,
    RouteAnnounced,
    RouteKey,
    RouteRejected,
    RoutesWithdrawn,
    RouteTarget,
    SessionDown,
    SessionReported,
    SessionUp,
    check_vni,
    describe_key,
    parse_mac,
    vtep_address,
)

EVPN_FAMILY = "l2vpn evpn"
_PMSI = re.compile(r"^pmsi:([a-z-]+):(\d+):(\d+)(?:\((\d+)\))?:(\S*)$")
# Capability codes in an OPEN, as ExaBGP keys them (IANA): RFC 4724 and RFC 7313.
GRACEFUL_RESTART = "64"
ENHANCED_ROUTE_REFRESH = "70"


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_line(line: str, router_id: str | None = None) -> list[BgpEvent]:
    """Events in one line from ExaBGP. Routes originated by ``router_id`` are dropped."""
    text = line.strip()
    if not text:
        return []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [LineRejected("malformed-json", f"{exc}: {text[:120]!r}")]
    if isinstance(doc, list):
        return _sessions_report(doc)
    if not isinstance(doc, dict):
        return [LineRejected("unexpected-json", f"not an object: {text[:120]!r}")]
    try:
        return _parse_message(doc, router_id)
    except Rejected as exc:
        return [LineRejected(exc.reason, exc.detail)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [LineRejected("unexpected-json", f"{type(exc).__name__}: {exc}")]


def _parse_message(doc: dict[str, Any], router_id: str | None) -> list[BgpEvent]:
    kind = doc.get("type")
    neighbor = doc.get("neighbor")
    if kind in ("notification", "signal") or not isinstance(neighbor, dict):
        return []
    peer = _str(neighbor["address"]["peer"])
    if kind == "state":
        state = neighbor.get("state")
        if state == "up":
            return [SessionUp(peer)]
        if state == "down":
            return [SessionDown(peer, str(neighbor.get("reason", "")))]
        return []
    if kind == "open":
        return _opened(peer, neighbor)
    if kind == "refresh":
        # Enhanced route refresh (RFC 7313): BoRR opens the refreshed table, EoRR closes it.
        refresh = neighbor.get("route-refresh")
        if (
            isinstance(refresh, dict)
            and f"{refresh.get('afi')} {refresh.get('safi')}" == EVPN_FAMILY
        ):
            if refresh.get("subtype") == "begin":
                return [RefreshBegun(peer)]
            if refresh.get("subtype") == "end":
                return [EndOfRib(peer, refresh=True)]
        return []
    if kind != "update":
        return []
    message = neighbor.get("message")
    if not isinstance(message, dict):
        return []
    eor = message.get("eor")
    if isinstance(eor, dict):
        if f"{eor.get('afi')} {eor.get('safi')}" == EVPN_FAMILY:
            return [EndOfRib(peer)]
        return []
    update = message.get("update")
    if not isinstance(update, dict):
        return []
    events: list[BgpEvent] = []
    withdraw = update.get("withdraw")
    if isinstance(withdraw, dict):
        # Reflected withdraws of our own routes carry no originator-id: our RD tells.
        own_rd = f"{router_id}:" if router_id else None
        keys: list[RouteKey] = []
        for nlri in _list(withdraw.get(EVPN_FAMILY, [])):
            if own_rd and isinstance(nlri, dict) and str(nlri.get("rd", "")).startswith(own_rd):
                continue
            try:
                keys.append(_key(nlri))
            except Rejected as exc:
                events.append(RouteRejected(peer, exc.reason, exc.detail))
        if keys:
            events.append(RoutesWithdrawn(peer, tuple(keys)))  # as the wire decoder gives
    announce = update.get("announce")
    if isinstance(announce, dict):
        by_nexthop = announce.get(EVPN_FAMILY)
        if isinstance(by_nexthop, dict):
            attrs = update.get("attribute")
            attrs = attrs if isinstance(attrs, dict) else {}
            if router_id is not None and attrs.get("originator-id") == router_id:
                return events  # the reflector sends every client its own routes back
            common = _Attributes(attrs)
            for nexthop, nlris in by_nexthop.items():
                for nlri in _list(nlris):
                    events.append(_announced(peer, str(nexthop), nlri, common))
    return events


def _opened(peer: str, neighbor: dict[str, Any]) -> list[BgpEvent]:
    """The peer's OPEN (``direction`` receive): which table markers it will send."""
    if neighbor.get("direction") != "receive":
        return []  # our own OPEN, should the configuration ask for it
    capabilities = neighbor["open"]["capabilities"]
    if not isinstance(capabilities, dict):
        raise Rejected("unexpected-json", f"OPEN capabilities: {capabilities!r}"[:120])
    return [
        PeerOpened(
            peer,
            graceful_restart=GRACEFUL_RESTART in capabilities,
            enhanced_refresh=ENHANCED_ROUTE_REFRESH in capabilities,
        )
    ]


def _sessions_report(doc: list[Any]) -> list[BgpEvent]:
    """ExaBGP's answer to ``show neighbor json``: one object per configured neighbor."""
    events: list[BgpEvent] = []
    for item in doc:
        try:
            peer = _str(item["peer"]["address"])
            # "state" says "down" during a session's first second (it tests the uptime)
            up = item.get("fsm") == "ESTABLISHED" or item["state"] == "up"
            duration = item.get("duration")
            uptime = float(duration) if isinstance(duration, int | float) else 0.0
            gr = item["peer"].get("capabilities", {}).get("graceful-restart")
            events.append(
                SessionReported(peer, up, max(uptime, 0.0), gr if isinstance(gr, bool) else None)
            )
        except (KeyError, TypeError, AttributeError, Rejected) as exc:
            events.append(LineRejected("unexpected-json", f"neighbor report: {exc!r}"[:160]))
    return events


class _Attributes:
    """The path attributes shared by every NLRI of one UPDATE, decoded once."""

    __slots__ = ("pmsi", "rts", "seq", "sticky")

    def __init__(self, attrs: dict[str, Any]) -> None:
        strings = [
            c.get("string", "")
            for c in _list(attrs.get("extended-community", []))
            if isinstance(c, dict)
        ]
        self.rts: tuple[RouteTarget, ...] = _route_targets(s for s in strings if isinstance(s, str))
        self.seq = 0
        self.sticky = False
        for s in strings:
            if isinstance(s, str) and s.startswith("mac-mobility:"):
                parts = s.split(":")
                if len(parts) >= 2 and parts[1].isdigit():
                    self.seq = int(parts[1])
                    self.sticky = "sticky" in parts[2:]
        pmsi = attrs.get("pmsi")
        self.pmsi = pmsi if isinstance(pmsi, str) else None


def _announced(peer: str, nexthop: str, nlri: Any, attrs: _Attributes) -> BgpEvent:
    try:
        key = _key(nlri)
        if not attrs.rts:
            raise Rejected("no-route-target", f"{describe_key(key)} carries no route target")
        if isinstance(key, MacKey):
            vni = _vni_from_label(nlri.get("label"))
            vtep = _unicast(nexthop, "martian-nexthop", key)
            return RouteAnnounced(
                peer, MacRoute(key, vni, vtep, attrs.rts, attrs.seq, attrs.sticky)
            )
        if attrs.pmsi is None:
            raise Rejected("no-pmsi", f"{describe_key(key)} has no PMSI tunnel attribute")
        match = _PMSI.match(attrs.pmsi)
        if match is None or match.group(1) != "ingressreplication":
            raise Rejected("unsupported-pmsi", f"{describe_key(key)}: {attrs.pmsi!r}")
        raw = match.group(4)
        vni = _checked_vni(int(raw) if raw is not None else 0)
        vtep = _unicast(match.group(5) or key.origin, "martian-nexthop", key)
        return RouteAnnounced(peer, ImetRoute(key, vni, vtep, attrs.rts))
    except Rejected as exc:
        return RouteRejected(peer, exc.reason, exc.detail)


def _key(nlri: Any) -> MacKey | ImetKey:
    if not isinstance(nlri, dict):
        raise Rejected("malformed-nlri", f"NLRI is not an object: {nlri!r}"[:160])
    code = nlri.get("code")
    if code not in (2, 3):  # before the RD: ExaBGP leaves unknown types unparsed
        raise Rejected("unsupported-route-type", f"EVPN route type {code!r} is not handled")
    rd = nlri.get("rd")
    etag = nlri.get("ethernet-tag", 0)
    if not isinstance(rd, str) or not isinstance(etag, int):
        raise Rejected("malformed-nlri", f"NLRI without RD or ethernet tag: {nlri!r}"[:160])
    if code == 2:
        mac = _mac(nlri.get("mac"))
        ip = nlri.get("ip")
        return MacKey(rd, etag, mac, _ip(ip) if ip is not None else None)
    return ImetKey(rd, etag, _ip(nlri.get("ip")))


def _mac(value: object) -> str:
    try:
        return parse_mac(value)
    except BadValue as exc:
        raise Rejected(exc.reason, str(exc)) from None


def _ip(value: object) -> str:
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else _bad_ip(value)
    except ValueError:
        return _bad_ip(value)


def _bad_ip(value: object) -> str:
    raise Rejected("bad-ip", f"not an IP address: {value!r}"[:120])


def _unicast(value: str, reason: str, key: MacKey | ImetKey) -> str:
    vtep = vtep_address(value)
    if vtep is None:
        raise Rejected(reason, f"{describe_key(key)}: next hop {value!r} cannot be a VTEP")
    return vtep


def _vni_from_label(label: object) -> int:
    # ExaBGP prints each label as [label>>4, raw]; the VNI is the raw 24-bit value.
    if isinstance(label, list) and label and isinstance(label[0], list) and len(label[0]) == 2:
        raw = label[0][1]
        if isinstance(raw, int):
            return _checked_vni(raw)
    raise Rejected("bad-label", f"cannot read a VNI from label {label!r}"[:120])


def _checked_vni(vni: int) -> int:
    try:
        return check_vni(vni)
    except BadValue as exc:
        raise Rejected(exc.reason, str(exc)) from None


def _route_targets(strings: Iterable[str]) -> tuple[RouteTarget, ...]:
    """RTs from ExaBGP's ``target:65000:100`` community strings; other communities skipped."""
    out = []
    for s in strings:
        if s.startswith("target:"):
            try:
                out.append(RouteTarget.parse(s[7:]))
            except ValueError:
                continue
    return tuple(out)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise Rejected("unexpected-json", f"expected a string, got {value!r}"[:120])
    return value


def _list(value: object) -> Iterable[Any]:
    return value if isinstance(value, list) else ()
