"""The core and the vocabulary import with every I/O library blocked, and the top-level
``exabgp/`` directory never shadows the real ExaBGP (the import-linter contracts in
pyproject.toml check the same statically; this checks what really gets imported)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import evpn_agent.core
import evpn_agent.model

BLOCKED = (
    "pyroute2", "exabgp", "asyncio", "socket", "selectors", "subprocess", "click",
    "prometheus_client", "yaml",
)  # fmt: skip

PROBE = """
import importlib, importlib.abc, sys
blocked = {blocked!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"blocked: {{name}}")
        return None
for name in blocked:
    sys.modules.pop(name, None)
sys.meta_path.insert(0, Blocker())
for module in {modules!r}:
    importlib.import_module(module)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print("LOADED", loaded)
"""


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [prefix + info.name for info in pkgutil.walk_packages(path, prefix="")]


def _probe(blocked: tuple[str, ...], modules: list[str]) -> subprocess.CompletedProcess[str]:
    """PROBE in a fresh interpreter that finds this checkout's modules first."""
    code = PROBE.format(blocked=blocked, modules=modules)
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r})\n" + code],
        capture_output=True,
        text=True,
        check=False,
    )


def test_core_and_model_import_with_io_libraries_blocked() -> None:
    modules = ["evpn_agent.model", "evpn_agent.core"]
    modules += _modules(evpn_agent.model) + _modules(evpn_agent.core)
    assert "evpn_agent.core.engine" in modules and "evpn_agent.model.bgp" in modules
    result = _probe(BLOCKED, modules)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_the_probe_fails_when_the_core_imports_an_io_library() -> None:
    """The blocker works: a module importing asyncio is refused."""
    code = PROBE.format(blocked=BLOCKED, modules=["asyncio"])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "blocked: asyncio" in result.stderr


def test_the_processes_start_without_pyroute2() -> None:
    """pyroute2 (~125-170 ms to import, ~10 MiB) is the tests' reference only: neither
    ``evpn-agent run`` nor the core nor the speaker imports it (nor, by the import
    contract, any module of the agent later)."""
    import evpn_agent.kernel

    modules = ["evpn_agent.cli", "evpn_agent.daemon.dispatcher", "evpn_agent.speaker.launcher"]
    modules += _modules(evpn_agent.kernel)
    result = _probe(("pyroute2",), modules)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
