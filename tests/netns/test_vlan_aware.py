"""A VLAN-aware bridge (one VXLAN device per VNI, mapped to a VLAN) end to end.

Needs a kernel with bridge VLAN filtering; where ``vlan_filtering 1`` is refused this skips
with the kernel's answer. The planned netlink messages are covered everywhere by
test_state.py (VLAN on every FDB entry, SVI per VLAN) and the kernel adapter's tests (the
VNI-to-VLAN map decoded from the bridge's port VLAN and tunnel info).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from lab.fabric import IP, Box, Fabric, Host, skip_unless_supported, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.frr]


def vlan_filtering_unsupported() -> str | None:
    """The kernel's refusal, or None when bridge VLAN filtering works here."""
    name = f"evvf-{uuid.uuid4().hex[:8]}"
    subprocess.run([IP, "netns", "add", name], check=True)
    try:
        proc = subprocess.run(
            [IP, "-n", name, "link", "add", "br0", "type", "bridge", "vlan_filtering", "1"],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stderr.strip() or "failed" if proc.returncode else None
    finally:
        subprocess.run([IP, "netns", "del", name], check=False)


def add_vlan_aware_vni(box: Box, vni: int, vlan: int) -> None:
    """bridge ``bridge`` (vlan_filtering 1), ``vxlan<vni>`` as an access port of ``vlan``."""
    ns = box.netns
    if "bridge" not in ns.ip("-br", "link", "show"):
        ns.ip("link", "add", "bridge", "type", "bridge", "vlan_filtering", "1", "stp_state", "0")
        ns.ip("link", "set", "bridge", "up")
    vx = f"vxlan{vni}"
    ns.ip(
        "link", "add", vx, "type", "vxlan", "id", str(vni), "local", box.address,
        "dstport", "4789", "nolearning",
    )  # fmt: skip
    ns.ip("link", "set", vx, "master", "bridge")
    ns.bridge("link", "set", "dev", vx, "learning", "off")
    ns.bridge("vlan", "del", "vid", "1", "dev", vx)
    ns.bridge("vlan", "add", "vid", str(vlan), "dev", vx, "pvid", "untagged")
    ns.ip("link", "set", vx, "up")


def add_access_host(fab: Fabric, name: str, box: Box, vlan: int, address: str) -> Host:
    """A host on an access port of ``vlan`` of the box's VLAN-aware bridge."""
    from lab.fabric import Vni

    # add_host plugs into box.vnis[vni].bridge: point a pseudo VNI entry at ``bridge``.
    box.vnis[-vlan] = Vni(-vlan, "bridge", "")
    host = fab.add_host(name, box, -vlan, address)
    port = f"h-{name}"
    box.netns.bridge("vlan", "del", "vid", "1", "dev", port)
    box.netns.bridge("vlan", "add", "vid", str(vlan), "dev", port, "pvid", "untagged")
    return host


@pytest.fixture(scope="module")
def fab() -> Iterator[Fabric]:
    skip_unless_supported()
    refusal = vlan_filtering_unsupported()
    if refusal:
        pytest.skip(f"this kernel has no bridge VLAN filtering ('vlan_filtering 1': {refusal})")
    with Fabric("evvl") as fabric:
        yield fabric


def test_vlan_aware_leaf_interoperates_with_traditional_leaf(fab: Fabric) -> None:
    rr = fab.add_route_reflector("rr", 1)
    aware = fab.add_agent_vtep("aware", 21)
    plain = fab.add_agent_vtep("plain", 22)
    add_vlan_aware_vni(aware, 100, 10)
    add_vlan_aware_vni(aware, 200, 20)
    plain.add_vni(100)
    plain.add_vni(200)
    h10 = add_access_host(fab, "h10", aware, 10, "198.51.100.1/24")
    h20 = add_access_host(fab, "h20", aware, 20, "198.51.100.101/24")
    p100 = fab.add_host("p100", plain, 100, "198.51.100.2/24")
    p200 = fab.add_host("p200", plain, 200, "198.51.100.102/24")
    agents = {b.name: fab.start_agent(b, rrs=[rr]) for b in (aware, plain)}
    for box in (aware, plain):
        fab.wait_established(rr, box.address)
    wait_until(lambda: h10.ping(p100.ip), 20, "VLAN 10 host -> VNI 100 host")
    wait_until(lambda: h20.ping(p200.ip), 20, "VLAN 20 host -> VNI 200 host")
    assert not h10.ping(p200.ip, timeout=0.3), "VLAN 10 reached VNI 200"

    entries = json.loads(aware.netns.bridge("-j", "fdb", "show", "dev", "vxlan100"))
    remote = [e for e in entries if e.get("mac") == p100.mac]
    assert remote and all(e.get("vlan") == 10 for e in remote if "master" in e)
    rows = {r["vni"]: r for r in agents["aware"].show_vni()}
    assert (rows[100]["vlan"], rows[200]["vlan"]) == (10, 20)
