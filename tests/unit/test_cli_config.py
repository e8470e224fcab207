"""``evpn-agent config check`` and ``evpn-agent migrate-lnv`` through click's test runner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from evpn_agent.cli_config import REDACTED, effective, register
from evpn_agent.config import parse

DOC = Path(__file__).resolve().parents[1] / "data" / "lnv" / "doc-example"

VALID = """
local-as: 65000
vtep-ip: 192.0.2.21
route-reflectors:
  - address: 192.0.2.1
    password: s3cret
  - 192.0.2.2
vnis: [100, 200, 70000]
route-targets:
  100: {import: ["65000:1100"], export: ["65000:1100"]}
  200: {import: ["65000:1200"]}
"""


def main_group() -> click.Group:
    group = click.Group("evpn-agent")
    register(group)
    return group


def run(*args: str) -> Result:
    return CliRunner().invoke(main_group(), list(args))


def write(tmp_path: Path, text: str, name: str = "evpn-agent.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- config check


def test_check_valid_prints_loadable_effective_config(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    result = run("config", "check", path)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    out = result.stdout
    # defaults filled in, under our key names
    assert "router-id: 192.0.2.21" in out
    assert "hold-time: 9" in out and "port: 179" in out
    assert "control-socket: /run/evpn-agent/evpn-agent.sock" in out
    assert f"password: {REDACTED}" in out and "s3cret" not in out
    # derived route targets: export (AS & 0xFFFF):VNI, default import as a comment
    assert "    export: ['65000:200']  # default: 65000:VNI" in out
    assert "    # import: *:70000 (default: any AS, as FRR)" in out
    assert "    export: ['65000:1100']\n" in out
    # the output loads again and means the same
    original = parse(VALID)
    again = parse(out)
    assert effective(again) == effective(original)


def test_check_show_secrets(tmp_path: Path) -> None:
    result = run("config", "check", "--show-secrets", write(tmp_path, VALID))
    assert result.exit_code == 0 and "password: s3cret" in result.stdout


def test_check_minimal_shows_what_is_decided_at_run_time(tmp_path: Path) -> None:
    path = write(tmp_path, "local-as: 4200000000\nroute-reflectors: [192.0.2.1]\n")
    result = run("config", "check", path)
    assert result.exit_code == 0, result.output
    assert "# vtep-ip: not set" in result.stdout
    assert "# vnis: not set" in result.stdout
    # a 4-byte AS keeps its low 16 bits in the RT, as FRR does
    assert f"export {4200000000 & 0xFFFF}:VNI" in result.stdout
    assert parse(result.stdout).local_as == 4200000000


def test_check_json(tmp_path: Path) -> None:
    result = run("config", "check", "--json", write(tmp_path, VALID))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["valid"] is True
    assert doc["config"]["local-as"] == 65000
    assert doc["config"]["local-address"] is None
    assert doc["config"]["route-reflectors"][1] == {
        "address": "192.0.2.2",
        "hold-time": 9,
        "port": 179,
        "passive": False,
    }
    assert doc["derived"]["route-targets"]["200"] == {
        "import": ["65000:1200"],
        "export": ["65000:200"],
    }
    assert doc["derived"]["route-targets"]["70000"]["import"] == ["*:70000"]
    assert doc["derived"]["route-distinguishers"] == {
        "100": "192.0.2.21:100",
        "200": "192.0.2.21:200",
        "70000": None,
    }
    assert doc["derived"]["decided-at-run-time"] == ["local-address"]


def test_check_invalid_lists_every_problem_with_its_key(tmp_path: Path) -> None:
    text = "local-as: x\nroute-reflectors: [999.1.1.1]\nbogus: 1\nvnis: [0]\n"
    path = write(tmp_path, text)
    result = run("config", "check", path)
    assert result.exit_code == 1
    assert result.stdout == ""
    for key in ("local-as", "route-reflectors[0].address", "bogus", "vnis[0]"):
        assert f"{path}: key '{key}':" in result.stderr
    assert f"{path}: invalid (4 problem(s))" in result.stderr
    assert "Traceback" not in result.output


def test_check_invalid_json(tmp_path: Path) -> None:
    result = run("config", "check", "--json", write(tmp_path, "local-as: 65000\n"))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert doc["problems"][0].startswith("key 'route-reflectors': missing")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read: No such file or directory"),
        (b"\xff\xfe\x00binary", "not UTF-8 text (byte 0)"),
        (b"local-as: [\n", "invalid YAML"),
        (b"local-as: 65000\nroute-reflectors: [192.0.2.1]\nvtep-ip: 2001:db8::1\n", "router-id"),
    ],
)
def test_check_unusable_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "c.yaml"
    if content is not None:
        path.write_bytes(content)
    result = run("config", "check", str(path))
    assert result.exit_code == 1
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_check_directory_and_usage_errors(tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path))
    assert result.exit_code == 1 and "cannot read" in result.stderr
    assert run("config", "check").exit_code == 2
    assert run("config", "check", "a", "b").exit_code == 2


# ---------------------------------------------------------------- migrate-lnv


def migrate(*extra: str) -> Result:
    return run(
        "migrate-lnv",
        "--vxrd-conf",
        str(DOC / "vxrd.conf"),
        "--interfaces",
        str(DOC / "interfaces"),
        "--local-as",
        "65000",
        *extra,
    )


def test_migrate_text_report() -> None:
    result = migrate("--route-reflector", "192.0.2.1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "LNV head-end replication; VTEP 192.0.2.11" in out
    assert "== evpn-agent configuration" in out and "vnis: [10, 30, 2000]" in out
    assert f"{DOC / 'interfaces'}:7 (lo): remove 'vxrd-svcnode-ip 192.0.2.3'" in out
    assert f"{DOC / 'interfaces'}:31 (vni-10): add 'vxlan-learning no'" in out
    assert "(why: see 3)" in out  # each reason explained once
    assert "systemctl disable --now vxrd.service" in out
    assert " bgp listen range 192.0.2.0/24 peer-group VTEPS" in out
    assert "== Warnings ==" not in out


def test_migrate_without_reflectors_warns() -> None:
    result = migrate()
    assert result.exit_code == 0
    assert "== Warnings ==" in result.stdout
    assert "warning: no --route-reflector given" in result.stdout


def test_migrate_json() -> None:
    result = migrate("--route-reflector", "192.0.2.1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["output"] is None
    assert parse(doc["config"]).vnis == frozenset({10, 30, 2000})
    assert {c["action"] for c in doc["changes"]} == {
        "remove",
        "add",
        "recommend",
        "keep",
        "service",
    }
    assert all("file" in c and "line" in c for c in doc["changes"])
    assert doc["frr-route-reflector"].count("route-reflector-client") == 1


def test_migrate_output_file(tmp_path: Path) -> None:
    target = tmp_path / "evpn-agent.yaml"
    result = migrate("--route-reflector", "192.0.2.1", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert f"Wrote the evpn-agent configuration to {target}." in result.stdout
    assert "== evpn-agent configuration" not in result.stdout
    assert parse(target.read_text()).vtep_ip == "192.0.2.11"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # the written file passes config check
    assert run("config", "check", str(target)).exit_code == 0
    again = migrate("--route-reflector", "192.0.2.1", "--output", str(target))
    assert again.exit_code == 1 and "exists; use --force" in again.stderr
    forced = migrate("--route-reflector", "192.0.2.2", "--output", str(target), "--force")
    assert forced.exit_code == 0
    assert "192.0.2.2" in target.read_text()
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_migrate_output_unwritable(tmp_path: Path) -> None:
    result = migrate("--output", str(tmp_path / "missing-dir" / "x.yaml"))
    assert result.exit_code == 1
    assert "cannot write" in result.stderr and "No such file or directory" in result.stderr


def test_migrate_output_stdout_sends_the_report_to_stderr() -> None:
    result = migrate("--route-reflector", "192.0.2.1", "--output", "-")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["vnis"] == [10, 30, 2000]
    assert parse(result.stdout).local_as == 65000
    assert "== Changes to make" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--json", "--output", "-"), "choose one"),
        (("--route-reflector", "rr1.example"), "not an IP address"),
        (("--route-reflector", "192.0.2.1", "--route-reflector", "192.0.2.1"), "given twice"),
        (("--local-as", "0"), "--local-as"),
    ],
)
def test_migrate_usage_errors(args: tuple[str, ...], expected: str) -> None:
    result = migrate(*args)
    assert result.exit_code == 2
    assert expected in result.stderr


def test_migrate_requires_local_as() -> None:
    result = run("migrate-lnv", "--interfaces", str(DOC / "interfaces"))
    assert result.exit_code == 2 and "--local-as" in result.stderr


def test_migrate_malformed_input(tmp_path: Path) -> None:
    interfaces = write(tmp_path, "iface vni-10\n  vxlan-id 0\nsource nowhere\n", "interfaces")
    vxrd = write(tmp_path, "[common]\n", "vxrd.conf")
    args = ("migrate-lnv", "--vxrd-conf", vxrd, "--interfaces", interfaces, "--local-as", "1")
    result = run(*args)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {interfaces}:2: iface vni-10: vxlan-id 0 is out of range 1..16777214",
        f"error: {interfaces}:3: source {tmp_path / 'nowhere'}: cannot read: "
        "No such file or directory",
    ]
    result = run(*args, "--json")
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)["errors"]) == 2


def test_migrate_missing_files(tmp_path: Path) -> None:
    result = run(
        "migrate-lnv",
        "--vxrd-conf",
        str(tmp_path / "vxrd.conf"),
        "--interfaces",
        str(tmp_path / "interfaces"),
        "--local-as",
        "65000",
    )
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'vxrd.conf'}: cannot read: No such file" in result.stderr
    assert f"error: {tmp_path / 'interfaces'}: cannot read: No such file" in result.stderr
    assert "Traceback" not in result.output


def test_check_round_trips_every_key(tmp_path: Path) -> None:
    text = """
local-as: 65000
router-id: 192.0.2.9
vtep-ip: 2001:db8::21
local-address: 2001:db8::21
route-reflectors:
  - {address: 2001:db8::1, password: "a: #b' c", hold-time: 30, port: 1179}
vnis: [1, 16777215]
route-targets:
  1: {both: ["192.0.2.9:1"]}
control-socket: /run/x.sock
state-dir: /var/lib/evpn-agent
log-level: debug
log-destination: "file:/var/log/evpn-agent.log"
metrics-address: "[::1]:9600"
sweep-delay: 0
reconcile-interval: 2.5
"""
    result = run("config", "check", "--show-secrets", write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert effective(parse(result.stdout), show_secrets=True) == effective(
        parse(text), show_secrets=True
    )
