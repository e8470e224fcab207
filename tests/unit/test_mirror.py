"""The mirror's per-device indexes: a device's entries without a scan of every device's."""

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


def test_a_devices_entries_come_from_its_index() -> None:
    mirror = Mirror()
    for ifindex in (11, 13):
        for n in range(3):
            mirror.record(AddFdb(ifindex, f"02:00:5e:00:00:0{n}", "192.0.2.22"))
        mirror.record(AddNeigh(ifindex + 100, "198.51.100.1", "02:00:5e:00:00:01"))
    mirror.record(DelFdb(11, "02:00:5e:00:00:01"))
    mirror.record(DelNeigh(113, "198.51.100.1"))
    mirror.fdb, mirror.neigh = NoScan(mirror.fdb), NoScan(mirror.neigh)
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
    assert list(mirror.fdb) == [DeviceMac(13, "02:00:5e:00:00:01", None)]
    assert mirror.neigh == {} and 11 not in mirror.flood
    assert mirror.fdb_on(11) == [] and mirror.neigh_on(11) == []
    assert mirror.pop_fdb(DeviceMac(13, "02:00:5e:00:00:01", None)) == "192.0.2.22"
    assert mirror.fdb_on(13) == [] and mirror.pop_fdb(DeviceMac(13, "x", None)) is None
