"""What uses a block device: mounts of it or its partitions, swap, sysfs holders (LVM, RAID).
A real mounted loop device: tests/storage/test_host_files.py."""

from __future__ import annotations

from pathlib import Path

from aoeprov.resources._holders import DeviceTree, describe_users, device_tree, parse_swaps
from aoeprov.resources.mount import parse_mountinfo

MOUNTINFO = """\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
40 22 8:17 / /srv/my\\040data rw,relatime shared:2 - ext4 /dev/sdb1 rw
41 22 7:0 / /mnt/img rw,relatime shared:3 - ext4 /dev/loop0 rw
"""
SWAPS = """\
Filename				Type		Size		Used		Priority
/dev/sdb2                               partition	1048572		0		-2
/swap\\040file                          file		1048572		0		-3
"""


def sysfs_disk(root: Path) -> Path:
    """/sys/dev/block/8:16 for sdb with partitions sdb1, sdb2 and sdb3 (sdb3 under md0)."""
    disk = root / "devices/sdb"
    (disk / "holders").mkdir(parents=True)
    (disk / "dev").write_text("8:16\n")
    for n in (1, 2, 3):
        part = disk / f"sdb{n}"
        (part / "holders").mkdir(parents=True)
        (part / "dev").write_text(f"8:{16 + n}\n")
        (part / "partition").write_text(f"{n}\n")
    (disk / "sdb3/holders/md0").mkdir()
    (disk / "sdb3/holders/dm-1").mkdir()
    (root / "block/dm-1/dm").mkdir(parents=True)
    (root / "block/dm-1/dm/name").write_text("vg0-data\n")
    return disk


def test_parse_swaps() -> None:
    assert parse_swaps(SWAPS) == ["/dev/sdb2", "/swap file"]


def test_every_user_of_a_disk_and_its_partitions(tmp_path: Path) -> None:
    tree = device_tree(sysfs_disk(tmp_path), tmp_path / "block")
    assert tree.names == {"8:16": "sdb", "8:17": "sdb1", "8:18": "sdb2", "8:19": "sdb3"}
    users = describe_users(tree, parse_mountinfo(MOUNTINFO), {"8:18": "/dev/sdb2"})
    assert users == [
        "/dev/sdb1 is mounted at /srv/my data",
        "/dev/sdb2 is an active swap area",
        "/dev/sdb3 is held by device-mapper dm-1 (vg0-data: an active LVM volume or dm mapping)",
        "/dev/sdb3 is held by RAID array md0",
    ]


def test_an_unused_device_has_no_users() -> None:
    tree = DeviceTree({"8:32": "sdc"})
    assert describe_users(tree, parse_mountinfo(MOUNTINFO), {}) == []

