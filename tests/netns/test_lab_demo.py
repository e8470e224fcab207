"""The demo, for real (as root, with FRR): built, checked and removed with a prefix and a
state directory of its own."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import runner
from lab.fabric import REPO_ROOT, skip_unless_supported

LAB = REPO_ROOT / "lab"


# ---------------------------------------------------------------- the demo, for real


def demo(state_dir: Path, prefix: str, *args: str, timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.demo", "--state-dir", str(state_dir), "--prefix", prefix,
         *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def leftovers(prefix: str, state_dir: Path) -> list[str]:
    """Namespaces and processes of the lab that are still there."""
    found = runner.lab_namespaces(prefix)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(state_dir / "work") in cmdline:
                found.append(f"pid {entry.name}: {cmdline.replace(chr(0), ' ')[:120]}")
    return found


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Path, str, str]]:
    """``up`` with a prefix and state directory of this run only: never the user's lab.

    Yields (state dir, prefix, up's output). The finalizer runs ``down`` whatever happened
    and fails if any namespace or process of the lab is left.
    """
    skip_unless_supported()
    prefix = f"evlt{secrets.token_hex(2)}"
    # not pytest's tmp_path: FRR runs as user frr and cannot enter root's 0700 directories
    state_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    try:
        rc, out = demo(state_dir, prefix, "up")
        assert rc == 0, out
        yield state_dir, prefix, out
    finally:
        rc, out = demo(state_dir, prefix, "down")
        left = leftovers(prefix, state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert rc == 0 and not left, f"{out}\nleft behind: {left}"


def seconds(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+) s", out)
    assert match, f"no {label!r} time in:\n{out}"
    return float(match.group(1))


@pytest.mark.netns
@pytest.mark.frr
def test_up_converges_and_the_ping_matrix_is_right(lab: tuple[Path, str, str]) -> None:
    _, _, out = lab
    assert "OK: within a VNI 12/12 pings answered; across VNIs 0/18 answered (isolated)" in out
    assert "all 8 BGP sessions established" in out
    assert seconds(out, "all 8 BGP sessions established") < 30
    assert seconds(out, "every host reaches its VNI") < 45
    # the real CLI answered on every leaf: both VNIs, every other VTEP in the flood lists
    vnis = out.split("== VNIs on each VTEP")[1].split("== Ping matrix")[0]
    sections = dict(re.findall(r"^--- (\w+)\n(.*?)(?=^--- |\Z)", vnis, re.M | re.S))
    assert set(sections) == {"leaf1", "leaf2", "leaf3", "vtep4"}, vnis
    vteps = {"leaf1": "192.0.2.11", "leaf2": "192.0.2.12", "leaf3": "192.0.2.13"}
    vteps["vtep4"] = "192.0.2.14"
    for leaf in ("leaf1", "leaf2", "leaf3"):
        assert "vxlan100" in sections[leaf] and "vxlan200" in sections[leaf], sections[leaf]
        others = ",".join(ip for name, ip in vteps.items() if name != leaf)
        assert sections[leaf].count(others) == 2, sections[leaf]
    # on this kernel leaf3 falls back to traditional bridges, and says so in one line
    fallback = [line for line in out.splitlines() if "no bridge VLAN filtering" in line]
    assert len(fallback) <= 1


@pytest.mark.netns
@pytest.mark.frr
def test_up_twice_is_safe_and_status_shows_it(lab: tuple[Path, str, str]) -> None:
    state_dir, prefix, _ = lab
    rc, out = demo(state_dir, prefix, "up")
    assert rc == 0 and "already up" in out, out
    rc, out = demo(state_dir, prefix, "status")
    assert rc == 0, out
    assert out.count("Established") == 8
    assert "NOT RUNNING" not in out


@pytest.mark.netns
@pytest.mark.frr
def test_move_every_vtep_follows(lab: tuple[Path, str, str]) -> None:
    state_dir, prefix, _ = lab
    rc, out = demo(state_dir, prefix, "move")
    assert rc == 0, out
    assert out.count("every other VTEP followed the move") == 2
    # RFC 7432 MAC mobility: one sequence number per move, no flapping between the leaves
    first, second = (int(n) for n in re.findall(r"MAC mobility sequence (\d+)", out))
    assert second == first + 1, out


@pytest.mark.netns
@pytest.mark.frr
def test_rr_restart_loses_no_ping(lab: tuple[Path, str, str]) -> None:
    state_dir, prefix, _ = lab
    rc, out = demo(state_dir, prefix, "rr-restart", "--down", "1")
    assert rc == 0, out
    assert "pings lost: 0 of" in out


@pytest.mark.netns
@pytest.mark.frr
def test_agent_restart_keeps_sessions_and_traffic(lab: tuple[Path, str, str]) -> None:
    state_dir, prefix, _ = lab
    rc, out = demo(state_dir, prefix, "agent-restart", "--observe", "3")
    assert rc == 0, out
    assert "stayed up across the restart: yes" in out


@pytest.mark.netns
@pytest.mark.frr
def test_down_after_a_lost_record_finds_the_namespaces(lab: tuple[Path, str, str]) -> None:
    state_dir, prefix, _ = lab
    runner.LabState.path(state_dir).unlink()  # as after a crash
    rc, out = demo(state_dir, prefix, "down")
    assert rc == 0 and "no record" in out, out
    assert leftovers(prefix, state_dir) == []
