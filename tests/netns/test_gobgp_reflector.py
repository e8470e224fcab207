"""GoBGP as the route reflector of the test fabrics (Debian's gobgpd 3.10): the gobgpd
configuration lab/gobgp.py renders, the commented example for operators
(lab/gobgp/gobgpd.toml), and how lab/reflectors.py reads GoBGP's table.

The fabric tests against GoBGP run with the others, parametrised over the reflector kind:
tests/test_agent_fabric.py (FRR, GoBGP with its defaults, GoBGP with graceful restart: the
ping matrix with an FRR VTEP, FRR-identical entries, sweeping with and without End-of-RIB,
drift, restarts, a client reset without NOTIFICATION), tests/test_mobility.py,
tests/test_hostile_peer.py and tests/test_ipv6_underlay.py (GoBGP reflects IPv6-underlay
EVPN, which FRR 8.4 cannot).
"""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from lab import gobgp as gobgp_lab
from lab import reflectors
from lab.fabric import REPO_ROOT
from lab.gobgp import Client

# ---------------------------------------------------------------- the rendered configuration


def test_rendered_config_is_a_passive_route_reflector() -> None:
    text = gobgp_lab.render_config(
        router_id="192.0.2.1",
        listen_address="192.0.2.1",
        clients=[Client("192.0.2.21"), Client("192.0.2.22", graceful_restart=True)],
    )
    config = tomllib.loads(text)
    assert config["global"]["config"] == {
        "as": 65000,
        "router-id": "192.0.2.1",
        "local-address-list": ["192.0.2.1"],
        "port": 179,
    }
    plain, graceful = config["neighbors"]
    for neighbor, address in ((plain, "192.0.2.21"), (graceful, "192.0.2.22")):
        assert neighbor["config"] == {"neighbor-address": address, "peer-as": 65000}
        assert neighbor["transport"]["config"]["passive-mode"] is True
        assert neighbor["route-reflector"]["config"] == {
            "route-reflector-client": True,
            "route-reflector-cluster-id": "192.0.2.1",
        }
        [family] = neighbor["afi-safis"]
        assert family["config"] == {"afi-safi-name": "l2vpn-evpn"}
    assert "graceful-restart" not in plain
    assert "mp-graceful-restart" not in plain["afi-safis"][0]
    assert graceful["graceful-restart"]["config"] == {"enabled": True, "restart-time": 120}
    assert graceful["afi-safis"][0]["mp-graceful-restart"]["config"] == {"enabled": True}


# ---------------------------------------------------------------- reading GoBGP's table


def test_gobgp_extended_communities_read_as_frr_writes_them() -> None:
    # as gobgp -j prints attribute 16 (pkg/packet/bgp MarshalJSON, 3.10)
    attr = {
        "type": 16,
        "value": [
            {"type": 0, "subtype": 2, "value": "65000:100"},
            {"type": 3, "subtype": 12, "tunnel_type": 8},
            {"type": 6, "subtype": 0, "sequence": 3, "is_sticky": False},
        ],
    }
    assert reflectors._gobgp_communities(attr) == "RT:65000:100 MM:3"
    sticky = {"type": 16, "value": [{"type": 6, "subtype": 0, "sequence": 0, "is_sticky": True}]}
    assert reflectors._gobgp_communities(sticky) == "MM:0, sticky MAC"


def test_unknown_reflector_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="one of frr, gobgp, gobgp-gr"):
        reflectors.add_reflector(None, "bird")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the example for operators

EXAMPLE = REPO_ROOT / "lab" / "gobgp" / "gobgpd.toml"
LAB_VTEPS = ("192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14")  # lab/evpn.clab.yml


def test_the_operator_example_is_what_the_tests_run_with_graceful_restart() -> None:
    """lab/gobgp/gobgpd.toml (commented, for operators) says exactly what the fabric tests
    give gobgpd with graceful restart, for the lab's four VTEPs and rr1's address."""
    rendered = gobgp_lab.render_config(
        router_id="192.0.2.1",
        listen_address="192.0.2.1",
        clients=[Client(address, graceful_restart=True) for address in LAB_VTEPS],
        cluster_id="192.0.2.254",  # the FRR reflectors' (lab/frr/rr*/frr.conf)
    )
    assert tomllib.loads(EXAMPLE.read_text()) == tomllib.loads(rendered)
    assert "bgp cluster-id 192.0.2.254" in (REPO_ROOT / "lab/frr/rr2/frr.conf").read_text()


def test_gobgpd_accepts_the_operator_example() -> None:
    if gobgp_lab.missing_requirements():
        pytest.skip("needs gobgpd (Debian: gobgpd)")
    result = subprocess.run(
        [gobgp_lab.GOBGPD, "-f", str(EXAMPLE), "-t", "toml", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
