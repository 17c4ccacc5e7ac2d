"""fstab parsing, escaping and rendering: unmanaged lines survive byte for byte."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aoeprov.resources.fstab import (
    FstabEntry,
    desired_entry,
    escape,
    render_fstab,
    unescape,
)
from aoeprov.spec.model import MountSpec

DEBIAN_FSTAB = b"""# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0a6c-4f2b /               ext4    errors=remount-ro 0       1
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
tmpfs /tmp tmpfs
/dev/etherd/e0.1p1 /storage ext3 defaults,auto,_netdev 0 0
"""


text_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


@given(st.text(text_chars, min_size=1, max_size=20))
def test_escape_roundtrip(field: str) -> None:
    escaped = escape(field)
    assert not any(c in escaped for c in " \t\n")
    assert unescape(escaped) == field


@given(st.lists(st.sampled_from([*DEBIAN_FSTAB.split(b"\n"), b"", b"  # note"]), max_size=10))
def test_render_keeps_unmanaged_lines_and_is_idempotent(lines: list[bytes]) -> None:
    lines = [ln for ln in lines if not ln.startswith(b"/dev/etherd/e0.1p1 /storage")]
    text = b"\n".join(lines) + b"\n" if lines else None
    wanted = [desired_entry(MountSpec("/data 1", "fs", nofail=True), "/dev/etherd/e0.2", "xfs")]
    once = render_fstab(text, wanted)
    assert render_fstab(once, wanted) == once
    assert once.split(b"\n")[:len(lines)] == lines
    assert once.count(b"x-aoeprov") == 1
    # dropping the mount removes exactly our line
    assert render_fstab(once, []) == (text or b"")


def test_desired_entry_options() -> None:
    entry = desired_entry(MountSpec("/s", "fs", options=("defaults", "_netdev", "auto"),
                                    device_timeout=20), "/dev/etherd/e0.1p1", "ext3")
    assert entry.options == ("defaults", "_netdev", "x-systemd.requires=aoeprov-initiator.service",
                             "x-systemd.device-timeout=20s", "x-aoeprov")
    assert entry.same_as(FstabEntry(entry.source, "/s", "ext3", tuple(reversed(entry.options))))
