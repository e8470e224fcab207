"""The lean encoder must produce exactly the bytes pyroute2 produces for the same message."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2 import netlink as pr_netlink
from pyroute2.netlink import rtnl as pr_rtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from evpn_agent.kernel import netlink
from evpn_agent.kernel.encoder import encode, encode_self_delete
from evpn_agent.model import AddFdb, AddFlood, AddNeigh, DelFdb, DelFlood, DelNeigh, Op

NEW, DEL = 28, 29
REQ_ACK = 0x1 | 0x4
CREATE_REPLACE = 0x400 | 0x100
CREATE_APPEND = 0x400 | 0x800
AF_INET, AF_BRIDGE, AF_INET6 = 2, 7, 10
MASTER, SELF, EXT_LEARNED = 0x04, 0x02, 0x10
REACHABLE, NOARP, PERMANENT = 0x02, 0x40, 0x80


def pyroute2_bytes(
    msg_type: int, flags: int, seq: int, family: int, ifindex: int, state: int, ntf: int, attrs: Any
) -> bytes:
    msg = ndmsg()
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg["family"] = family
    msg["ifindex"] = ifindex
    msg["state"] = state
    msg["flags"] = ntf
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


MAC = "02:00:5e:00:01:0a"
CASES: list[tuple[Op, list[bytes]]] = [
    (
        AddFdb(7, MAC, "198.51.100.1"),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_BRIDGE, 7, REACHABLE,
                MASTER | SELF | EXT_LEARNED,
                [("NDA_LLADDR", MAC), ("NDA_DST", "198.51.100.1")],
            )
        ],
    ),
    (
        AddFdb(7, MAC, "2001:db8::1"),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_BRIDGE, 7, REACHABLE,
                MASTER | SELF | EXT_LEARNED,
                [("NDA_LLADDR", MAC), ("NDA_DST", "2001:db8::1")],
            )
        ],
    ),
    (
        AddFdb(7, MAC, "198.51.100.1", vlan=100),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_BRIDGE, 7, REACHABLE,
                MASTER | SELF | EXT_LEARNED,
                [("NDA_LLADDR", MAC), ("NDA_DST", "198.51.100.1"), ("NDA_VLAN", 100)],
            )
        ],
    ),
    (
        AddFdb(7, MAC, "2001:db8::1", vlan=100),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_BRIDGE, 7, REACHABLE,
                MASTER | SELF | EXT_LEARNED,
                [("NDA_LLADDR", MAC), ("NDA_DST", "2001:db8::1"), ("NDA_VLAN", 100)],
            )
        ],
    ),
    (
        DelFdb(7, MAC),
        [pyroute2_bytes(DEL, REQ_ACK, 5, AF_BRIDGE, 7, 0, MASTER | SELF, [("NDA_LLADDR", MAC)])],
    ),
    (
        DelFdb(7, MAC, vlan=4094),
        [
            pyroute2_bytes(
                DEL, REQ_ACK, 5, AF_BRIDGE, 7, 0, MASTER | SELF,
                [("NDA_LLADDR", MAC), ("NDA_VLAN", 4094)],
            ),
        ],
    ),
    (
        AddFlood(7, "203.0.113.9"),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_APPEND, 5, AF_BRIDGE, 7, NOARP | PERMANENT, SELF,
                [("NDA_LLADDR", "00:00:00:00:00:00"), ("NDA_DST", "203.0.113.9")],
            )
        ],
    ),
    (
        DelFlood(7, "2001:db8::9"),
        [
            pyroute2_bytes(
                DEL, REQ_ACK, 5, AF_BRIDGE, 7, 0, SELF,
                [("NDA_LLADDR", "00:00:00:00:00:00"), ("NDA_DST", "2001:db8::9")],
            )
        ],
    ),
    (
        AddNeigh(4, "198.51.100.20", MAC),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_INET, 4, NOARP, EXT_LEARNED,
                [("NDA_DST", "198.51.100.20"), ("NDA_LLADDR", MAC), ("NDA_PROTOCOL", 186)],
            )
        ],
    ),
    (
        AddNeigh(4, "2001:db8::20", MAC),
        [
            pyroute2_bytes(
                NEW, REQ_ACK | CREATE_REPLACE, 5, AF_INET6, 4, NOARP, EXT_LEARNED,
                [("NDA_DST", "2001:db8::20"), ("NDA_LLADDR", MAC), ("NDA_PROTOCOL", 186)],
            )
        ],
    ),
    (
        DelNeigh(4, "198.51.100.20"),
        [pyroute2_bytes(DEL, REQ_ACK, 5, AF_INET, 4, 0, 0, [("NDA_DST", "198.51.100.20")])],
    ),
    (
        DelNeigh(4, "2001:db8::20"),
        [pyroute2_bytes(DEL, REQ_ACK, 5, AF_INET6, 4, 0, 0, [("NDA_DST", "2001:db8::20")])],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("op", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_encoding_matches_pyroute2(op: Op, expected: list[bytes]) -> None:
    assert [encode(op, 5).hex()] == [m.hex() for m in expected]


def test_the_follow_up_delete_is_the_vxlan_entry_alone() -> None:
    for vlan, attrs in (
        (None, [("NDA_LLADDR", MAC)]),
        (10, [("NDA_LLADDR", MAC), ("NDA_VLAN", 10)]),
    ):
        expected = pyroute2_bytes(DEL, REQ_ACK, 9, AF_BRIDGE, 7, 0, SELF, attrs)
        assert encode_self_delete(DelFdb(7, MAC, vlan=vlan), 9).hex() == expected.hex()


def test_remote_mac_message_layout() -> None:
    """Spell out FRR's recipe once in plain numbers, independent of both encoders."""
    message = encode(AddFdb(3, "02:00:5e:00:01:01", "192.0.2.11"), 1)
    length, msg_type, flags, seq, pid = struct.unpack_from("=IHHII", message)
    assert (length, msg_type, seq, pid) == (len(message), 28, 1, 0)
    assert flags == 0x1 | 0x4 | 0x400 | 0x100
    assert struct.unpack_from("=BxxxiHBB", message, 16) == (7, 3, 0x02, 0x16, 0)


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (AddFdb(1, "02:00:5e:00:01", "192.0.2.1"), ValueError),
        (AddFdb(1, "zz:00:5e:00:01:01", "192.0.2.1"), ValueError),
        (AddFlood(1, "192.0.2.300"), OSError),
        (AddNeigh(1, "2001:db8::g", "02:00:5e:00:01:01"), OSError),
    ],
)
def test_malformed_input_is_rejected(op: Op, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(op, 1)


def test_constants_match_pyroute2() -> None:
    for name in (
        "NLM_F_REQUEST", "NLM_F_ACK", "NLM_F_CREATE", "NLM_F_REPLACE", "NLM_F_APPEND",
        "NLM_F_EXCL", "NLM_F_DUMP", "NLM_F_MULTI", "NLM_F_DUMP_INTR", "NLM_F_CAPPED",
        "NLM_F_ACK_TLVS", "NLMSG_ERROR", "NLMSG_DONE", "NLMSG_NOOP", "NLMSG_OVERRUN",
    ):  # fmt: skip
        assert getattr(netlink, name) == getattr(pr_netlink, name), name
    for name in (
        "RTM_NEWLINK", "RTM_DELLINK", "RTM_GETLINK", "RTM_NEWNEIGH", "RTM_DELNEIGH",
        "RTM_GETNEIGH", "RTMGRP_LINK", "RTMGRP_NEIGH",
    ):  # fmt: skip
        assert getattr(netlink, name) == getattr(pr_rtnl, name), name
    from pyroute2.netlink.rtnl import ndmsg as nd

    for name in ("NTF_SELF", "NTF_MASTER", "NTF_EXT_LEARNED", "NUD_REACHABLE", "NUD_NOARP"):
        assert getattr(netlink, name) == getattr(nd, name), name
    nda = {name: index for index, (name, _kind) in enumerate(ndmsg.nla_map)}
    for name in ("NDA_DST", "NDA_LLADDR", "NDA_VLAN", "NDA_MASTER", "NDA_PROTOCOL"):
        assert getattr(netlink, name) == nda[name], name


def _ack(error: int, flags: int, inner: bytes, tlvs: bytes = b"") -> bytes:
    body = struct.pack("=i", error) + inner + tlvs
    return struct.pack("=IHHII", 16 + len(body), 2, flags, 9, 0) + body


def _tlv(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_parse_ack_success_and_extack_message() -> None:
    request = struct.pack("=IHHII", 16, 28, 5, 9, 0)
    assert netlink.parse_ack(_ack(0, 0x100, request), 0) == (0, "")
    capped = _ack(-19, 0x100 | 0x200, request, _tlv(1, b"unknown ifindex\0"))
    assert netlink.parse_ack(capped, 0) == (19, "unknown ifindex")
    full_request = struct.pack("=IHHII", 24, 28, 5, 9, 0) + bytes(8)
    uncapped = _ack(-22, 0x200, full_request, _tlv(2, b"\0\0\0\0") + _tlv(1, b"bad vlan\0"))
    assert netlink.parse_ack(b"pad!" + uncapped, 4) == (22, "bad vlan")
    assert netlink.parse_ack(_ack(-2, 0, request), 0) == (2, "")
