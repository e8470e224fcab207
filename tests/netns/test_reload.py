"""``evpn-agent reload`` (and SIGHUP) live, with a real FRR route reflector, an FRR VTEP and
an agent VTEP in network namespaces, while hosts of an untouched VNI ping each other every
10 ms: route targets, the VNI list, MAC limits and the log level change with 0 pings lost
there and the BGP session kept (its uptime on the reflector goes on); the kernel entries of
the VNI that changes follow exactly; a broken file or a restart-only key is refused.

    rr (FRR, 192.0.2.1)
    fv (FRR VTEP, .11): VNIs 100, 200, 300     a1 (evpn-agent, .21): VNIs 100, 200, 300
    x in VNI 100 (pinging), y in VNI 200, z in VNI 300: one behind each VTEP
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from lab.fabric import AgentProcess, Box, Fabric, Host, skip_unless_supported, wait_until
from lab.fabric.environment import IP, PYTHON, REPO_ROOT
from lab.fabric.speakers import agent_cli_argv

pytestmark = [pytest.mark.netns, pytest.mark.frr]

ZERO_MAC = "00:00:00:00:00:00"


@dataclass
class Lab:
    fab: Fabric
    rr: Box
    rr2: Box  # a reflector the agent does not peer with until a reload adds it
    fv: Box
    a1: Box
    agent: AgentProcess
    hosts: dict[str, Host]
    base: dict[str, Any]  # the agent's configuration as started

    def write(self, **changes: Any) -> None:
        """The agent's file: as started, with ``changes`` (None removes a key)."""
        config = {**self.base, **changes}
        config = {k: v for k, v in config.items() if v is not None}
        self.agent.config.write_text(yaml.safe_dump(config))  # YAML: integer VNI keys

    def reload(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = agent_cli_argv(self.agent.socket, "reload", *args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def uptime_ms(self) -> int:
        summary = json.loads(self.rr.vtysh("show bgp l2vpn evpn summary json"))
        return int(summary["peers"][self.a1.address]["peerUptimeMsec"])

    def remote(self, box: Box, device: str) -> set[tuple[str, str]]:
        """(MAC, VTEP) of the entries with a destination on ``device``: remote MACs and the
        flood list (zero MAC)."""
        entries = json.loads(box.netns.bridge("-j", "fdb", "show", "dev", device))
        return {(e["mac"], e["dst"]) for e in entries if "dst" in e}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    skip_unless_supported()
    with Fabric("evrl") as fab:
        rr = fab.add_route_reflector("rr", 1)
        rr2 = fab.add_route_reflector("rr2", 2)
        try:
            fv = fab.add_frr_vtep("fv", 11, rrs=[rr])
            a1 = fab.add_agent_vtep("a1", 21)
            hosts: dict[str, Host] = {}
            for box, n in ((fv, 1), (a1, 2)):
                for vni, name, net in ((100, "x", 0), (200, "y", 100), (300, "z", 200)):
                    box.add_vni(vni)
                    hosts[f"{name}{n}"] = fab.add_host(
                        f"{name}{n}", box, vni, f"198.51.100.{net + n}/24"
                    )
            # VNI 300's devices exist on a1, but the file does not serve it (yet)
            agent = fab.start_agent(a1, rrs=[rr], settings={"vnis": [100, 200]})
            base = json.loads(agent.config.read_text())
            for box in (fv, a1):
                fab.wait_established(rr, box.address)
            lab = Lab(fab, rr, rr2, fv, a1, agent, hosts, base)
            for a, b in (("x1", "x2"), ("x2", "x1"), ("y1", "y2"), ("y2", "y1")):
                wait_until(lambda a=a, b=b: hosts[a].ping(hosts[b].ip), 30, f"{a} -> {b}")
            yield lab
        except BaseException:
            print(fab.logs())
            raise


@contextmanager
def untouched(lab: Lab) -> Iterator[None]:
    """VNI 100 pings both ways every 10 ms throughout; 0 lost, and the session is kept."""
    before, started = lab.uptime_ms(), time.monotonic()
    procs = {
        src: subprocess.Popen(
            [
                IP,
                "netns",
                "exec",
                lab.hosts[src].netns.name,
                PYTHON,
                "lab/pinger.py",
                "stream",
                "--interval",
                "0.01",
                lab.hosts[dst].ip,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for src, dst in (("x1", "x2"), ("x2", "x1"))
    }
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        yield
    finally:
        results = {src: proc.communicate(input="", timeout=30)[0] for src, proc in procs.items()}
    for src, out in results.items():
        stats = next(iter(json.loads(out).values()))
        assert stats["sent"] > 20 and stats["lost"] == 0, f"{src}: {stats}"
    elapsed_ms = (time.monotonic() - started) * 1000
    assert lab.uptime_ms() >= before + elapsed_ms - 2000, "the BGP session was reset"


def applied(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_route_targets_change_live(lab: Lab) -> None:
    frr_200 = lab.remote(lab.a1, "vxlan200")
    assert (ZERO_MAC, lab.fv.address) in frr_200 and (
        lab.hosts["y1"].mac,
        lab.fv.address,
    ) in frr_200
    with untouched(lab):
        lab.write(**{"route-targets": {200: {"both": ["65000:1200"]}}})
        out = applied(lab.reload())
        assert "route-targets.200: (default) -> import 65000:1200; export 65000:1200" in out
        # FRR's routes for 200 carry 65000:200: no longer imported, their entries go
        wait_until(lambda: lab.remote(lab.a1, "vxlan200") == set(), 20, "a1 drops fv's 200")
        # ours are announced again with 65000:1200, which FRR's auto import (*:200) ignores
        wait_until(lambda: not any(d == lab.a1.address for _, d in lab.remote(lab.fv, "vxlan200")),
                   20, "fv drops a1's 200")  # fmt: skip
        assert not lab.hosts["y1"].ping(lab.hosts["y2"].ip, timeout=0.3)
        lab.write()
        assert "route-targets.200" in applied(lab.reload())
        wait_until(lambda: lab.remote(lab.a1, "vxlan200") == frr_200, 20, "a1 imports 200 again")
        wait_until(lambda: lab.hosts["y1"].ping(lab.hosts["y2"].ip), 20, "y1 -> y2 again")


def test_vni_added_and_removed_live(lab: Lab) -> None:
    z1, z2 = lab.hosts["z1"], lab.hosts["z2"]
    assert lab.remote(lab.a1, "vxlan300") == set()  # not served: nothing installed
    frr_200 = lab.remote(lab.a1, "vxlan200")
    with untouched(lab):
        lab.write(vnis=[100, 200, 300])
        out = applied(lab.reload())
        assert "vnis: 100,200 -> 100,200,300" in out
        wait_until(lambda: z2.ping(z1.ip), 30, "z2 -> z1 once 300 is served")
        lab.write(vnis=[100, 300])
        applied(lab.reload())
        # only our entries on VNI 200's device go; the bridge's own stay
        wait_until(lambda: lab.remote(lab.a1, "vxlan200") == set(), 20, "a1 retires 200")
        wait_until(lambda: not any(d == lab.a1.address for _, d in lab.remote(lab.fv, "vxlan200")),
                   20, "fv drops a1's 200")  # fmt: skip
        assert z2.ping(z1.ip)
        lab.write()
        applied(lab.reload())
        wait_until(lambda: lab.remote(lab.a1, "vxlan200") == frr_200, 20, "a1 serves 200 again")
        wait_until(lambda: lab.remote(lab.a1, "vxlan300") == set(), 20, "a1 retires 300")


def test_reflector_added_and_removed_live(lab: Lab) -> None:
    """Only the added reflector's session comes up (and gets our routes), only the removed
    one's goes; the session to the other reflector is kept throughout (untouched)."""
    rr2, me = lab.rr2, lab.a1.address

    def received() -> int:
        peers = lab.rr2.vtysh_json("show bgp l2vpn evpn summary json").get("peers", {})
        return int(peers.get(me, {}).get("pfxRcd", 0))

    reflectors = list(lab.base["route-reflectors"])
    first = reflectors[0]
    extra = {**first, "address": rr2.address} if isinstance(first, dict) else rr2.address
    with untouched(lab):
        lab.write(**{"route-reflectors": [*reflectors, extra]})
        assert f"+{rr2.address}" in applied(lab.reload())
        lab.fab.wait_established(rr2, me)
        # our type 3s (VNIs 100, 200) and the MACs of our hosts there
        wait_until(lambda: received() >= 4, 30, "rr2 holds a1's routes")
        assert rr2.address in lab.agent.cli("show", "peers")
        lab.write()
        assert f"-{rr2.address}" in applied(lab.reload())
        wait_until(lambda: rr2.evpn_peer_state(me) != "Established", 30, "rr2's session gone")
    assert rr2.address not in lab.agent.cli("show", "peers")


def counters(lab: Lab) -> dict[str, int]:
    return dict(json.loads(lab.agent.cli("show", "counters", "--json"))["counters"])


def test_mac_limit_and_log_level_live(lab: Lab) -> None:
    refused = counters(lab).get("rejected:mac-limit", 0)
    with untouched(lab):
        lab.write(**{"mac-limit-per-vni": 1, "log-level": "debug"})
        out = applied(lab.reload("--config", str(lab.agent.config)))
        assert "mac-limit-per-vni: 100000 -> 1" in out and "log-level: info -> debug" in out
        # a new MAC in VNI 100 behind fv is refused; x1's entry stays (pings go on)
        new = lab.fab.add_host("x3", lab.fv, 100, "198.51.100.3/24")
        try:
            new.ping(lab.hosts["x1"].ip, timeout=0.3)  # fv learns it and announces it
            wait_until(lambda: counters(lab).get("rejected:mac-limit", 0) > refused, 20,
                       "a1 refuses x3's MAC")  # fmt: skip
            assert (new.mac, lab.fv.address) not in lab.remote(lab.a1, "vxlan100")
            assert (lab.hosts["x1"].mac, lab.fv.address) in lab.remote(lab.a1, "vxlan100")
        finally:
            lab.fab.del_host(new)
        log = lab.agent.stderr_path.read_text()
        assert "level=debug logger=evpn_agent.daemon.reload" in log
        lab.write()
        applied(lab.reload())


def test_broken_file_is_refused_with_the_key_and_changes_nothing(lab: Lab) -> None:
    with untouched(lab):
        lab.write(**{"mac-limit": "many", "vnis": [100, 99999999]})
        done = lab.reload()
        assert done.returncode == 1
        assert "key 'mac-limit'" in done.stderr and "key 'vnis[1]'" in done.stderr
        lab.write(**{"router-id": "192.0.2.99"})
        done = lab.reload("--dry-run")
        assert done.returncode == 1
        assert "key 'router-id': needs evpn-agent restart" in done.stderr
    lab.write()
    assert "no changes" in applied(lab.reload())  # the agent kept what it ran with


def metrics(lab: Lab, address: str) -> str:
    fetch = (
        f"import urllib.request; print(urllib.request.urlopen('http://{address}/metrics').read())"
    )
    return lab.a1.exec(PYTHON, "-c", fetch, check=False)


def test_sighup_reloads_and_exabgp_stays(lab: Lab) -> None:
    pid = lab.agent.pid
    live = {
        "log-level": "warning",
        "route-hold-time": 30,
        "reconcile-interval": 5,
        "sweep-delay": 1,
        "duplicate-detection": {"max-moves": 3, "time": 60, "freeze": "permanent"},
        "metrics-address": "127.0.0.1:9610",
    }
    with untouched(lab):
        lab.write(**live)
        dry = json.loads(applied(lab.reload("--dry-run", "--json")))
        assert {c["key"].split(".")[0] for c in dry["changes"]} == set(live)
        assert "evpn_agent" not in metrics(lab, "127.0.0.1:9610")  # a dry run changes nothing
        os.kill(pid, signal.SIGHUP)  # ExaBGP, through our launcher, to the core
        wait_until(lambda: "no changes" in applied(lab.reload("--dry-run")), 20, "SIGHUP applied")
        assert lab.agent.running() and lab.agent.pid == pid
        assert "evpn_agent" in metrics(lab, "127.0.0.1:9610")  # the endpoint opened
    lab.write()
    applied(lab.reload())
