"""The agent's settings as values: what the YAML file says once it is validated.

Loading and validation live in ``evpn_agent.config`` (the YAML edge); the core reads these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from evpn_agent.model.bgp import RouteTarget

DEFAULT_SOCKET = "/run/evpn-agent/evpn-agent.sock"
DEFAULT_STATE_DIR = "/var/lib/evpn-agent"  # RD indexes must survive reboots


@dataclass(frozen=True)
class DadSettings:
    """Duplicate address detection, as FRR's ``dup-addr-detection``."""

    max_moves: int = 5
    window: float = 180.0
    freeze: float | None = None  # seconds frozen; math.inf = until cleared; None = never


@dataclass(frozen=True)
class RouteReflector:
    address: str
    password: str | None = None
    hold_time: int = 9
    port: int = 179
    passive: bool = False  # the peer connects to us, on local-address:port


@dataclass(frozen=True)
class VniTargets:
    """Per-VNI route-target override; empty tuples mean 'derive as FRR does'."""

    import_rts: tuple[RouteTarget, ...] = ()
    export_rts: tuple[RouteTarget, ...] = ()


@dataclass(frozen=True)
class Config:
    local_as: int
    route_reflectors: tuple[RouteReflector, ...]
    router_id: str | None = None
    vtep_ip: str | None = None
    local_address: str | None = None
    vnis: frozenset[int] | None = None
    route_targets: Mapping[int, VniTargets] = field(default_factory=dict)
    control_socket: str = DEFAULT_SOCKET
    state_dir: str = DEFAULT_STATE_DIR
    log_level: str = "info"
    log_destination: str = "stderr"  # stderr, syslog or file:/path
    # Stale kernel entries from before a restart are swept only once the table is known
    # complete (every peer that is up sent End-of-RIB, or went quiet when it sends none;
    # see core/peers), and at least this long after start.
    sweep_delay: float = 5.0
    # Full dump-and-diff against the kernel, catching what events cannot (entries flushed
    # with a device or carrier, writes that failed); 0 turns it off.
    reconcile_interval: float = 60.0
    # At most this share of one core (percent) goes to those dumps: a dump costs CPU in
    # proportion to the tables (~0.7 s at 137,000 remote entries), so the interval
    # stretches with them (there, to ~12 minutes); 0 keeps reconcile_interval exact.
    reconcile_budget: float = 0.1
    # Receive buffer of the netlink socket that watches the kernel (bytes), like zebra's
    # -s. A burst beyond it loses events; the agent then resynchronises from a full dump.
    netlink_buffer_size: int = 64 << 20
    metrics_address: str | None = None  # "127.0.0.1:9600" serves Prometheus metrics
    # When every route reflector is gone, keep what they taught us this long (seconds), so
    # a reflector restart costs no traffic; 0 removes the routes at once.
    route_hold_time: float = 120.0
    # Remote MACs accepted per VNI and in all; beyond, new MACs are refused (and counted).
    mac_limit_per_vni: int = 100_000
    mac_limit: int = 1_000_000
    duplicate_detection: DadSettings = field(default_factory=DadSettings)
    source: str = "<config>"

    def manages(self, vni: int) -> bool:
        return self.vnis is None or vni in self.vnis
