"""Which code runs: a fingerprint of the installed package's sources.

``evpn-agent reload`` compares the running instance's fingerprint with the installed one,
so that ``systemctl reload`` after an upgrade replaces the processes (a hitless restart)
instead of only re-reading the file. A version string alone would miss a reinstall of
the same version.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

ENV = "EVPN_AGENT_CODE"  # the launcher's fingerprint, inherited by the cores it runs

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def fingerprint(package: Path = PACKAGE) -> str:
    """SHA-256 over every module's path and bytes (a few ms; computed once a process)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
