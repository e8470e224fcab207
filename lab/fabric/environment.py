"""What a fabric runs on this machine: tool paths, and whether it can be built here."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FRR_DIR = Path(os.environ.get("FRR_DIR", "/usr/lib/frr"))
VTYSH = shutil.which("vtysh") or "/usr/bin/vtysh"
IP = shutil.which("ip") or "/usr/sbin/ip"
BRIDGE = shutil.which("bridge") or "/usr/sbin/bridge"
PYTHON = sys.executable
PEER_SCRIPT = REPO_ROOT / "tests" / "speaker_peer.py"


def missing_requirements() -> list[str]:
    """Why a fabric cannot be built here (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for tool in (IP, BRIDGE):
        if not os.access(tool, os.X_OK):
            missing.append(tool)
    for daemon in ("zebra", "bgpd"):
        if not os.access(FRR_DIR / daemon, os.X_OK):
            missing.append(str(FRR_DIR / daemon))
    if not os.access(VTYSH, os.X_OK):
        missing.append(VTYSH)
    try:
        pwd.getpwnam("frr")
    except KeyError:
        missing.append("user frr")
    return missing


def skip_unless_supported() -> None:
    """pytest.skip() with the reason when root, iproute2 or FRR is missing."""
    import pytest

    missing = missing_requirements()
    if missing:
        pytest.skip("fabric needs: " + ", ".join(missing))
