"""Spec queries: the one place resources ask which disk, device name, export and host."""

from __future__ import annotations

from pathlib import Path

import pytest

from aoeprov.errors import PlanError
from aoeprov.resources.boot import render_initiator_unit
from aoeprov.spec import load_spec, load_spec_text
from aoeprov.spec.queries import (
    aoe_iflist,
    device_path,
    disk_of,
    filesystems_on,
    mapped_path,
    mount_read_only,
    mounts_on,
    parse_iflist,
    partition_node,
    read_only_server,
    targets_on,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_partition_node_names() -> None:
    assert partition_node("/dev/etherd/e0.1", 1) == "/dev/etherd/e0.1p1"
    assert partition_node("/dev/loop3", 2) == "/dev/loop3p2"
    assert partition_node("/dev/vdb", 1) == "/dev/vdb1"


def test_devices_of_filesystems() -> None:
    spec = load_spec(EXAMPLES / "gpt-multi.yaml")
    web = spec.disk("web-disk")
    assert disk_of(spec, "web-disk") == (web, None)
    number = spec.partitions[0].number
    assert disk_of(spec, spec.partitions[0].name) == (web, number)
    assert device_path(spec, "web-disk") == "/dev/etherd/e1.0"
    assert device_path(spec, spec.partitions[0].name) == f"/dev/etherd/e1.0p{number}"
    with pytest.raises(PlanError, match="'nope' is neither a partition nor a disk"):
        disk_of(spec, "nope")


def test_mapped_path_by_disk_name_or_aoe_name() -> None:
    spec = load_spec(EXAMPLES / "gpt-multi.yaml")
    web = spec.disk("web-disk")
    assert mapped_path({"web-disk": "/a.img"}, web) == "/a.img"
    assert mapped_path({"e1.0": "/b.img"}, web) == "/b.img"
    assert mapped_path({"e1.1": "/c.img"}, web) is None


def test_read_only_exports_and_host_membership() -> None:
    spec = load_spec(EXAMPLES / "gpt-multi.yaml")
    assert read_only_server(spec, spec.disk("web-reference")) == "nas1"
    assert read_only_server(spec, spec.disk("web-disk")) is None
    ro = {m.path: mount_read_only(spec, m) for m, _, _ in mounts_on(spec, "web1")}
    assert True in ro.values() and False in ro.values()
    assert {m.path for m, _, _ in mounts_on(spec, "db1")}.isdisjoint(ro)
    assert [t.name for t in targets_on(spec, "nas1")] == ["web-data", "db-data", "reference"]
    assert [fs.device for fs in filesystems_on(spec, "db1")] == ["db-disk"]


def test_aoe_iflist_is_the_option_else_every_interface() -> None:
    spec = load_spec(EXAMPLES / "gpt-multi.yaml")
    assert aoe_iflist(spec.host("db1")) == ("eth1",)
    assert parse_iflist("eth0, eth1") == ("eth0", "eth1")


IFLIST_SPEC = """
version: 1
hosts:
  - name: web1
    roles: [initiator]
    interfaces: [eth0, eth1]
    modules: {load: [{name: aoe, options: {aoe_iflist: eth1}}]}
disks:
  - {name: d, host: web1, shelf: 0, slot: 1}
"""


def test_boot_unit_sets_the_iflist_apply_sets() -> None:
    """The boot unit's --iface list is the spec's aoe_iflist, as the discovery step's."""
    spec = load_spec_text(IFLIST_SPEC)
    assert aoe_iflist(spec.host("web1")) == ("eth1",)
    unit = render_initiator_unit(spec, "web1", "/usr/bin/python3")
    assert unit is not None
    assert "--iface eth1 --wait e0.1" in unit and "--iface eth0" not in unit
