"""LNV migration: vxrd.conf and ifupdown2 parsing, conversion, and every error naming its
file and line. Inputs: tests/data/lnv (modelled on Cumulus's documented LNV example) and
small in-memory files."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evpn_agent.cli_config import FileReader
from evpn_agent.config import ConfigError, parse
from evpn_agent.lnv import (
    Change,
    LnvError,
    Location,
    Migration,
    listen_ranges,
    migrate_files,
    render_frr,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "lnv"
DOC = DATA / "doc-example"
SVC = DATA / "service-node"


class MemoryReader:
    """Files in a dict; paths in ``unreadable`` fail as a permission problem would."""

    def __init__(self, files: dict[str, str], unreadable: frozenset[str] = frozenset()) -> None:
        self.files = files
        self.unreadable = unreadable

    def read(self, path: str) -> str:
        if path in self.unreadable:
            raise PermissionError(13, "Permission denied")
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory")
        return self.files[path]

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in self.files if fnmatch.fnmatchcase(p, pattern))

    def listdir(self, path: str) -> list[str]:
        names = [p[len(path) + 1 :] for p in self.files if p.startswith(path + "/")]
        if not names:
            raise FileNotFoundError(2, "No such file or directory")
        return [n for n in names if "/" not in n]


VXRD = "[common]\nsvcnode_ip = 192.0.2.3\n\n[vxrd]\nhead_rep = true\n"
DEVICE = """
auto bridge
iface bridge
  bridge-ports vni-10
  bridge-vids 10
  bridge-vlan-aware yes

auto vni-10
iface vni-10
  vxlan-id 10
  vxlan-local-tunnelip 192.0.2.11
  bridge-access 10
"""


def migrate_memory(
    interfaces: str,
    vxrd: str = VXRD,
    extra: dict[str, str] | None = None,
    unreadable: frozenset[str] = frozenset(),
    route_reflectors: tuple[str, ...] = ("192.0.2.1",),
) -> Migration:
    files = {"/etc/vxrd.conf": vxrd, "/etc/network/interfaces": interfaces, **(extra or {})}
    return migrate_files(
        "/etc/vxrd.conf",
        "/etc/network/interfaces",
        MemoryReader(files, unreadable),
        local_as=65000,
        route_reflectors=route_reflectors,
    )


def problems_of(
    interfaces: str,
    vxrd: str = VXRD,
    extra: dict[str, str] | None = None,
    unreadable: frozenset[str] = frozenset(),
) -> list[str]:
    with pytest.raises(LnvError) as info:
        migrate_memory(interfaces, vxrd, extra, unreadable)
    return info.value.problems


def doc_example(route_reflectors: tuple[str, ...] = ("192.0.2.1",)) -> Migration:
    return migrate_files(
        str(DOC / "vxrd.conf"),
        str(DOC / "interfaces"),
        FileReader(),
        local_as=65000,
        route_reflectors=route_reflectors,
    )


def line_of(change: Change) -> str:
    assert change.where.line is not None
    return Path(change.where.file).read_text().splitlines()[change.where.line - 1]


# ---------------------------------------------------------------- the documented example


def test_doc_example_config_loads_with_vnis_and_vtep() -> None:
    m = doc_example()
    cfg = parse(m.config_text, "generated")
    assert cfg.local_as == 65000
    assert cfg.vtep_ip == "192.0.2.11"
    assert cfg.vnis == frozenset({10, 2000, 30})
    assert [rr.address for rr in cfg.route_reflectors] == ["192.0.2.1"]
    assert m.vtep_ip == "192.0.2.11"
    assert m.replication == "head-end"
    assert m.service_nodes == ("192.0.2.3",)
    assert m.sources == (
        str(DOC / "vxrd.conf"),
        str(DOC / "vxrd.conf.override"),
        str(DOC / "interfaces"),
    )


def test_doc_example_vni_to_vlan_mapping_is_recorded_as_comments() -> None:
    m = doc_example()
    assert [(v.vni, v.device, v.bridge, v.vlan) for v in m.vnis] == [
        (10, "vni-10", "bridge", 10),
        (30, "vni-30", "bridge", 30),
        (2000, "vni-2000", "bridge", 20),
    ]
    comments = [line for line in m.config_text.splitlines() if line.startswith("#   2000")]
    assert len(comments) == 1 and "vni-2000" in comments[0] and "VLAN 20" in comments[0]


def test_doc_example_changes_name_each_offending_line() -> None:
    m = doc_example()
    for change in m.changes:
        if change.current is not None:
            assert change.current in line_of(change), change
    got = {
        (Path(c.where.file).name, c.where.line, c.interface, c.action, c.current or c.wanted)
        for c in m.changes
        if c.action != "service"
    }
    assert ("interfaces", 6, "lo", "remove", "vxrd-src-ip 192.0.2.11") in got
    assert ("interfaces", 7, "lo", "remove", "vxrd-svcnode-ip 192.0.2.3") in got
    for device, iface_line, tunnel_line in (("vni-10", 31, 36), ("vni-2000", 39, 44)):
        assert ("interfaces", iface_line, device, "add", "vxlan-learning no") in got
        assert ("interfaces", iface_line, device, "add", "bridge-learning off") in got
        assert ("interfaces", iface_line, device, "recommend", "bridge-arp-nd-suppress on") in got
        assert ("interfaces", tunnel_line, device, "keep", "vxlan-local-tunnelip 192.0.2.11") in got
    assert len(got) == 2 + 3 * 4
    for change in m.changes:
        if change.action == "add":
            assert line_of(change).startswith("iface ")


def test_doc_example_services_to_stop() -> None:
    services = [c for c in doc_example().changes if c.action == "service"]
    assert "vxrd.service" in services[0].summary
    assert services[0].where == Location(str(DOC / "vxrd.conf"))
    assert "vxsnd.service" in services[1].summary and "192.0.2.3" in services[1].summary
    # svcnode_ip was last set by the override file, which wins over vxrd.conf
    assert services[1].where == Location(str(DOC / "vxrd.conf.override"), 5)


def test_doc_example_route_reflector_snippet() -> None:
    lines = doc_example(("192.0.2.1", "192.0.2.2")).frr_config.splitlines()
    body = [line for line in lines if not line.lstrip().startswith("!")]
    assert body == [
        "router bgp 65000",
        " bgp cluster-id 192.0.2.1",
        " no bgp default ipv4-unicast",
        " neighbor VTEPS peer-group",
        " neighbor VTEPS remote-as 65000",
        " neighbor VTEPS timers 3 9",
        " bgp listen range 192.0.2.0/24 peer-group VTEPS",
        " address-family l2vpn evpn",
        "  neighbor VTEPS activate",
        "  neighbor VTEPS route-reflector-client",
        " exit-address-family",
        "exit",
    ]
    assert any("(192.0.2.11)" in line for line in lines)


def test_without_route_reflectors_a_placeholder_and_a_warning() -> None:
    m = doc_example(route_reflectors=())
    assert "# route-reflectors: REQUIRED" in m.config_text
    assert "192.0.2.3" in m.config_text  # the old service node, as a hint
    assert any("--route-reflector" in w and "192.0.2.3" in w for w in m.warnings)
    with pytest.raises(ConfigError) as info:
        parse(m.config_text)
    assert [p.split(":")[0] for p in info.value.problems] == ["key 'route-reflectors'"]
    assert " bgp cluster-id CLUSTER-ID" in m.frr_config


# ---------------------------------------------------------------- service-node variant


def service_node() -> Migration:
    return migrate_files(
        str(SVC / "vxrd.conf"), str(SVC / "interfaces"), FileReader(), local_as=65000
    )


def test_service_node_variant_follows_the_relative_source() -> None:
    m = service_node()
    assert str(SVC / "interfaces.d" / "vxlans") in m.sources
    assert m.replication == "service-node"
    assert [(v.vni, v.bridge, v.vlan) for v in m.vnis] == [
        (10, "bridge", 10),
        (30, "br-30", None),
        (2000, "bridge", 20),
    ]
    assert "log-level: debug" in m.config_text
    assert parse(
        m.config_text.replace("# route-reflectors: REQUIRED", "route-reflectors: [192.0.2.1]\n#")
    )


def test_service_node_variant_changes() -> None:
    m = service_node()
    for change in m.changes:
        if change.current is not None:
            assert change.current in line_of(change), change
    removed = [
        (Path(c.where.file).name, c.where.line, c.current)
        for c in m.changes
        if c.action == "remove"
    ]
    assert removed == [
        ("vxlans", 5, "vxlan-svcnodeip 192.0.2.3"),
        ("vxlans", 12, "vxlan-remoteip 192.0.2.12"),
        ("vxlans", 13, "vxlan-remoteip 192.0.2.13"),
        ("vxlans", 22, "vxlan-svcnodeip 192.0.2.3"),
    ]
    changed = {(c.interface, c.current, c.wanted) for c in m.changes if c.action == "change"}
    assert changed == {
        ("vni-2000", "bridge-learning on", "bridge-learning off"),
        ("vni-30", "bridge-learning vni-30=on", "bridge-learning vni-30=off"),
    }
    vni30 = {c.action for c in m.changes if c.interface == "vni-30"}
    assert vni30 == {"remove", "change", "keep"}  # vxlan-learning and suppression already set


def test_service_node_listen_range_covers_the_static_remote_vteps() -> None:
    snippet = service_node().frr_config
    assert "192.0.2.11, 192.0.2.12, 192.0.2.13" in snippet
    assert " bgp listen range 192.0.2.0/24 peer-group VTEPS" in snippet


# ---------------------------------------------------------------- vxrd.conf


def test_override_file_wins_and_lo_attributes_win_over_both() -> None:
    vxrd = "[common]\nsrc_ip = 192.0.2.50\n"
    interfaces = DEVICE.replace("vxlan-local-tunnelip 192.0.2.11\n", "")
    override = {"/etc/vxrd.conf.override": "[common]\nsrc_ip=192.0.2.60\n"}
    assert migrate_memory(interfaces, vxrd, override).vtep_ip == "192.0.2.60"
    lo = "auto lo\niface lo inet loopback\n  vxrd-src-ip 192.0.2.70\n"
    m = migrate_memory(lo + interfaces, vxrd, override)
    assert m.vtep_ip == "192.0.2.70"
    adds = [c.wanted for c in m.changes if c.action == "add"]
    assert "vxlan-local-tunnelip 192.0.2.70" in adds


def test_vxrd_conf_errors_name_file_and_line() -> None:
    vxrd = "svcnode_ip = 192.0.2.3\n[common]\nthis line has no separator\n"
    assert problems_of(DEVICE, vxrd=vxrd) == [
        "/etc/vxrd.conf:1: 'svcnode_ip' comes before any [section] header",
        "/etc/vxrd.conf:3: not a 'key = value' line: 'this line has no separator'",
    ]


def test_vxrd_conf_misplaced_and_unknown_keys_are_warnings() -> None:
    vxrd = "[common]\nhead_rep = false\nbogus = 1\n[vxrd]\nhead_rep = maybe\n"
    warnings = migrate_memory(DEVICE, vxrd).warnings
    assert (
        "/etc/vxrd.conf:2: head_rep in [common] is ignored: vxrd reads it from [vxrd] only"
        in warnings
    )
    assert "/etc/vxrd.conf:3: bogus in [common] is ignored: vxrd does not know it" in warnings
    assert any(w.startswith("/etc/vxrd.conf:5: head_rep 'maybe'") for w in warnings)


def test_head_end_and_service_node_together_is_flagged() -> None:
    interfaces = DEVICE + "  vxlan-svcnodeip 192.0.2.3\n"
    warnings = migrate_memory(interfaces).warnings
    assert any("/etc/vxrd.conf:5: head_rep is on" in w for w in warnings)


def test_missing_vxrd_conf_is_an_error_missing_override_is_not() -> None:
    reader = MemoryReader({"/etc/network/interfaces": DEVICE})
    with pytest.raises(LnvError) as info:
        migrate_files("/etc/vxrd.conf", "/etc/network/interfaces", reader, local_as=65000)
    assert info.value.problems == ["/etc/vxrd.conf: cannot read: No such file or directory"]
    assert migrate_memory(DEVICE).sources == ("/etc/vxrd.conf", "/etc/network/interfaces")


def test_unreadable_override_is_an_error() -> None:
    problems = problems_of(
        DEVICE,
        extra={"/etc/vxrd.conf.override": ""},
        unreadable=frozenset({"/etc/vxrd.conf.override"}),
    )
    assert problems == ["/etc/vxrd.conf.override: cannot read: Permission denied"]


def test_logging_settings_carry_over() -> None:
    vxrd = "[common]\nloglevel = WARNING\nlogdest = syslog\n"
    m = migrate_memory(DEVICE, vxrd)
    assert parse(m.config_text).log_level == "warning"
    assert parse(m.config_text).log_destination == "syslog"
    m = migrate_memory(DEVICE, "[common]\nlogdest = /var/log/vxrd.log\n")
    assert any("logdest /var/log/vxrd.log is not carried over" in w for w in m.warnings)


# ---------------------------------------------------------------- interfaces: malformed


def test_missing_interfaces_file() -> None:
    reader = MemoryReader({"/etc/vxrd.conf": VXRD})
    with pytest.raises(LnvError) as info:
        migrate_files("/etc/vxrd.conf", "/etc/network/interfaces", reader, local_as=65000)
    assert info.value.problems == [
        "/etc/network/interfaces: cannot read: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vxlan-id 10\n", "/etc/network/interfaces:1: 'vxlan-id 10' is outside any iface stanza"),
        ("auto vni-10\nvxlan-id 10\n", "/etc/network/interfaces:2: 'vxlan-id 10' is outside any"),
        ("iface\n", "/etc/network/interfaces:1: 'iface' without an interface name"),
        ("iface x inet5 static\n", "/etc/network/interfaces:1: iface x: unknown address family"),
        ("iface x\n  vxlan-id\n", "/etc/network/interfaces:2: iface x: 'vxlan-id' has no value"),
        ("auto\n", "/etc/network/interfaces:1: 'auto' without interface names"),
        ("source\n", "/etc/network/interfaces:1: 'source' without a path"),
    ],
)
def test_bad_stanzas(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "vxlan-id 0 is out of range 1..16777214"),
        ("16777215", "vxlan-id 16777215 is out of range 1..16777214"),
        ("99999999", "vxlan-id 99999999 is out of range 1..16777214"),
        ("ten", "vxlan-id 'ten' is not a number"),
    ],
)
def test_vxlan_id_out_of_range(value: str, expected: str) -> None:
    problems = problems_of(DEVICE.replace("vxlan-id 10", f"vxlan-id {value}"))
    assert problems == [f"/etc/network/interfaces:10: iface vni-10: {expected}"]


def test_conflicting_local_tunnel_ips() -> None:
    second = "\niface vni-20\n  vxlan-id 20\n  vxlan-local-tunnelip 192.0.2.99\n"
    assert problems_of(DEVICE + second) == [
        "/etc/network/interfaces:16: iface vni-20: vxlan-local-tunnelip 192.0.2.99 conflicts "
        "with 192.0.2.11 of vni-10 (/etc/network/interfaces:11): a VTEP has one address, "
        "make them agree"
    ]


def test_bad_local_tunnel_ip_duplicate_vni_and_twice_set_id_all_reported() -> None:
    text = DEVICE.replace("192.0.2.11", "192.0.2.300") + (
        "\niface vni-b\n  vxlan-id 10\n\niface vni-c\n  vxlan-id 30\n  vxlan-id 31\n"
    )
    problems = problems_of(text)
    assert problems == [
        "/etc/network/interfaces:11: iface vni-10: vxlan-local-tunnelip '192.0.2.300' is not an "
        "IP address",
        "/etc/network/interfaces:15: iface vni-b: VNI 10 is also used by vni-10 "
        "(/etc/network/interfaces:10)",
        "/etc/network/interfaces:19: iface vni-c: vxlan-id 31 conflicts with vxlan-id 30 at "
        "/etc/network/interfaces:18",
    ]


def test_bad_bridge_access() -> None:
    problems = problems_of(DEVICE.replace("bridge-access 10", "bridge-access 5000"))
    assert problems == [
        "/etc/network/interfaces:12: iface vni-10: bridge-access '5000' is not a VLAN id 1..4094"
    ]


def test_no_vxlan_device_is_an_error() -> None:
    assert problems_of("auto lo\niface lo inet loopback\n") == [
        "/etc/network/interfaces: no VXLAN device (an iface stanza with vxlan-id) found: "
        "nothing to migrate"
    ]


def test_unreadable_include_names_the_source_line() -> None:
    text = "# vxlans elsewhere\nsource vxlans.d/leaf\n"
    problems = problems_of(
        text,
        extra={"/etc/network/vxlans.d/leaf": DEVICE},
        unreadable=frozenset({"/etc/network/vxlans.d/leaf"}),
    )
    assert problems == [
        "/etc/network/interfaces:2: source /etc/network/vxlans.d/leaf: cannot read: "
        "Permission denied"
    ]


def test_missing_include_is_an_error_an_empty_glob_is_not() -> None:
    problems = problems_of(DEVICE + "source /etc/network/missing\n")
    assert problems == [
        "/etc/network/interfaces:13: source /etc/network/missing: cannot read: "
        "No such file or directory"
    ]
    assert migrate_memory(DEVICE + "source /etc/network/interfaces.d/*\n").vnis


def test_source_loop_is_an_error() -> None:
    problems = problems_of(DEVICE + "source interfaces\n")
    assert problems == [
        "/etc/network/interfaces:13: source loop: /etc/network/interfaces includes itself"
    ]


def test_source_directory_reads_run_parts_names_only() -> None:
    extra = {
        "/etc/network/interfaces.d/vni-10": DEVICE,
        "/etc/network/interfaces.d/vni-20.bak": "this would not parse\n",
    }
    m = migrate_memory("source-directory interfaces.d\n", extra=extra)
    assert [v.vni for v in m.vnis] == [10]
    assert "/etc/network/interfaces.d/vni-20.bak" not in m.sources


def test_all_problems_of_all_files_together() -> None:
    problems = problems_of("vxlan-id 1\niface\n", vxrd="[common]\nno separator\n")
    assert len(problems) == 3


# ---------------------------------------------------------------- interfaces: syntax


def test_continuations_merged_stanzas_and_underscores() -> None:
    text = (
        "iface bridge\n  bridge-ports swp1 \\\n     vni-10\n  bridge-vlan-aware yes\n"
        "iface vni-10\n  vxlan_id 10\n"
        "iface vni-10 inet static\n  vxlan-local-tunnelip 192.0.2.11\n  bridge-access 10\n"
    )
    m = migrate_memory(text)
    assert [(v.vni, v.bridge, v.vlan) for v in m.vnis] == [(10, "bridge", 10)]
    assert m.vtep_ip == "192.0.2.11"
    keep = [c for c in m.changes if c.action == "keep"]
    assert keep[0].where == Location("/etc/network/interfaces", 8)


def test_template_lines_are_warned_about() -> None:
    m = migrate_memory("% for v in [10]:\n% endfor\n" + DEVICE)
    assert m.warnings[0].startswith("/etc/network/interfaces:1: template line not evaluated")


def test_vlan_aware_without_access_vlan_and_missing_vid() -> None:
    text = DEVICE.replace("  bridge-access 10\n", "").replace("bridge-vids 10", "bridge-vids 20-30")
    m = migrate_memory(text)
    assert m.vnis[0].vlan == 1
    assert any("no bridge-access" in w for w in m.warnings)
    m = migrate_memory(DEVICE.replace("bridge-vids 10", "bridge-vids 20-30"))
    assert any("VLAN 10 of vni-10 is not in bridge's bridge-vids" in w for w in m.warnings)


def test_device_outside_any_bridge_is_warned_about() -> None:
    m = migrate_memory(DEVICE.replace("bridge-ports vni-10", "bridge-ports swp1"))
    assert m.vnis[0].bridge is None
    assert any("vni-10 (VNI 10) is in no bridge's bridge-ports" in w for w in m.warnings)


def test_vxlan_learning_yes_is_changed_and_no_is_kept() -> None:
    m = migrate_memory(DEVICE + "  vxlan-learning yes\n")
    assert [(c.current, c.wanted) for c in m.changes if c.action == "change"] == [
        ("vxlan-learning yes", "vxlan-learning no")
    ]
    m = migrate_memory(
        DEVICE + "  vxlan-learning off\n  bridge-learning off\n  bridge-arp-nd-suppress on\n"
    )
    assert {c.action for c in m.changes if c.interface == "vni-10"} == {"keep"}


# ---------------------------------------------------------------- rendering


def test_listen_ranges() -> None:
    assert listen_ranges(["192.0.2.11"]) == ["192.0.2.0/24"]
    assert listen_ranges(["192.0.2.11", "192.0.3.5"]) == ["192.0.2.0/23"]
    assert listen_ranges(["2001:db8::1", "192.0.2.1"]) == ["192.0.2.0/24", "2001:db8::/64"]
    assert listen_ranges([]) == []


def test_frr_placeholders_without_ipv4_reflector_or_vteps() -> None:
    snippet = render_frr(65000, ["2001:db8::1"], [])
    assert " bgp cluster-id CLUSTER-ID" in snippet
    assert " bgp listen range VTEP-RANGE peer-group VTEPS" in snippet


def test_generated_config_with_bad_reflector_is_refused() -> None:
    with pytest.raises(LnvError) as info:
        migrate_memory(DEVICE, route_reflectors=("not-an-address",))
    assert "the generated configuration is invalid: key 'route-reflectors[0].address'" in str(
        info.value
    )


def test_change_summaries() -> None:
    where = Location("f", 1)
    assert Change("remove", where, "x", "a 1", None, "").summary == "remove 'a 1'"
    assert Change("add", where, "x", None, "a 1", "").summary == "add 'a 1'"
    assert Change("change", where, "x", "a 1", "a 2", "").summary == "change 'a 1' to 'a 2'"
    assert Change("recommend", where, "x", None, "a 1", "").summary == "add 'a 1' (recommended)"
    assert Change("keep", where, "x", "a 1", "a 1", "").summary == "keep 'a 1'"
    assert str(where) == "f:1" and str(Location("f")) == "f"


def test_json_form_is_complete() -> None:
    doc = doc_example().to_json()
    assert doc["vtep-ip"] == "192.0.2.11"
    assert [v["vni"] for v in doc["vnis"]] == [10, 30, 2000]
    assert doc["changes"][0] == {
        "action": "remove",
        "file": str(DOC / "interfaces"),
        "line": 6,
        "interface": "lo",
        "current": "vxrd-src-ip 192.0.2.11",
        "wanted": None,
        "why": doc["changes"][0]["why"],
    }
    assert doc["frr-route-reflector"].startswith("!")


# ---------------------------------------------------------------- hostile input

_WORDS = [
    "auto", "iface", "source", "source-directory", "vlan", "mapping", "vni-1", "lo", "bridge",
    "inet", "vxlan-id", "vxlan-local-tunnelip", "vxlan-svcnodeip", "vxlan-remoteip",
    "bridge-ports", "bridge-access", "bridge-vlan-aware", "bridge-vids", "bridge-learning",
    "vxrd-src-ip", "yes", "on", "1", "10", "0", "4095", "1-3", "²", "192.0.2.1", "::1",
    "vni-1=on", "*", "x", "\\", "#", "%", "[common]", "[vxrd]", "head_rep", "=", ":",
    "src_ip", "svcnode_ip", "loglevel", "logdest", "true",
]  # fmt: skip
_lines = st.lists(st.sampled_from(_WORDS) | st.text(max_size=6), max_size=4).map(" ".join)
_texts = st.lists(st.sampled_from(["", "  "]).flatmap(lambda i: _lines.map(i.__add__)), max_size=12)


@given(_texts.map("\n".join), _texts.map("\n".join))
@settings(max_examples=300, deadline=None)
def test_hostile_files_give_lnv_errors_only(interfaces: str, vxrd: str) -> None:
    try:
        m = migrate_memory(interfaces, vxrd, extra={"/etc/network/x": DEVICE})
    except LnvError as exc:
        assert exc.problems
    else:
        parse(m.config_text)


@pytest.mark.frr
@pytest.mark.skipif(shutil.which("vtysh") is None, reason="FRR's vtysh is not installed")
def test_frr_accepts_the_route_reflector_snippet(tmp_path: Path) -> None:
    conf = tmp_path / "frr.conf"
    conf.write_text(doc_example(("192.0.2.1", "192.0.2.2")).frr_config)
    checked = subprocess.run(
        ["vtysh", "--dryrun", "-f", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
