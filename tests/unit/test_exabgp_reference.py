"""exabgp/ holds the ExaBGP side as data: the reference configuration, and no package.

``exabgp/reference.conf`` is what ``evpn-agent run --config exabgp/reference.yaml
--print-exabgp-config`` prints, with the two paths that differ per machine written as a
README install has them. Regenerate it (after a deliberate change to the rendering) with:

    .venv/bin/python tests/unit/test_exabgp_reference.py
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXABGP_DIR = REPO_ROOT / "exabgp"
REFERENCE_YAML = EXABGP_DIR / "reference.yaml"
REFERENCE_CONF = EXABGP_DIR / "reference.conf"
REGENERATE = ".venv/bin/python tests/unit/test_exabgp_reference.py"

# What legitimately varies per machine (the interpreter running evpn-agent, where the
# YAML file is), and how the reference file writes it: as the README's install does.
INTERPRETER = "/opt/evpn-agent/bin/python3"
CONFIG = "/etc/evpn-agent/evpn-agent.yaml"

# The console script's body: this checkout's evpn-agent, whatever the venv points at.
CLI = "import sys; from evpn_agent.cli import main; sys.argv[0] = 'evpn-agent'; main()"
# The same, where reading the kernel's links fails (TypeError: None is not callable).
CLI_WITHOUT_KERNEL = "import evpn_agent.kernel; evpn_agent.kernel.dump_links = None; " + CLI


def render(cli: str = CLI) -> str:
    """``evpn-agent run --config exabgp/reference.yaml --print-exabgp-config``, as is."""
    argv = ["run", "--config", str(REFERENCE_YAML), "--print-exabgp-config"]
    result = subprocess.run(
        [sys.executable, "-c", cli, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    if result.returncode != 0:
        raise AssertionError(f"evpn-agent run failed ({result.returncode}): {result.stderr}")
    return result.stdout


def normalise(text: str) -> str:
    # only as quoted words of the run line: nothing else can match by accident
    return text.replace(f"'{sys.executable}'", f"'{INTERPRETER}'").replace(
        f"'{REFERENCE_YAML}'", f"'{CONFIG}'"
    )


def test_the_rendered_configuration_is_the_reference() -> None:
    rendered = normalise(render())
    reference = REFERENCE_CONF.read_text()
    if rendered != reference:
        diff = "".join(
            difflib.unified_diff(
                reference.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                "exabgp/reference.conf",
                "rendered now",
            )
        )
        pytest.fail(
            "evpn-agent renders another ExaBGP configuration than exabgp/reference.conf.\n"
            f"If the change is intended, regenerate the file with\n    {REGENERATE}\n"
            f"and commit it with the change.\n\n{diff}"
        )


def test_only_the_machine_specific_paths_are_normalised() -> None:
    reference = REFERENCE_CONF.read_text()
    [run] = [line.strip() for line in reference.splitlines() if line.strip().startswith("run ")]
    assert run.startswith(f"run '{INTERPRETER}' ")
    assert run.endswith(f" '--config' '{CONFIG}';")
    assert str(REPO_ROOT) not in reference and sys.executable not in reference


def test_a_configured_vtep_ip_renders_without_reading_the_kernel() -> None:
    # A dump waits for the kernel's RTNL lock, which deleting namespaces of thousands of
    # devices holds for a minute: this test's render timed out after a scale benchmark.
    assert render(CLI_WITHOUT_KERNEL) == render()


def test_exabgp_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "exabgp.conf"
    conf.write_text(render())  # not normalised: ExaBGP checks that the program exists
    result = subprocess.run(
        [sys.executable, "-m", "exabgp", "validate", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- exabgp/ is not a package


def test_exabgp_directory_is_not_a_package() -> None:
    assert EXABGP_DIR.is_dir()
    assert not (EXABGP_DIR / "__init__.py").exists()
    assert list(EXABGP_DIR.rglob("*.py")) == []  # nothing importable at all


def test_import_exabgp_is_the_installed_library() -> None:
    import exabgp

    assert str(REPO_ROOT) in sys.path  # the top-level conftest puts the checkout there
    assert exabgp.__file__ is not None
    assert "site-packages" in Path(exabgp.__file__).parts
    assert not Path(exabgp.__file__).is_relative_to(REPO_ROOT / "exabgp")


def test_import_exabgp_from_the_checkout_is_the_installed_library() -> None:
    # cwd and PYTHONPATH both the checkout, as for the launcher and ExaBGP's API process
    result = subprocess.run(
        [sys.executable, "-c", "import exabgp; print(exabgp.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    found = Path(result.stdout.strip())
    assert "site-packages" in found.parts
    assert not found.is_relative_to(REPO_ROOT / "exabgp")


if __name__ == "__main__":
    REFERENCE_CONF.write_text(normalise(render()))
    print(f"wrote {REFERENCE_CONF}")
