"""Text layouts of the show commands, for people (``--json`` is for scripts).

Columns follow FRR's ``show evpn ...`` and LNV's ``vxrdctl`` so operators read what they
are used to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def vni_summary(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No VNIs: no VXLAN device is enslaved to a bridge (or none is allowed by 'vnis')."
    return table(
        ("VNI", "Type", "VxLAN IF", "Bridge", "VLAN", "# MACs", "# Local", "# Remote", "# ARPs",
         "# Remote VTEPs", "Remote VTEPs"),
        [
            (r["vni"], r["type"], r["vxlanIf"], r["bridge"], r["vlan"], r["numMacs"],
             r["numLocalMacs"], r["numRemoteMacs"], r["numArpNd"], r["numRemoteVteps"],
             ",".join(r["remoteVteps"]) or None)
            for r in rows
        ],
    )  # fmt: skip


def vni_detail(rows: list[dict[str, Any]]) -> str:
    blocks = []
    for r in rows:
        lines = [
            f"VNI: {r['vni']}",
            f" Type: {r['type']}    State: {r['state']}",
            f" VxLAN interface: {r['vxlanIf']} (ifindex {r['ifindex']})",
            f" Bridge: {r['bridge']}    VLAN: {r['vlan'] if r['vlan'] is not None else '-'}",
            f" SVI interface: {r['sviInterface'] or '-'}",
            f" Local VTEP IP: {r['vtepIp']}",
            f" RD: {r['rd']}",
            f" Import RTs: {' '.join(r['importRts'])}",
            f" Export RTs: {' '.join(r['exportRts'])}",
            f" Number of MACs (local and remote): {r['numMacs']}"
            f" ({r['numLocalMacs']} local, {r['numRemoteMacs']} remote)",
            f" Number of ARPs (IPv4 and IPv6, remote): {r['numArpNd']}",
            " Remote VTEPs for this VNI:",
        ]
        lines += [f"  {vtep} flood: {r['floodMode']}" for vtep in r["remoteVteps"]] or ["  none"]
        lines += _kernel_check(r)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "No VNIs."


def _kernel_check(r: dict[str, Any]) -> list[str]:
    if "kernelCheckedSecondsAgo" not in r:
        return []
    checked, matched = r["kernelCheckedSecondsAgo"], r["kernelMatchedSecondsAgo"]
    if checked is None:
        state = "not compared yet (at the next reconcile)"
    elif matched == checked:
        state = f"matched the routes exactly at the last check, {_ago(checked)}"
    else:
        last = f"last matched {_ago(matched)}" if matched is not None else "never matched yet"
        state = f"differed from the routes at the last check, {_ago(checked)} ({last})"
    repairs = r["kernelRepairs"]
    done = f"{repairs['restored']} restored, {repairs['removed']} removed"
    if r["kernelRepairedSecondsAgo"] is not None:
        done += f", the last {_ago(r['kernelRepairedSecondsAgo'])}"
    return [f" Kernel: {state}", f" Kernel repairs: {done}"]


def _ago(seconds: float) -> str:
    return f"{seconds:g}s ago"


def macs(data: dict[str, Any]) -> str:
    out = []
    for vni, block in data.items():
        out.append(f"VNI {vni} #MACs (local and remote) {block['numMacs']}\n")
        rows = []
        for mac, m in block["macs"].items():
            where = m.get("intf") if m["type"] == "local" else m.get("remoteVtep")
            flags = ("S" if m.get("sticky") else "") + ("D" if m.get("isDuplicate") else "")
            rows.append(
                (mac, m["type"], flags, where, m.get("vlan"),
                 f"{m['localSequence']}/{m['remoteSequence']}")
            )  # fmt: skip
        out.append(table(("MAC", "Type", "Flags", "Intf/Remote VTEP", "VLAN", "Seq #'s"), rows))
        out.append("")
    out.append("Flags: S=sticky (static), D=duplicate (moved too often)")
    return "\n".join(out)


def neighbours(data: dict[str, Any]) -> str:
    out = []
    for vni, block in data.items():
        entries = {k: v for k, v in block.items() if k != "numArpNd"}
        out.append(f"VNI {vni} #ARP (IPv4 and IPv6, local and remote) {block['numArpNd']}\n")
        rows = [
            (ip, n["type"], n["state"], n["mac"], n.get("remoteVtep"),
             f"{n['localSequence']}/{n['remoteSequence']}")
            for ip, n in entries.items()
        ]  # fmt: skip
        out.append(table(("Neighbor", "Type", "State", "MAC", "Remote VTEP", "Seq #'s"), rows))
        out.append("")
    return "\n".join(out).rstrip() or "No VNIs."


def peers(rows: list[dict[str, Any]]) -> str:
    text = table(
        ("Neighbor", "State", "Up for", "Received", "Advertised", "Downs", "GR", "Table",
         "Last error"),
        [
            (r["peer"], r["state"], _uptime(r), r["routesReceived"], r["routesAdvertised"],
             r["sessionDowns"], _yes_no(r.get("gracefulRestart")),
             ("complete: " if r.get("tableComplete") else "") + r.get("completeBy", "?"),
             r["lastError"] or None)
            for r in rows
        ],
    )  # fmt: skip
    if any(r.get("uptimeSource") == "first-seen" for r in rows):
        text += "\n>: up at least this long (the session started before this agent core)"
    return text


def _uptime(row: dict[str, Any]) -> str | None:
    shown = _duration(row["uptimeSeconds"])
    return f">{shown}" if shown and row.get("uptimeSource") == "first-seen" else shown


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def routes(data: dict[str, Any]) -> str:
    out = []
    for title, rows in (("Received", data["received"]), ("Advertised", data["advertised"])):
        out.append(f"{title} routes: {len(rows)}")
        current_rd = None
        for r in rows:
            if r["rd"] != current_rd:
                current_rd = r["rd"]
                out.append(f"Route Distinguisher: {current_rd}")
            via = f" from {r['peer']}" if "peer" in r else ""
            imported = ""
            if "importedInto" in r:
                imported = (
                    f" imported into VNI {r['importedInto']}"
                    if r["importedInto"] is not None
                    else " not imported"
                )
            out.append(f"  {r['prefix']}")
            seq = f" MM:{r['sequence']}" if r.get("sequence") else ""
            sticky = " sticky" if r.get("sticky") else ""
            out.append(
                f"      next hop {r['nexthop']} VNI {r['vni']}{via}{imported}"
                f"  RT:{' RT:'.join(r['rts']) or '-'} ET:8{seq}{sticky}"
            )
        out.append("")
    return "\n".join(out).rstrip()


def vxlans(rows: list[dict[str, Any]]) -> str:
    """``vxrdctl vxlans``: VNI, local address, service node (none: EVPN)."""
    fmt = "{:<8}    {:<15}    {:<12}"
    lines = [
        fmt.format("VNI", "Local Addr", "Svc Node"),
        fmt.format("===", "==========", "========"),
    ]
    lines += [fmt.format(r["vni"], r["localAddr"], "none (EVPN)") for r in rows] or ["None"]
    return "\n".join(lines)


def hrep(rows: list[dict[str, Any]]) -> str:
    """``vxrdctl vxlans hrep``: the head-end replication list per VNI, four per line."""
    fmt = "{:<8}    {:<12}    {}"
    lines = [fmt.format("VNI", "Device", "HREP Addrs"), fmt.format("===", "======", "==========")]
    for r in rows:
        addrs = r["hrepAddrs"]
        chunks = [", ".join(addrs[i : i + 4]) for i in range(0, len(addrs), 4)] or ["None"]
        lines.append(fmt.format(r["vni"], r["device"], chunks[0]))
        lines += [fmt.format("", "", chunk) for chunk in chunks[1:]]
    return "\n".join(lines) if rows else "\n".join([*lines, "None"])


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def memory(data: dict[str, Any]) -> str:
    processes = data["processes"]
    rows = [
        (name, p["pid"], p.get("rss_mib"), p.get("peak_rss_mib")) for name, p in processes.items()
    ]
    lines = [table(("process", "PID", "RSS MiB", "peak RSS MiB"), rows), ""]
    core = processes.get("core", {})
    glibc, python = core.get("allocator"), core.get("python")
    if glibc:
        lines.append(
            f"core heap (glibc): {glibc['heap_mib']} MiB taken, {glibc['in_use_mib']} in use, "
            f"{glibc['free_mib']} free within it, {glibc['mapped_mib']} mapped apart"
        )
    if python:
        generations = "/".join(str(n) for n in python["collections"])
        lines.append(
            f"core heap (Python): {python['allocated_blocks']:,} blocks allocated; "
            f"collections {generations} (generations 0/1/2)"
        )
    sizes = [
        (name, f"{t['entries']:,}", f"{t['bytes'] / (1 << 20):.2f}")
        for name, t in data["tables"].items()
    ]
    lines += ["", table(("table", "entries", "MiB (its own hash tables)"), sizes)]
    return "\n".join(lines)
