from test_state import RR, imet, learned, mac_route, make

from evpn_agent.metrics import Metrics
from evpn_agent.model import RouteAnnounced


def test_metrics_render_state() -> None:
    state = make(fdb=(learned(),))
    state.on_bgp([RouteAnnounced(RR, mac_route(ip="198.51.100.22")), RouteAnnounced(RR, imet())], 1)
    state.on_bgp([RouteAnnounced(RR, mac_route(vtep="192.0.2.21"))], 1)  # our own VTEP
    metrics = Metrics(lambda: state)
    metrics.route_to_kernel.observe(0.002)
    text = metrics.render().decode()
    assert 'evpn_agent_macs{origin="local",vni="100"} 1.0' in text
    assert 'evpn_agent_macs{origin="remote",vni="100"} 1.0' in text
    assert 'evpn_agent_neighbours{vni="100"} 1.0' in text
    assert 'evpn_agent_remote_vteps{vni="100"} 1.0' in text
    # routes from a peer we never saw come up: a session that predates this core
    assert 'evpn_agent_session_up{peer="192.0.2.1"} 1.0' in text
    assert 'evpn_agent_routes_rejected_total{reason="own-vtep"} 1.0' in text
    assert 'evpn_agent_route_to_kernel_seconds_bucket{le="0.002"} 1.0' in text
    assert "evpn_agent_bgp_sessions_reset_total 0.0" in text
    state.counters["sessions-reset"] += 1
    assert "evpn_agent_bgp_sessions_reset_total 1.0" in metrics.render().decode()


def test_metrics_without_state_are_empty_but_valid() -> None:
    assert b"evpn_agent_macs" not in Metrics(lambda: None).render()
