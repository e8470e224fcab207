"""A throw-away EVPN fabric in network namespaces: FRR route reflectors and VTEPs, hosts,
and our speaker, on one underlay switch. For integration tests and the lab.

    with Fabric() as fab:
        rr = fab.add_route_reflector("rr", 1)                 # 192.0.2.1
        vtep = fab.add_frr_vtep("vtep1", 11, rrs=[rr])        # 192.0.2.11
        vtep.add_vni(100)
        fab.add_host("h1", vtep, 100, "198.51.100.1/24")
        fab.wait_established(rr, vtep.address)

Everything is named ``<prefix><pid><random>-<name>`` so parallel runs never collide.
``close()`` (also on ``with`` exit) stops only processes this fabric started, by PID
(FRR pidfiles, our subprocesses and their children), then deletes every namespace it
created. Nothing here sleeps a fixed time: :func:`wait_until` polls with a deadline.

Addresses are TEST-NET only: underlay 192.0.2.0/24 (2001:db8::/64 with
``Fabric(underlay6=True)``), tenants 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.

Modules: ``environment`` (tool paths, can a fabric run here), ``addressing`` (the
TEST-NET plan), ``wait`` (:func:`wait_until`), ``procs`` (commands, PIDs and their
children), ``netns``, ``frr_config`` and ``frr`` (configs, the zebra + bgpd pair),
``boxes`` (routers/VTEPs and VNIs), ``hosts``, ``speakers`` (our launcher, evpn-agent,
the peer script) and ``builder`` (:class:`Fabric`). Import from ``lab.fabric``.
"""

from __future__ import annotations

# Tests reach the os module through here (monkeypatch of lab.fabric.os.geteuid).
import os as os

from lab.fabric.addressing import (
    ASN,
    TENANT_NETWORKS,
    UNDERLAY,
    UNDERLAY6,
    VXLAN_PORT,
    tenant,
)
from lab.fabric.boxes import Box, Vni, vtysh, vtysh_json
from lab.fabric.builder import Fabric, fabric
from lab.fabric.environment import (
    BRIDGE,
    FRR_DIR,
    IP,
    PEER_SCRIPT,
    PYTHON,
    REPO_ROOT,
    VTYSH,
    missing_requirements,
    skip_unless_supported,
)
from lab.fabric.frr import ZEBRA_ARGS, Frr
from lab.fabric.frr_config import render_rr_config, render_vtep_config, render_zebra_config
from lab.fabric.hosts import Host
from lab.fabric.netns import Netns
from lab.fabric.procs import CommandError, children, cmdline, pid_alive, run, stop_pids
from lab.fabric.speakers import (
    AGENT_CLI_MODULE,
    AGENT_CORE_MODULE,
    SPEAKER_MODULE,
    AgentProcess,
    PeerScript,
    Speaker,
    agent_cli_argv,
    agent_core_pid,
)
from lab.fabric.wait import wait_until

__all__ = [
    "AGENT_CLI_MODULE",
    "AGENT_CORE_MODULE",
    "ASN",
    "BRIDGE",
    "FRR_DIR",
    "IP",
    "PEER_SCRIPT",
    "PYTHON",
    "REPO_ROOT",
    "SPEAKER_MODULE",
    "TENANT_NETWORKS",
    "UNDERLAY",
    "UNDERLAY6",
    "VTYSH",
    "VXLAN_PORT",
    "ZEBRA_ARGS",
    "AgentProcess",
    "Box",
    "CommandError",
    "Fabric",
    "Frr",
    "Host",
    "Netns",
    "PeerScript",
    "Speaker",
    "Vni",
    "agent_cli_argv",
    "agent_core_pid",
    "children",
    "cmdline",
    "fabric",
    "missing_requirements",
    "pid_alive",
    "render_rr_config",
    "render_vtep_config",
    "render_zebra_config",
    "run",
    "skip_unless_supported",
    "stop_pids",
    "tenant",
    "vtysh",
    "vtysh_json",
    "wait_until",
]
