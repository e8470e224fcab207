"""What a fabric runs on this machine: tool paths, and whether it can be built here."""

from __future__ import annotations

import compileall
import functools
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


@functools.cache
def compile_agent() -> None:
    """Write the agent's bytecode (``__pycache__``) before a fabric starts agents, as
    ``pip install`` does for an installed package. A checkout installed in editable mode
    has none when PYTHONDONTWRITEBYTECODE is set (these machines set it): every agent start
    compiled the package again in both of its processes, ~0.5 s of CPU and ~0.5 s more
    before the core answered, at each start of each VTEP of a test or a benchmark. A
    module edited since has a newer source, and Python compiles that one in memory."""
    compileall.compile_dir(REPO_ROOT / "evpn_agent", quiet=1)


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
