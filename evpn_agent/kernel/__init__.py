"""Kernel adapter: apply plan steps (writer), read state (snapshot), follow changes (monitor).

Everything works in the network namespace of the calling thread.
"""

from evpn_agent.kernel.events import (
    FdbRemoved,
    FdbUpdated,
    KernelEvent,
    LinkRemoved,
    LinkUpdated,
    MonitorOverflowed,
    NeighRemoved,
    NeighUpdated,
)
from evpn_agent.kernel.links import BridgeDevice, Link, OtherLink, VxlanDevice
from evpn_agent.kernel.monitor import Monitor, QuietEchoes
from evpn_agent.kernel.neighbours import FdbEntry, NeighEntry
from evpn_agent.kernel.ops import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op
from evpn_agent.kernel.snapshot import KernelSnapshot, dump
from evpn_agent.kernel.writer import NetlinkWriter, OpFailure

__all__ = [
    "AddFdb",
    "AddFlood",
    "AddNeigh",
    "BridgeDevice",
    "DelFdb",
    "DelFlood",
    "DelNeigh",
    "FdbEntry",
    "FdbRemoved",
    "FdbUpdated",
    "KernelEvent",
    "KernelSnapshot",
    "Link",
    "LinkRemoved",
    "LinkUpdated",
    "Monitor",
    "MonitorOverflowed",
    "NeighEntry",
    "NeighRemoved",
    "NeighUpdated",
    "NetlinkWriter",
    "Op",
    "OpFailure",
    "OtherLink",
    "QuietEchoes",
    "VxlanDevice",
    "dump",
]
