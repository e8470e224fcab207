"""The committed ExaBGP fixtures hold what tests/fixtures/README.md says they hold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _capture_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fixture_capture", FIXTURES / "capture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capture = _capture_module()


def test_every_documented_file_exists_and_is_listed_in_the_readme() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for name in capture.FILES:
        assert (FIXTURES / f"{name}.jsonl").stat().st_size > 0
        assert f"`{name}.jsonl`" in readme


@pytest.mark.parametrize("name", sorted(set(capture.FILES) - {"session"}))
def test_lines_are_of_their_kind(name: str) -> None:
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    assert lines
    assert {capture.classify(line) for line in lines} == {name}
    session = (FIXTURES / "session.jsonl").read_text().splitlines()
    assert set(lines) <= set(session)


def test_session_is_json_except_acks() -> None:
    for line in (FIXTURES / "session.jsonl").read_text().splitlines():
        if line not in ("done", "error"):
            assert json.loads(line)["exabgp"] == "5.0.0"


def test_key_facts_the_parser_relies_on() -> None:
    (type3,) = (FIXTURES / "frr_type3_announce.jsonl").read_text().splitlines()
    assert '"pmsi": "pmsi:ingressreplication:0:6(100):192.0.2.11"' in type3
    withdraw = json.loads((FIXTURES / "frr_type2_withdraw.jsonl").read_text())
    nlris = withdraw["neighbor"]["message"]["update"]["withdraw"]["l2vpn evpn"]
    assert {n["label"][0][0] for n in nlris} == {0}
    assert {n.get("ip") for n in nlris} == {None, "198.51.100.1", "2001:db8:100::1"}
    acks = (FIXTURES / "acks.jsonl").read_text().split()
    assert "error" in acks and "done" in acks
