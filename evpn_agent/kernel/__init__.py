"""The netlink edge: apply ops (writer), read state (snapshot), follow changes (monitor),
and :class:`NetlinkKernel`, the port the daemon uses.

Everything works in the network namespace of the calling thread.
"""

from evpn_agent.kernel.monitor import Monitor
from evpn_agent.kernel.port import Kernel, NetlinkKernel
from evpn_agent.kernel.snapshot import dump, dump_links
from evpn_agent.kernel.writer import NetlinkWriter, OpFailure

__all__ = ["Kernel", "Monitor", "NetlinkKernel", "NetlinkWriter", "OpFailure", "dump", "dump_links"]
