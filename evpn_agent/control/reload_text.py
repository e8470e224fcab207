"""The text of ``evpn-agent reload``: what changed (or would), what was refused and why."""

from __future__ import annotations

from typing import Any


def render(result: dict[str, Any]) -> tuple[str, str]:
    """(stdout, stderr) for a reload answer."""
    source = result["source"]
    if not result.get("valid"):
        problems = result["problems"]
        lines = [f"{source}: {p}" for p in problems]
        lines.append(f"{source}: invalid ({len(problems)} problem(s)); nothing changed")
        return "", "\n".join(lines)
    if result["refused"]:
        lines = [f"reload refused: key '{r['key']}': {r['reason']}" for r in result["refused"]]
        lines.append("nothing changed")
        return "", "\n".join(lines)
    changes = result["changes"]
    if not changes:
        return f"{source}: no changes", ""
    verb = "would apply" if result["dryRun"] else "applied"
    lines = [f"reload {verb} {len(changes)} change(s) from {source}"]
    lines += [f"  {c['key']}: {c['old']} -> {c['new']}" for c in changes]
    ops = result["ops"]
    lines.append(
        f"  kernel: {len(ops)} change(s); BGP: {result['announces']} announce(s),"
        f" {result['withdraws']} withdraw(s)"
    )
    lines += [f"    {op}" for op in ops] if result["dryRun"] else []
    failed = [f"failed: {line}" for line in result.get("failed", ())]
    return "\n".join(lines), "\n".join(failed)
