"""The mirror's per-device tables: a device's entries without a scan of every device's."""

from __future__ import annotations

from typing import Any

from evpn_agent.core.mirror import Mirror
from evpn_agent.model import AddFdb, AddNeigh, DelFdb, DelNeigh
from evpn_agent.model.keys import DeviceIp, DeviceMac


class NoScan(dict[Any, Any]):
    def __iter__(self) -> Any:
        raise AssertionError("walked the whole table")

    def items(self) -> Any:
        raise AssertionError("walked the whole table")


def test_a_devices_entries_come_from_its_own_table() -> None:
    mirror = Mirror()
    for ifindex in (11, 13):
        for n in range(3):
            mirror.record(AddFdb(ifindex, f"02:00:5e:00:00:0{n}", "192.0.2.22"))
        mirror.record(AddNeigh(ifindex + 100, "198.51.100.1", "02:00:5e:00:00:01"))
    mirror.record(DelFdb(11, "02:00:5e:00:00:01"))
    mirror.record(DelNeigh(113, "198.51.100.1"))
    mirror.fdb_by_dev, mirror.neigh_by_dev = NoScan(mirror.fdb_by_dev), NoScan(mirror.neigh_by_dev)
    assert mirror.fdb_on(11) == [DeviceMac(11, "02:00:5e:00:00:00", None),
                                 DeviceMac(11, "02:00:5e:00:00:02", None)]  # fmt: skip
    assert len(mirror.fdb_on(13)) == 3
    assert mirror.neigh_on(111) == [DeviceIp(111, "198.51.100.1")]
    assert mirror.neigh_on(113) == []


def test_forgetting_a_device_forgets_its_entries_only() -> None:
    mirror = Mirror()
    mirror.set_fdb(DeviceMac(11, "02:00:5e:00:00:01", None), "192.0.2.22")
    mirror.set_fdb(DeviceMac(13, "02:00:5e:00:00:01", None), "192.0.2.22")
    mirror.set_neigh(DeviceIp(11, "198.51.100.1"), "02:00:5e:00:00:01")
    mirror.flood[11] = {"192.0.2.22"}
    mirror.forget(11)
    assert mirror.fdb_entries() == {DeviceMac(13, "02:00:5e:00:00:01", None): "192.0.2.22"}
    assert mirror.neigh_by_dev == {} and 11 not in mirror.flood
    assert mirror.fdb_on(11) == [] and mirror.neigh_on(11) == []
    assert mirror.pop_fdb(DeviceMac(13, "02:00:5e:00:00:01", None)) == "192.0.2.22"
    assert mirror.fdb_on(13) == [] and mirror.pop_fdb(DeviceMac(13, "x", None)) is None


def test_a_removal_is_the_key_of_the_entry_it_removes() -> None:
    """The mirror and the sets of wanted entries find a DelFdb's entry with the op itself:
    a DelFdb whose fields stopped matching DeviceMac's would remove nothing."""
    for vlan in (None, 10):
        op, key = DelFdb(11, "02:00:5e:00:00:01", vlan), DeviceMac(11, "02:00:5e:00:00:01", vlan)
        assert op == key and hash(op) == hash(key)
        assert op not in {DeviceMac(11, "02:00:5e:00:00:01", 20), DeviceMac(12, op.mac, vlan)}


def test_writes_return_what_the_entry_was_and_leave_no_empty_device() -> None:
    mirror = Mirror()
    assert mirror.record(AddFdb(11, "02:00:5e:00:00:01", "192.0.2.22", 10)) is None
    assert mirror.record(AddFdb(11, "02:00:5e:00:00:01", "192.0.2.23", 10)) == "192.0.2.22"
    assert mirror.fdb_dst(DeviceMac(11, "02:00:5e:00:00:01", 10)) == "192.0.2.23"
    assert mirror.fdb_dst(DeviceMac(11, "02:00:5e:00:00:01", None)) is None  # another VLAN
    assert mirror.record(DelFdb(11, "02:00:5e:00:00:01")) is None
    assert mirror.record(DelFdb(11, "02:00:5e:00:00:01", 10)) == "192.0.2.23"
    # a device without entries has no table: mirrors compare equal by their entries
    assert mirror.fdb_by_dev == {} and mirror == Mirror()
    assert mirror.record(DelFdb(12, "02:00:5e:00:00:01")) is None and mirror.fdb_by_dev == {}
