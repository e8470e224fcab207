"""Read-only views of the agent's state for the show commands.

JSON field names follow FRR's ``show evpn ... json`` so scripts written for FRR VTEPs work
unchanged; our additions (bridge, VLAN, local/remote split) sit beside them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from evpn_agent.core.drift import ACTIONS
from evpn_agent.core.engine import Engine
from evpn_agent.core.rib import best_of
from evpn_agent.model import (
    AdvertKey,
    Config,
    ImetAdvert,
    ImetKey,
    ImetRoute,
    MacAdvert,
    MacKey,
    MacRoute,
    Route,
)
from evpn_agent.model.keys import VniMac

FLOOD_MODE = "HER"  # head-end (ingress) replication, FRR's name for it


def vnis(state: Engine, only: int | None = None, now: float | None = None) -> list[dict[str, Any]]:
    local_counts = local_mac_counts(state)
    now = state.now if now is None else now
    rows = []
    for vni in sorted(state.vnis):
        if only is not None and vni != only:
            continue
        lv = state.vnis[vni]
        remote = len(state.rib.remote_macs(vni))
        vteps = state.rib.flood_vteps(vni)
        override = state.cfg.route_targets.get(vni)
        import_rts = (
            [str(rt) for rt in override.import_rts]
            if override and override.import_rts
            else [f"*:{vni}"]
        )
        rows.append(
            {
                "vni": vni,
                "type": "L2",
                "vxlanIf": lv.vxlan_name,
                "vxlanInterface": lv.vxlan_name,
                "ifindex": lv.vxlan_ifindex,
                "bridge": lv.bridge_name,
                "sviInterface": _name(state, lv.svi_ifindex),
                "sviIfindex": lv.svi_ifindex,
                "vlan": lv.vlan,
                "vtepIp": state.vtep_ip,
                "state": "up" if lv.up else "down",
                "tenantVrf": "default",
                "rd": str(state.rd(vni)),
                "importRts": import_rts,
                "exportRts": [str(rt) for rt in state.export_rts(vni)],
                "numMacs": local_counts[vni] + remote,
                "numLocalMacs": local_counts[vni],
                "numRemoteMacs": remote,
                "numArpNd": len(state.rib.remote_ips(vni)),
                "numRemoteVteps": len(vteps),
                "remoteVteps": vteps,
                "floodMode": FLOOD_MODE,
                **kernel_check(state, vni, now),
            }
        )
    return rows


def kernel_check(state: Engine, vni: int, now: float) -> dict[str, Any]:
    """How the kernel compared with the routes at the full dumps (reconciles): when it last
    matched exactly, when it was last compared, and the repairs made."""
    found = state.drift

    def ago(times: dict[int, float]) -> float | None:
        at = times.get(vni)
        return None if at is None else round(max(now - at, 0.0), 1)

    repairs = found.repairs.get(vni, Counter())
    return {
        "kernelMatchedSecondsAgo": ago(found.matched_at),
        "kernelCheckedSecondsAgo": ago(found.checked_at),
        "kernelRepairs": {action: repairs[action] for action in ACTIONS},
        "kernelRepairedSecondsAgo": ago(found.repaired_at),
    }


def macs(state: Engine, only: int | None = None, mac: str | None = None) -> dict[str, Any]:
    """FRR's ``show evpn mac vni all json``: {vni: {numMacs, macs: {mac: {...}}}}."""
    out: dict[str, Any] = {}
    local_by_vni: dict[int, dict[str, Any]] = {}
    for (vni, m), (port, vlan, static) in _local_macs(state).items():
        local_by_vni.setdefault(vni, {})[m] = (port, vlan, static)
    for vni in sorted(state.vnis):
        if only is not None and vni != only:
            continue
        table: dict[str, Any] = {}
        for m, (port, vlan, static) in sorted(local_by_vni.get(vni, {}).items()):
            best = state.rib.best_mac(vni, m)
            table[m] = {
                "type": "local",
                "intf": _name(state, port),
                "vlan": vlan,
                "localSequence": state.view.seq.get(VniMac(vni, m), 0),
                "remoteSequence": best.seq if best else 0,
                "sticky": static,
                "detectionCount": state.dad.count(VniMac(vni, m)),
                "isDuplicate": VniMac(vni, m) in state.dad.duplicates,
            }
        for m, paths in sorted(state.rib.remote_macs(vni).items()):
            if m in table:
                continue  # the local entry won; its remote sequence is shown there
            best = best_of(paths.values())
            if best is None:
                continue
            table[m] = {
                "type": "remote",
                "remoteVtep": best.vtep,
                "vlan": state.vnis[vni].vlan,
                "localSequence": 0,
                "remoteSequence": best.seq,
                "sticky": best.sticky,
                "detectionCount": state.dad.count(VniMac(vni, m)),
                "isDuplicate": VniMac(vni, m) in state.dad.duplicates,
            }
        if mac is not None:
            table = {k: v for k, v in table.items() if k == mac}
        out[str(vni)] = {"numMacs": len(table), "macs": table}
    return out


def neighbours(state: Engine, only: int | None = None) -> dict[str, Any]:
    """FRR's ``show evpn arp-cache vni all json``: {vni: {numArpNd, ip: {...}}}."""
    out: dict[str, Any] = {}
    # the bindings per SVI, in one pass: not every binding once per VNI
    by_svi: dict[int, list[tuple[str, str]]] = {}
    for (ifindex, ip), mac in state.view.neigh.items():
        by_svi.setdefault(ifindex, []).append((ip, mac))
    for vni in sorted(state.vnis):
        if only is not None and vni != only:
            continue
        table: dict[str, Any] = {}
        svi = state.vnis[vni].svi_ifindex
        for ip, mac in sorted(by_svi.get(svi, ()) if svi is not None else ()):
            table[ip] = {
                "type": "local",
                "state": "active" if AdvertKey(vni, mac, ip) in state.adverts.sent else "inactive",
                "mac": mac,
                "localSequence": state.view.seq.get(VniMac(vni, mac), 0),
                "remoteSequence": 0,
                "detectionCount": 0,
                "isDuplicate": False,
            }
        for ip, paths in sorted(state.rib.remote_ips(vni).items()):
            best = best_of(paths.values())
            if best is None or ip in table:
                continue
            table[ip] = {
                "type": "remote",
                "state": "active",
                "mac": best.key.mac,
                "remoteVtep": best.vtep,
                "localSequence": 0,
                "remoteSequence": best.seq,
                "detectionCount": 0,
                "isDuplicate": False,
            }
        out[str(vni)] = {"numArpNd": len(table), **table}
    return out


def peers(state: Engine, cfg: Config, now: float) -> list[dict[str, Any]]:
    rows = []
    for rr in cfg.route_reflectors:
        p = state.peers.get(rr.address)
        up = p is not None and p.up
        rows.append(
            {
                "peer": rr.address,
                "state": "Established" if up else ("Down" if p else "Unknown"),
                "uptimeSeconds": round(now - p.since, 1) if p and up and p.since else None,
                # "session": seen coming up; "speaker": ExaBGP's account (this process
                # started later); "first-seen": up at least since its first message to us
                "uptimeSource": p.since_source if p and up and p.since else None,
                "routesReceived": state.rib.per_peer.get(rr.address, 0),
                "routesAdvertised": len(state.adverts.sent) if up else 0,
                "endOfRib": bool(p and p.eor),
                "tableComplete": bool(p and up and p.complete),
                "completeBy": p.completion() if p else "waiting: session down",
                "gracefulRestart": p.graceful_restart if p else None,
                "enhancedRefresh": p.enhanced_refresh if p else None,
                "sessionDowns": p.downs if p else 0,
                "lastError": p.last_error if p else "",
                "md5": rr.password is not None,
                "holdTime": rr.hold_time,
                "passive": rr.passive,
            }
        )
    return rows


def prefix(key: MacKey | ImetKey) -> str:
    """RFC 7432 prefix in FRR's notation: ``[2]:[0]:[48]:[mac]:[32]:[ip]``."""
    if isinstance(key, MacKey):
        text = f"[2]:[{key.etag}]:[48]:[{key.mac}]"
        if key.ip is not None:
            text += f":[{128 if ':' in key.ip else 32}]:[{key.ip}]"
        return text
    return f"[3]:[{key.etag}]:[{128 if ':' in key.origin else 32}]:[{key.origin}]"


def routes(
    state: Engine,
    route_type: int | None,
    vni: int | None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> dict[str, Any]:
    """Received and advertised routes, sorted by RD and prefix. With ``limit``: rows
    ``offset`` to ``offset + limit`` of each list, and the totals (a page of a table that
    may hold 100,000 routes)."""
    rts: dict[tuple[Any, ...], list[str]] = {}  # one text per route-target set, not per route
    received = [
        _route_row(route, pid.peer, state.rib.vni_of(pid), rts)
        for pid, route in state.rib.paths.items()
        if _wanted(route, route_type, vni)
    ]
    advertised = []
    for advert in state.adverts.sent.values():
        if route_type is not None and route_type != (2 if isinstance(advert, MacAdvert) else 3):
            continue
        if vni is not None and advert.vni != vni:
            continue
        advertised.append(_advert_row(advert))
    received.sort(key=lambda r: (r["rd"], r["prefix"], r["peer"]))
    advertised.sort(key=lambda r: (r["rd"], r["prefix"]))
    if limit is None:
        return {"received": received, "advertised": advertised}
    end = offset + max(limit, 0)
    return {
        "received": received[offset:end],
        "advertised": advertised[offset:end],
        "totalReceived": len(received),
        "totalAdvertised": len(advertised),
        "offset": offset,
        "limit": limit,
    }


def vxlans(state: Engine) -> list[dict[str, Any]]:
    """LNV's ``vxrdctl vxlans [hrep]``, filled from EVPN state."""
    return [
        {
            "vni": vni,
            "device": state.vnis[vni].vxlan_name,
            "localAddr": state.vnis[vni].local_ip or state.vtep_ip,
            "svcNode": None,  # EVPN has no service node: BGP distributes the flood list
            "hrepAddrs": state.rib.flood_vteps(vni),
        }
        for vni in sorted(state.vnis)
    ]


def _wanted(route: Route, route_type: int | None, vni: int | None) -> bool:
    kind = 2 if isinstance(route, MacRoute) else 3
    return (route_type is None or route_type == kind) and (vni is None or route.vni == vni)


def _route_row(
    route: Route, peer: str, imported: int | None, rts: dict[tuple[Any, ...], list[str]]
) -> dict[str, Any]:
    texts = rts.get(route.rts)
    if texts is None:
        texts = rts[route.rts] = [str(rt) for rt in route.rts]
    row: dict[str, Any] = {
        "type": 2 if isinstance(route, MacRoute) else 3,
        "rd": route.key.rd,
        "prefix": prefix(route.key),
        "nexthop": route.vtep,
        "vni": route.vni,
        "rts": texts,  # shared by the rows of one set: the answer is only serialised
        "peer": peer,
        "importedInto": imported,
    }
    if isinstance(route, MacRoute):
        row["sequence"] = route.seq
        row["sticky"] = route.sticky
    elif isinstance(route, ImetRoute):
        row["pmsi"] = f"ingress-replication {route.vtep} label {route.vni}"
    return row


def _advert_row(advert: MacAdvert | ImetAdvert) -> dict[str, Any]:
    if isinstance(advert, MacAdvert):
        key: MacKey | ImetKey = MacKey(str(advert.rd), 0, advert.mac, advert.ip)
        extra: dict[str, Any] = {"sequence": advert.seq, "sticky": advert.sticky}
    else:
        key = ImetKey(str(advert.rd), 0, advert.vtep)
        extra = {"pmsi": f"ingress-replication {advert.vtep} label {advert.vni}"}
    return {
        "type": 2 if isinstance(advert, MacAdvert) else 3,
        "rd": str(advert.rd),
        "prefix": prefix(key),
        "nexthop": advert.vtep,
        "vni": advert.vni,
        "rts": [str(rt) for rt in advert.rts],
        **extra,
    }


def local_mac_counts(state: Engine) -> Counter[int]:
    """Local MACs per VNI."""
    return Counter(vni for vni, _mac in _local_macs(state))


def _local_macs(state: Engine) -> dict[tuple[int, str], tuple[int, int | None, bool]]:
    """(vni, mac) -> (port ifindex, vlan, static) for MACs learned on local ports."""
    out = {}
    for key, local in state.view.fdb.items():
        vni = state.view.vni_of(key)
        if vni is not None:
            out[(vni, key.mac)] = (local.port, key.vlan, local.static)
    return out


def _name(state: Engine, ifindex: int | None) -> str | None:
    if ifindex is None:
        return None
    link = state.view.links.get(ifindex)
    return link.name if link is not None else str(ifindex)
