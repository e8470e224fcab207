"""Unit tests for the ExaBGP configuration renderer, checked by ExaBGP's own parser."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evpn_agent.speaker.conf import PROCESS_NAME, PeerSpec, quote, render

ARGV = [sys.executable, "-m", "evpn_agent", "core", "--config", "/etc/evpn agent/x y.yaml"]


def rendered(**overrides: Any) -> str:
    values: dict[str, Any] = {
        "router_id": "192.0.2.21",
        "local_as": 65000,
        "local_address": "192.0.2.21",
        "peers": [PeerSpec("192.0.2.1", hold_time=9), PeerSpec("192.0.2.2", password="s3cret")],
        "process_argv": ARGV,
    }
    values.update(overrides)
    return render(**values)


def load(text: str, tmp_path: Path) -> Any:
    """Parse with ExaBGP's Configuration, as `exabgp server` would."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())
    path = tmp_path / "exabgp.conf"
    path.write_text(text)
    configuration = Configuration([str(path)])
    assert configuration.reload(), configuration.error
    return configuration


def test_exabgp_validate_accepts_it(tmp_path: Path) -> None:
    path = tmp_path / "exabgp.conf"
    path.write_text(rendered())
    result = subprocess.run(
        [sys.executable, "-m", "exabgp", "validate", "-n", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"exabgp_log_destination": "stderr", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr


def test_neighbors_as_exabgp_reads_them(tmp_path: Path) -> None:
    from exabgp.protocol.family import AFI, SAFI

    configuration = load(rendered(), tmp_path)
    neighbors = {str(n["peer-address"]): n for n in configuration.neighbors.values()}
    assert sorted(neighbors) == ["192.0.2.1", "192.0.2.2"]
    first, second = neighbors["192.0.2.1"], neighbors["192.0.2.2"]
    for neighbor in (first, second):
        assert str(neighbor["router-id"]) == "192.0.2.21"
        assert str(neighbor["local-address"]) == "192.0.2.21"
        assert int(neighbor["local-as"]) == int(neighbor["peer-as"]) == 65000
        assert neighbor.families() == [(AFI.l2vpn, SAFI.evpn)]
        assert neighbor["adj-rib-in"] is False
        assert neighbor["capability"]["route-refresh"]
        assert neighbor["capability"]["graceful-restart"] == 120
        assert neighbor.api["processes"] == [PROCESS_NAME]
        assert neighbor.api["neighbor-changes"]
        assert neighbor.api["receive-parsed"] and neighbor.api["receive-update"]
        assert not neighbor.api["receive-packets"]
    assert int(first["hold-time"]) == 9
    assert first["md5-password"] is None
    assert second["md5-password"] == "s3cret"
    assert int(second["hold-time"]) == 90


def test_process(tmp_path: Path) -> None:
    configuration = load(rendered(), tmp_path)
    process = configuration.processes[PROCESS_NAME]
    assert process["run"] == ARGV
    assert process["encoder"] == "json"


def test_port_and_no_graceful_restart(tmp_path: Path) -> None:
    text = rendered(peers=[PeerSpec("192.0.2.1", port=1179)], graceful_restart=None)
    assert "graceful-restart" not in text
    (neighbor,) = load(text, tmp_path).neighbors.values()
    assert int(neighbor["connect"]) == 1179
    assert not neighbor["capability"]["graceful-restart"]


def test_passive_peer_listens_on_its_port(tmp_path: Path) -> None:
    text = rendered(peers=[PeerSpec("192.0.2.1", port=1179, passive=True), PeerSpec("192.0.2.2")])
    first, second = load(text, tmp_path).neighbors.values()
    assert first["passive"] and int(first["listen"]) == 1179
    assert not first["connect"]
    assert not second["passive"] and not second["listen"]


def test_passive_peer_needs_a_local_address() -> None:
    with pytest.raises(ValueError, match=r"passive peer 192\.0\.2\.1 needs local_address"):
        rendered(local_address=None, peers=[PeerSpec("192.0.2.1", passive=True)])


def test_auto_local_address_and_ipv6_peer(tmp_path: Path) -> None:
    text = rendered(local_address=None, peers=[PeerSpec("2001:db8::1")])
    assert "local-address" not in text
    (neighbor,) = load(text, tmp_path).neighbors.values()
    assert str(neighbor["peer-address"]) == "2001:db8::1"


@given(
    st.lists(
        st.text(
            st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="'\""),
            max_size=20,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_quoting_survives_exabgps_tokeniser(words: Sequence[str]) -> None:
    from exabgp.configuration.core.format import tokens

    line = "run " + " ".join(quote(word) for word in words) + ";"
    (parsed,) = list(tokens([line]))
    assert [token for _, _, token in parsed] == ["run", *words, ";"]


@pytest.mark.parametrize("word", ["it's", 'say "hi"', "line\nbreak", "tab\there", "caf\u00e9"])
def test_quote_refuses_what_exabgp_cannot_read(word: str) -> None:
    with pytest.raises(ValueError, match="cannot put"):
        quote(word)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"router_id": "2001:db8::1"}, "router_id must be an IPv4 address"),
        ({"local_as": 0}, "local_as must be"),
        ({"local_as": 1 << 32}, "local_as must be"),
        ({"local_address": "not-an-ip"}, "does not appear to be an IPv4 or IPv6"),
        ({"local_address": "2001:db8::21"}, "differ in family"),
        ({"peers": []}, "at least one peer"),
        ({"peers": [PeerSpec("192.0.2.1"), PeerSpec("192.0.2.1")]}, "duplicate peer"),
        ({"process_argv": []}, "process_argv is empty"),
        ({"process_argv": ["python3", "-m", "x"]}, "absolute path"),
        ({"process_argv": ["/usr/bin/python3", "it's"]}, "quote character"),
        ({"graceful_restart": 0}, "graceful_restart must be"),
        ({"graceful_restart": 4096}, "graceful_restart must be"),
    ],
)
def test_render_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rendered(**overrides)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": "rr1"}, "does not appear to be"),
        ({"hold_time": 2}, "hold_time must be"),
        ({"hold_time": 65536}, "hold_time must be"),
        ({"port": 0}, "port must be"),
        ({"password": ""}, "must not be empty"),
        ({"password": "x" * 81}, "longer than 80 bytes"),
        ({"password": "it's"}, "quote character"),
    ],
)
def test_peer_spec_errors(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"address": "192.0.2.1"}
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PeerSpec(**values)


def test_hold_time_zero_is_allowed() -> None:
    assert "hold-time 0;" in rendered(peers=[PeerSpec("192.0.2.1", hold_time=0)])
