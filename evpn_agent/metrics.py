"""Optional Prometheus endpoint (``metrics-address`` in the config; off by default).

Served from the agent's own event loop, so a scrape reads the state between two changes
and never from another thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from evpn_agent.control.views import local_mac_counts
from evpn_agent.core import drift
from evpn_agent.core.engine import Engine as AgentState

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)


class StateCollector(Collector):
    def __init__(self, state: Callable[[], AgentState | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        labels = ["vni"]
        macs = GaugeMetricFamily("evpn_agent_macs", "MACs per VNI", labels=[*labels, "origin"])
        neigh = GaugeMetricFamily("evpn_agent_neighbours", "Remote MAC+IP bindings", labels=labels)
        vteps = GaugeMetricFamily("evpn_agent_remote_vteps", "Flood list size", labels=labels)
        local = local_mac_counts(state)
        for vni in sorted(state.vnis):
            macs.add_metric([str(vni), "local"], local[vni])
            macs.add_metric([str(vni), "remote"], len(state.rib.remote_macs(vni)))
            neigh.add_metric([str(vni)], len(state.rib.remote_ips(vni)))
            vteps.add_metric([str(vni)], len(state.rib.flood_vteps(vni)))
        yield from (macs, neigh, vteps)

        session = GaugeMetricFamily("evpn_agent_session_up", "BGP session state", labels=["peer"])
        for rr in state.cfg.route_reflectors:
            peer = state.peers.get(rr.address)
            session.add_metric([rr.address], 1 if peer and peer.up else 0)
        yield session

        counters = dict(state.counters)
        received = CounterMetricFamily("evpn_agent_routes_received", "Routes received")
        received.add_metric([], counters.get("routes-received", 0))
        advertised = CounterMetricFamily("evpn_agent_routes_advertised", "Announces sent")
        advertised.add_metric([], state.adverts.announced)
        rejected = CounterMetricFamily(
            "evpn_agent_routes_rejected", "Routes or lines ignored, by reason", labels=["reason"]
        )
        for name, value in sorted(counters.items()):
            if name.startswith("rejected:"):
                rejected.add_metric([name[9:]], value)
        kernel = CounterMetricFamily(
            "evpn_agent_kernel_operations", "Kernel writes", labels=["result"]
        )
        kernel.add_metric(["ok"], counters.get("kernel-ops", 0))
        kernel.add_metric(["failed"], counters.get("kernel-failures", 0))
        kernel.add_metric(["device-gone"], counters.get("kernel-device-gone", 0))
        repairs = CounterMetricFamily(
            "evpn_agent_kernel_repairs",
            "Kernel entries that differed from the routes, fixed: restored or removed",
            labels=["kind", "action"],
        )
        for kind in drift.KINDS:
            for action in drift.ACTIONS:
                repairs.add_metric(
                    [kind, action], counters.get(drift.counter_name(kind, action), 0)
                )
        matched = GaugeMetricFamily(
            "evpn_agent_kernel_matched_age_seconds",
            "Seconds since a reconcile last found the VNI's kernel entries exactly as the routes "
            "want them (absent: never yet)",
            labels=labels,
        )
        now = time.monotonic()
        for vni, at in sorted(state.drift.matched_at.items()):
            matched.add_metric([str(vni)], max(now - at, 0.0))
        resets = CounterMetricFamily(
            "evpn_agent_bgp_sessions_reset",
            "Sessions the agent reset because the peer promised an End-of-RIB and sent nothing",
        )
        resets.add_metric([], counters.get("sessions-reset", 0))
        yield from (received, advertised, rejected, kernel, repairs, matched, resets)


class Metrics:
    def __init__(self, state: Callable[[], AgentState | None]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StateCollector(state))
        self.route_to_kernel = Histogram(
            "evpn_agent_route_to_kernel_seconds",
            "From ExaBGP reading an UPDATE to its entries acked by the kernel",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.mac_to_bgp = Histogram(
            "evpn_agent_local_mac_to_bgp_seconds",
            "From a local MAC's netlink event to its route handed to ExaBGP",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, address: str) -> asyncio.AbstractServer:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await asyncio.wait_for(reader.readline(), 5)
                parts = request.split()
                ok = (
                    len(parts) >= 2
                    and parts[0] == b"GET"
                    and parts[1].split(b"?")[0]
                    in (
                        b"/metrics",
                        b"/",
                    )
                )
                body = self.render() if ok else b"not found\n"
                status = b"200 OK" if ok else b"404 Not Found"
                writer.write(
                    b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
            except (TimeoutError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_client, host, int(port))
        log.info("Prometheus metrics on http://%s/metrics", address)
        return server
