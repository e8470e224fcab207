"""Migration from Cumulus LNV (vxrd/vxsnd, flood-and-learn) to evpn-agent: parsing and
conversion, no I/O of its own.

An LNV VTEP keeps its state in ``/etc/vxrd.conf`` (plus the ``.override`` file ifupdown2
writes from the loopback's ``vxrd-*`` attributes) and in the ifupdown2 stanzas of
``/etc/network/interfaces``. Files are read through a :class:`Reader`, so everything here
runs without a file system in tests. Every problem names its file and line, and all
problems are reported together, as for our own configuration.

Modules: ``vxrd`` and ``interfaces`` parse the files; ``devices``, ``vtep_ip``,
``flooding``, ``log_settings`` and ``changes`` work out what they mean; ``agent_config``
and ``frr`` render the results; ``convert`` ties them together.
"""

from evpn_agent.lnv.agent_config import render_config, validate_generated
from evpn_agent.lnv.changes import Change
from evpn_agent.lnv.convert import Migration, convert, migrate_files
from evpn_agent.lnv.devices import MAX_LNV_VNI, VniInfo
from evpn_agent.lnv.findings import Findings, LnvError, Location
from evpn_agent.lnv.frr import PEER_GROUP, listen_ranges, render_frr
from evpn_agent.lnv.interfaces import INTERFACES, Attr, Interfaces, Stanza, read_interfaces
from evpn_agent.lnv.reader import Reader
from evpn_agent.lnv.vxrd import VXRD_CONF, Setting, VxrdConf, parse_ini, read_vxrd

__all__ = [
    "INTERFACES",
    "MAX_LNV_VNI",
    "PEER_GROUP",
    "VXRD_CONF",
    "Attr",
    "Change",
    "Findings",
    "Interfaces",
    "LnvError",
    "Location",
    "Migration",
    "Reader",
    "Setting",
    "Stanza",
    "VniInfo",
    "VxrdConf",
    "convert",
    "listen_ranges",
    "migrate_files",
    "parse_ini",
    "read_interfaces",
    "read_vxrd",
    "render_config",
    "render_frr",
    "validate_generated",
]
