"""What the loader puts in the model: normalised values, defaults, positions."""

from __future__ import annotations

from pathlib import Path

from aoeprov.spec import load_spec, load_spec_text
from aoeprov.spec.model import (
    DeviceBacking,
    FileBacking,
    Location,
    ModulePersistence,
    MountSpec,
    Role,
    ServerKind,
    TableType,
    WriteMode,
)
from aoeprov.spec.parttypes import GPT_LINUX
from aoeprov.spec.sizes import GIB, MIB

EXAMPLES = Path(__file__).parents[3] / "examples"

SPEC = """\
version: 1
hosts:
  - name: both
    roles: [target, initiator]
    interfaces: [eth0]
    modules:
      persist: modules-load.d
      load:
        - {name: aoe, options: {aoe_iflist: eth0, aoe_deadsecs: 0060}}
targets:
  - {name: raw, host: both, device: {path: /dev/sdb}}
  - {name: img, host: both, file: {path: /srv/a.img, size: 1G}}
exports:
  - {name: raw, target: raw, shelf: 0x10, slot: 0, interfaces: [eth0],
     allowed_macs: [52:54:00:AB:CD:EF], write_mode: writeback}
  - {name: img, target: img, shelf: 1, slot: 1, interfaces: [eth0]}
disks:
  - {name: d, host: both, shelf: 1, slot: 1, table: dos, target_mac: 52:54:00:AA:BB:CC}
  - {name: g, host: both, shelf: 16, slot: 0, table: gpt}
partitions:
  - {name: d1, disk: d, number: 1, type: 0x8e, size: 100MiB}
  - {name: d2, disk: d, number: 2, type: 83}
  - {name: g1, disk: g, number: 1, label: data, size: 1G}
  - {name: g2, disk: g, number: 2, type: Swap, label: swap}
filesystems:
  - {name: fs, device: d2, type: xfs}
mounts:
  - {path: /data, filesystem: fs}
"""


def test_tutorial_loads_as_the_tutorial() -> None:
    spec = load_spec(EXAMPLES / "tutorial.yaml")
    server1, server2 = spec.host("server1"), spec.host("server2")
    assert server2.roles == frozenset({Role.TARGET})
    assert server1.module_persistence is ModulePersistence.ETC_MODULES
    assert [m.name for m in server1.modules] == ["aoe", "loop"]
    assert server1.modules[0].options == (("aoe_iflist", "eth0"),)
    lv = spec.target("storage1").backing
    assert (lv.device_path, lv.size) == ("/dev/vg0/storage1", 20 * GIB)
    (export,) = spec.exports_on("server2")
    assert (export.aoe_name, export.interfaces, export.server) == ("e0.1", ("eth0",),
                                                                   ServerKind.BUILTIN)
    disk = spec.disk("e0.1")
    assert (disk.device_path, disk.table) == ("/dev/etherd/e0.1", TableType.DOS)
    part = spec.partition("e0.1p1")
    assert (part.type, part.size) == ("83", None)
    assert spec.filesystem("storage").type == "ext3"
    assert spec.mounts[0].options == ("defaults", "auto", "_netdev")
    assert spec.where("exports", 0, "shelf") == Location(str(EXAMPLES / "tutorial.yaml"), 34, 12)


def test_values_are_normalised() -> None:
    spec = load_spec_text(SPEC, "s.yaml")
    host = spec.host("both")
    assert host.is_target and host.is_initiator
    assert host.modules[0].options == (("aoe_iflist", "eth0"), ("aoe_deadsecs", "0060"))
    raw, img = spec.targets
    assert raw.backing == DeviceBacking("/dev/sdb", None)
    assert isinstance(img.backing, FileBacking) and img.backing.allocation == "sparse"
    export = spec.exports[0]
    assert export.shelf == 16 and export.aoe_name == "e16.0"
    assert export.allowed_macs == ("52:54:00:ab:cd:ef",)  # base-60 trap avoided, lower-cased
    assert export.write_mode is WriteMode.WRITEBACK
    assert spec.exports[1].buffer_count == 64 and not spec.exports[1].read_only
    assert spec.disk("d").target_mac == "52:54:00:aa:bb:cc"
    d1, d2, g1, g2 = spec.partitions
    assert (d1.type, d1.size) == ("8e", 100 * MIB)
    assert (d2.type, d2.size) == ("83", None)
    assert (g1.type, g1.label) == (GPT_LINUX, "data")
    assert (g2.type, g2.size) == ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", None)
    assert spec.mounts[0].options == ("defaults",) and spec.mounts[0].auto


def test_merge_keys_and_aliases() -> None:
    text = SPEC.replace(
        "  - {name: img, target: img, shelf: 1, slot: 1, interfaces: [eth0]}",
        "  - {<<: {interfaces: *ifs, shelf: 2}, shelf: 1, name: img, target: img, slot: 1}",
    ).replace("interfaces: [eth0],\n", "interfaces: &ifs [eth0],\n")
    spec = load_spec_text(text, "s.yaml")
    assert spec.exports[1].shelf == 1  # written keys win over merged ones
    assert spec.exports[1].interfaces == ("eth0",)


def test_every_node_has_a_location() -> None:
    spec = load_spec_text(SPEC, "s.yaml")
    assert spec.where("partitions", 3, "label") == Location("s.yaml", 24, 55)
    assert spec.where("hosts", 0) == Location("s.yaml", 3, 5)
    assert spec.where("nope") is None


def test_paths_are_normalised_once_in_the_model() -> None:
    spec = load_spec_text("""\
version: 1
hosts:
  - {name: nas, roles: [target], interfaces: [eth0]}
  - {name: web, roles: [initiator], interfaces: [eth0]}
targets:
  - {name: data, host: nas, file: {path: //srv/aoe/./x/../data.img, size: 1G}}
  - {name: raw, host: nas, device: {path: /dev//sdb/}}
exports:
  - {name: data, target: data, shelf: 0, slot: 1, interfaces: [eth0]}
  - {name: raw, target: raw, shelf: 0, slot: 2, interfaces: [eth0]}
disks:
  - {name: e0.1, host: web, shelf: 0, slot: 1}
filesystems:
  - {name: data, device: e0.1, type: ext4}
mounts:
  - {path: /./data/., filesystem: data}
""")
    assert [t.backing.path for t in spec.targets] == ["/srv/aoe/data.img", "/dev/sdb"]
    assert spec.mounts[0].path == "/data"
    assert MountSpec("//data/", "fs").path == "/data"
