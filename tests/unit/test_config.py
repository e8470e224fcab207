from pathlib import Path

import pytest

from evpn_agent.config import ConfigError, load, parse
from evpn_agent.model import RouteTarget

GOOD = """
local-as: 65000
route-reflectors:
  - address: 192.0.2.1
    password: s3cret
    hold-time: 30
  - 192.0.2.2
vnis: [100, 200]
route-targets:
  100: {import: ["65000:1100"], export: ["65000:1100"]}
"""


def test_good_config_with_defaults() -> None:
    cfg = parse(GOOD, "a.yaml")
    assert cfg.local_as == 65000
    assert [rr.address for rr in cfg.route_reflectors] == ["192.0.2.1", "192.0.2.2"]
    assert cfg.route_reflectors[0].password == "s3cret"
    assert cfg.route_reflectors[0].hold_time == 30
    assert cfg.route_reflectors[1].hold_time == 9
    assert cfg.vnis == frozenset({100, 200})
    assert cfg.route_targets[100].import_rts == (RouteTarget(65000, 1100),)
    assert cfg.vtep_ip is None and cfg.router_id is None
    assert cfg.manages(100) and not cfg.manages(300)


def test_reconcile_budget_defaults_to_a_tenth_of_a_percent_and_zero_turns_it_off() -> None:
    assert parse(GOOD).reconcile_budget == 0.1
    assert parse(GOOD + "reconcile-budget: 0\n").reconcile_budget == 0.0
    assert parse(GOOD + "reconcile-budget: 2.5\n").reconcile_budget == 2.5


def test_vnis_default_to_everything_discovered() -> None:
    cfg = parse("local-as: 65000\nroute-reflectors: [192.0.2.1]\n")
    assert cfg.vnis is None and cfg.manages(4242)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("route-reflectors: [192.0.2.1]\n", "key 'local-as': missing"),
        ("local-as: 65000\n", "key 'route-reflectors': missing"),
        ("local-as: x\nroute-reflectors: [192.0.2.1]\n", "key 'local-as': expected an integer"),
        (
            "local-as: 65000\nroute-reflectors: [999.1.1.1]\n",
            "key 'route-reflectors[0].address': not an IP address",
        ),
        (
            "local-as: 65000\nroute-reflectors: [{address: 192.0.2.1, hold-time: 1}]\n",
            "key 'route-reflectors[0].hold-time': 1 is out of range",
        ),
        ("local-as: 65000\nroute-reflectors: [192.0.2.1]\nvnis: [0]\n", "key 'vnis[0]'"),
        ("local-as: 65000\nroute-reflectors: [192.0.2.1]\nvnis: [16777216]\n", "key 'vnis[0]'"),
        (
            "local-as: 65000\nroute-reflectors: [192.0.2.1]\nrouter-id: 2001:db8::1\n",
            "key 'router-id': must be an IPv4 address",
        ),
        ("local-as: 65000\nroute-reflectors: [192.0.2.1]\nbogus: 1\n", "key 'bogus': unknown key"),
        (
            "local-as: 65000\nroute-reflectors: [192.0.2.1]\nroute-targets: {100: {import: [x]}}\n",
            "key 'route-targets.100.import[0]'",
        ),
        ("local-as: 65000\nroute-reflectors: [192.0.2.1, 192.0.2.1]\n", "listed twice"),
        (
            "local-as: 65000\nroute-reflectors: [192.0.2.1]\nnetlink-buffer-size: 1024\n",
            "key 'netlink-buffer-size': 1024 is out of range",
        ),
        (
            "local-as: 65000\nroute-reflectors: [{address: 192.0.2.1, passive: yes please}]\n",
            "key 'route-reflectors[0].passive': expected true or false",
        ),
        (
            "local-as: 65000\nroute-reflectors: [{address: 192.0.2.1, passive: true}]\n",
            "key 'route-reflectors[0].passive': needs 'local-address'",
        ),
        ("local-as: 65000\nroute-reflectors: [192.0.2.1]\nlog-level: loud\n", "key 'log-level'"),
        (
            "local-as: 65000\nroute-reflectors: [192.0.2.1]\nreconcile-budget: 150\n",
            "key 'reconcile-budget': expected a percentage 0..100, got 150",
        ),
        (
            "local-as: 65000\nroute-reflectors: [192.0.2.1]\nreconcile-budget: lots\n",
            "key 'reconcile-budget': expected a percentage",
        ),
        ("local-as: [\n", "invalid YAML"),
        ("- a\n- b\n", "mapping of keys at the top level"),
    ],
)
def test_errors_name_file_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "/etc/evpn-agent/x.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("/etc/evpn-agent/x.yaml: ")


def test_all_problems_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        parse("local-as: -1\nroute-reflectors: [nope]\nvnis: [0]\n", "f.yaml")
    assert len(info.value.problems) == 3


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yaml")


def test_log_destinations() -> None:
    base = "local-as: 65000\nroute-reflectors: [192.0.2.1]\n"
    assert parse(base).log_destination == "stderr"
    assert parse(base + "log-destination: syslog\n").log_destination == "syslog"
    assert parse(base + "log-destination: stdout\n").log_destination == "stderr"
    assert parse(base + "log-destination: file:/var/log/evpn-agent.log\n").log_destination == (
        "file:/var/log/evpn-agent.log"
    )
    with pytest.raises(ConfigError, match="key 'log-destination'"):
        parse(base + "log-destination: file:relative.log\n")


def test_passive_peer() -> None:
    cfg = parse(
        "local-as: 65000\nlocal-address: 192.0.2.21\n"
        "route-reflectors: [{address: 192.0.2.1, passive: true}, 192.0.2.2]\n",
        "x.yaml",
    )
    assert [rr.passive for rr in cfg.route_reflectors] == [True, False]
