"""mountinfo parsing (optional fields, escapes) and mount(8) options."""

from __future__ import annotations

from pathlib import Path

from aoeprov.resources.mount import mount_options, real_path

DATA = Path(__file__).parent / "data"


def test_mount_options_and_paths() -> None:
    assert mount_options(("defaults", "auto", "_netdev", "noatime", "x-systemd.requires=a")
                         ) == ("noatime",)
    assert mount_options(("defaults",), loop=True) == ("loop",)
    assert real_path("/", "/storage") == "/storage"
    assert real_path("/tmp/r/", "/storage") == "/tmp/r/storage"


def test_live_options_remount_and_drift() -> None:
    from aoeprov.resources._liveopts import check_options

    same = check_options(("noatime",), "rw,nodev,noatime", "rw,errors=remount-ro")
    assert same.remount == ("dev",)   # nodev live, the spec no longer says it: back to dev
    assert check_options(("nodev", "noatime"), "rw,nodev,noatime", "rw").remount == ()
    ro = check_options(("ro", "sync"), "rw,relatime", "rw")
    assert ro.remount == ("ro", "sync") and ro.live == ("rw", "async")
    assert check_options(("errors=remount-ro",), "rw", "rw,errors=remount-ro").remount == ()
    other = check_options(("data=journal",), "rw", "rw,data=ordered")
    assert other.not_changeable == ("data=journal",)
    assert check_options(("user",), "rw,nosuid,nodev,noexec", "rw").remount == ()
