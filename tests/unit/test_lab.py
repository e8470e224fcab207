"""The lab: its containerlab files, the plan the netns runner reads from them, the example
configuration, and (as root, with FRR) the demo itself, built, checked and removed."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from evpn_agent import config as agent_config
from lab import runner, topology
from lab.fabric import FRR_DIR, REPO_ROOT

LAB = REPO_ROOT / "lab"
CLAB_FILES = sorted(LAB.glob("*.clab.yml"))
SCHEMA = Path(os.environ.get("CLAB_SCHEMA", "/work/shared/data/clab.schema.json"))
TOPOLOGY = LAB / "evpn.clab.yml"


def clab_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(TOPOLOGY.read_text())
    return doc


# ---------------------------------------------------------------- containerlab schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA.exists():
        pytest.skip(f"containerlab schema not found at {SCHEMA} (set CLAB_SCHEMA)")
    # Draft7Validator(...).iter_errors, not jsonschema.validate(): some of containerlab's
    # regexes fail the metaschema check that validate() runs first.
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_there_is_a_clab_file() -> None:
    assert TOPOLOGY in CLAB_FILES


@pytest.mark.parametrize("path", CLAB_FILES, ids=lambda p: p.name)
def test_clab_file_is_valid_containerlab(validator: jsonschema.Draft7Validator, path: Path) -> None:
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in validator.iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert errors == []


def test_schema_check_is_not_vacuous(validator: jsonschema.Draft7Validator) -> None:
    doc = clab_doc()
    doc["topology"]["nodes"]["h1"]["no-such-field"] = 1
    doc["topology"]["nodes"]["rr1"]["kind"] = "no-such-kind"
    bad = {tuple(e.absolute_path) for e in validator.iter_errors(doc)}
    assert ("topology", "nodes", "h1") in bad
    assert ("topology", "nodes", "rr1") in bad


# ---------------------------------------------------------------- the plan


@pytest.fixture(scope="module")
def plan() -> topology.Plan:
    return topology.load(TOPOLOGY)


def test_plan_has_every_node_as_a_namespace_with_its_role(plan: topology.Plan) -> None:
    roles = {name: node.role for name, node in plan.nodes.items()}
    assert roles == {
        "sw": "switch",
        "rr1": "route-reflector",
        "rr2": "route-reflector",
        "leaf1": "agent-vtep",
        "leaf2": "agent-vtep",
        "leaf3": "agent-vtep",
        "vtep4": "frr-vtep",
        **{f"h{i}": "host" for i in range(1, 7)},
    }


def test_plan_links_are_the_clab_links(plan: topology.Plan) -> None:
    links = {(str(link.a), str(link.b)): link.mtu for link in plan.links}
    assert len(links) == len(clab_doc()["topology"]["links"]) == 12
    underlay = {k: v for k, v in links.items() if k[0].startswith("sw:")}
    assert sorted(b.split(":")[0] for _, b in underlay) == [
        "leaf1", "leaf2", "leaf3", "rr1", "rr2", "vtep4",
    ]  # fmt: skip
    assert set(underlay.values()) == {topology.DEFAULT_MTU}  # room for VXLAN's 50 bytes
    assert links[("leaf1:eth2", "h1:eth1")] == 1500


def test_plan_addresses_come_from_exec_and_env(plan: topology.Plan) -> None:
    addresses = {n.name: n.address for n in plan.by_role("route-reflector", *topology.VTEP_ROLES)}
    assert addresses == {
        "rr1": "192.0.2.1",
        "rr2": "192.0.2.2",
        "leaf1": "192.0.2.11",
        "leaf2": "192.0.2.12",
        "leaf3": "192.0.2.13",
        "vtep4": "192.0.2.14",
    }
    assert plan.nodes["rr1"].addresses == (("eth1", "192.0.2.1/24"),)
    assert plan.nodes["h1"].macs == {"eth1": "02:00:5e:10:01:11"}


def test_plan_vteps_and_the_vlan_aware_leaf(plan: topology.Plan) -> None:
    leaf3 = plan.nodes["leaf3"].vtep
    assert leaf3 is not None and leaf3.bridge == "vlan-aware"
    assert [(v.vni, v.vlan, v.ports) for v in leaf3.vnis] == [
        (100, 10, ("eth2",)),
        (200, 20, ("eth3",)),
    ]
    leaf1 = plan.nodes["leaf1"].vtep
    assert leaf1 is not None and leaf1.bridge == "traditional"
    assert [(v.vni, v.ports) for v in leaf1.vnis] == [(100, ("eth2",)), (200, ())]
    assert plan.vnis == [100, 200]


def test_plan_hosts_share_one_subnet_and_differ_by_vni(plan: topology.Plan) -> None:
    hosts = {h.name: (h.vtep, h.port, h.vni, h.address) for h in plan.hosts}
    assert hosts == {
        "h1": ("leaf1", "eth2", 100, "198.51.100.11/24"),
        "h2": ("leaf3", "eth2", 100, "198.51.100.12/24"),
        "h3": ("vtep4", "eth2", 100, "198.51.100.13/24"),
        "h4": ("leaf2", "eth2", 200, "198.51.100.21/24"),
        "h5": ("leaf3", "eth3", 200, "198.51.100.22/24"),
        "h6": ("vtep4", "eth3", 200, "198.51.100.23/24"),
    }
    assert plan.expected_reachable(plan.host("h1"), plan.host("h3"))
    assert not plan.expected_reachable(plan.host("h1"), plan.host("h4"))


def test_plan_resolves_binds_to_files_here(plan: topology.Plan) -> None:
    assert plan.nodes["rr1"].frr_config == LAB / "frr" / "rr1" / "frr.conf"
    assert plan.nodes["vtep4"].frr_config == LAB / "frr" / "vtep4" / "frr.conf"
    assert plan.nodes["leaf2"].agent_config == LAB / "agent" / "leaf2.yaml"
    leaf1 = plan.nodes["leaf1"]
    assert leaf1.entrypoint is not None
    assert leaf1.host_argv(leaf1.entrypoint) == [str(LAB / "vtep-setup.sh")]
    assert plan.nodes["vtep4"].host_argv("/lab/vtep-setup.sh --x") == [
        str(LAB / "vtep-setup.sh"),
        "--x",
    ]
    # a path that is not bound stays as it is
    assert leaf1.host_argv("ip link show") == ["ip", "link", "show"]


def test_plan_problems_are_all_reported() -> None:
    doc = clab_doc()
    nodes = doc["topology"]["nodes"]
    nodes["h1"]["exec"][1] = "ip address add 10.1.1.1/24 dev eth1"  # not TEST-NET
    nodes["h2"]["labels"]["evpn-lab.role"] = "router"
    nodes["rr2"]["binds"] = ["frr/missing.conf:/etc/frr/frr.conf"]
    nodes["leaf1"]["env"]["LAB_VNIS"] = "100=eth7"
    doc["topology"]["links"].append({"endpoints": ["h3:eth2", "nowhere:eth1"]})
    with pytest.raises(topology.TopologyError) as info:
        topology.parse(doc, TOPOLOGY)
    text = str(info.value)
    for expected in (
        "10.1.1.1/24 is not a TEST-NET address",
        "node h2: label evpn-lab.role is 'router'",
        "bind source frr/missing.conf does not exist",
        "node leaf1: eth7 is used but no link makes it",
        "unknown node 'nowhere'",
    ):
        assert expected in text


def test_plan_rejects_what_the_runner_cannot_build() -> None:
    doc = clab_doc()
    doc["topology"]["kinds"] = {"linux": {"image": "alpine"}}
    doc["topology"]["nodes"]["h1"]["kind"] = "nokia_srlinux"
    with pytest.raises(topology.TopologyError) as info:
        topology.parse(doc, TOPOLOGY)
    assert "topology.kinds: not supported" in str(info.value)
    assert "node h1: kind 'nokia_srlinux'" in str(info.value)


def test_every_exec_command_also_runs_in_a_namespace(plan: topology.Plan) -> None:
    # exec commands are replayed verbatim in the namespaces: nothing container-only
    for node in plan.nodes.values():
        for command in node.exec:
            argv = node.host_argv(command)
            assert argv[0] in ("ip", "sysctl") or Path(argv[0]).is_file(), (node.name, command)


# ---------------------------------------------------------------- runner pieces


def test_frr_config_logs_into_the_work_directory() -> None:
    text = (LAB / "frr" / "rr1" / "frr.conf").read_text()
    out = runner.frr_daemon_config(text, Path("/w/rr1/frr/bgpd.log"))
    assert out.startswith("log file /w/rr1/frr/bgpd.log\n")
    assert "log syslog" not in out
    assert " bgp cluster-id 192.0.2.254" in out


def test_agent_settings_keep_the_file_but_own_socket_and_state(tmp_path: Path) -> None:
    settings = runner.agent_settings(LAB / "agent" / "leaf3.yaml", tmp_path)
    assert settings["vtep-ip"] == "192.0.2.13"
    assert settings["control-socket"] == str(tmp_path / "evpn-agent.sock")
    assert settings["state-dir"] == str(tmp_path / "state")
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(settings))
    assert agent_config.load(path).vnis == frozenset({100, 200})


def test_lab_namespaces_match_only_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["evpnlab1234ab12-rr1", "evpnlab99ffff-h1", "evpnlabx-rr1", "evt-b-2390", "evpnlab1-"]
    monkeypatch.setattr(runner, "list_namespaces", lambda: names)
    assert runner.lab_namespaces("evpnlab") == ["evpnlab1234ab12-rr1", "evpnlab99ffff-h1"]
    assert runner.lab_namespaces("evlt") == []


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = runner.LabState("evlt", "evlt1abcd", "/x.clab.yml", str(tmp_path / "work"), 1.0)
    state.nodes["leaf1"] = runner.NodeRecord("agent-vtep", "evlt1abcd-leaf1", "192.0.2.11",
                                             agent_pid=42, agent_socket="/s")  # fmt: skip
    state.save(tmp_path)
    assert runner.LabState.load(tmp_path) == state
    assert runner.LabState.load(tmp_path / "nothing") is None


# ---------------------------------------------------------------- configs/


def test_lab_agent_configs_load(plan: topology.Plan) -> None:
    for node in plan.by_role("agent-vtep"):
        assert node.agent_config is not None
        cfg = agent_config.load(node.agent_config)
        assert [rr.address for rr in cfg.route_reflectors] == ["192.0.2.1", "192.0.2.2"]


def test_example_config_loads_and_shows_every_key() -> None:
    path = REPO_ROOT / "configs" / "evpn-agent.yaml"
    cfg = agent_config.load(path)
    assert cfg.local_as == 65000 and len(cfg.route_reflectors) == 2
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == agent_config._KNOWN_KEYS
    assert set(doc["route-reflectors"][0]) == agent_config._RR_KEYS


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(REPO_ROOT / "configs" / "evpn-agent.service")
    service = unit["Service"]
    # the core notifies readiness; a restart's new instance moves the main PID to itself
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "all")
    assert re.fullmatch(
        r"/\S+/bin/evpn-agent run --config /etc/evpn-agent/evpn-agent\.yaml", service["ExecStart"]
    )
    assert re.fullmatch(
        r"/\S+/bin/evpn-agent reload --config /etc/evpn-agent/evpn-agent\.yaml",
        service["ExecReload"],
    )
    assert service["Restart"] == "on-failure"
    assert service.get("User", "root") == "root"
    assert int(service["LimitNOFILE"]) >= 4096
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def bgpd_complaints(text: str) -> str:
    """What ``bgpd -C`` (parse the configuration and exit) says about ``text``."""
    bgpd = FRR_DIR / "bgpd"
    if not os.access(bgpd, os.X_OK):
        pytest.skip(f"{bgpd} is not installed")
    if os.geteuid() != 0:
        pytest.skip("bgpd switches to user frr: needs root")
    # bgpd reads the file as user frr: not pytest's tmp_path (root's, mode 0700)
    directory = Path(tempfile.mkdtemp(prefix="evlt-bgpd-"))
    try:
        directory.chmod(0o755)
        conf = directory / "bgpd.conf"
        conf.write_text(text)
        conf.chmod(0o644)
        proc = subprocess.run(
            [str(bgpd), "-C", "-f", str(conf), "-z", str(directory / "zserv"), "-P", "0",
             "--vty_socket", str(directory)],
            # long: an `ip netns del` of thousands of devices elsewhere holds RTNL for
            # minutes, and bgpd dumps the addresses first (RTM_GETADDR waits for it)
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    # the exit status is 0 even for unknown commands: the complaints are the verdict
    return "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if "[EC " in line)


@pytest.mark.frr
@pytest.mark.parametrize("node", ["rr1", "rr2", "vtep4"])
def test_frr_configs_are_accepted_by_bgpd(node: str) -> None:
    text = (LAB / "frr" / node / "frr.conf").read_text()
    # without its 'log' line: complaints go to the output
    text = "\n".join(line for line in text.splitlines() if not line.startswith("log "))
    assert bgpd_complaints(text) == ""


@pytest.mark.frr
def test_bgpd_check_is_not_vacuous() -> None:
    assert "No such command" in bgpd_complaints("router bgp 65000\n bgp no-such-thing 1\n")


def test_vtep_setup_script_is_posix_sh() -> None:
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell is not None
    proc = subprocess.run([shell, "-n", str(LAB / "vtep-setup.sh")], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_fabrics_start_agents_from_compiled_bytecode() -> None:
    """Every module of the package has its bytecode once a fabric has started an agent
    (PYTHONDONTWRITEBYTECODE or not): no agent start compiles the package again."""
    import importlib.util

    from lab.fabric import environment

    environment.compile_agent.__wrapped__()
    for source in sorted((REPO_ROOT / "evpn_agent").rglob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), source
        assert cached.stat().st_mtime >= source.stat().st_mtime, source
