"""mountinfo parsing (optional fields, escapes) and mount(8) options."""

from __future__ import annotations

from pathlib import Path

from aoeprov.resources.mount import MountInfo, mount_options, parse_mountinfo, real_path

DATA = Path(__file__).parent / "data"


def test_parse_mountinfo() -> None:
    entries = parse_mountinfo((DATA / "mountinfo-debian12").read_text())
    by_point = {e.mountpoint: e for e in entries}
    assert by_point["/storage"] == MountInfo("/storage", "/dev/etherd/e0.1p1", "ext3",
                                             "rw,relatime", "152:17")
    assert by_point["/run/netns"].source == "/dev/vda1"     # two optional fields
    assert by_point["/srv/my data"].source == "/dev/loop1"  # \040 unescaped
    assert [e.mountpoint for e in entries][:3] == ["/proc", "/dev", "/"]
    assert parse_mountinfo("garbage line\n") == []


def test_mount_options_and_paths() -> None:
    assert mount_options(("defaults", "auto", "_netdev", "noatime", "x-systemd.requires=a")
                         ) == ("noatime",)
    assert mount_options(("defaults",), loop=True) == ("loop",)
    assert real_path("/", "/storage") == "/storage"
    assert real_path("/tmp/r/", "/storage") == "/tmp/r/storage"
