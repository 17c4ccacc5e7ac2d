"""Block device fact parsers, from output captured on this machine (util-linux 2.38.1)."""

from __future__ import annotations

import os
from pathlib import Path

from aoeprov.resources._blockdev import (
    LoopInfo,
    loop_link_valid,
)


def test_loop_link_counts_only_when_losetup_confirms(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"")
    link = tmp_path / "e0.1p1"
    os.symlink("/dev/loop0", link)
    loops = (LoopInfo("/dev/loop0", str(image), 1048576, 66060288),)
    assert loop_link_valid(str(link), str(image), 1048576, 66060288, loops)
    assert not loop_link_valid(str(link), str(image), 2097152, 66060288, loops)  # other offset
    assert not loop_link_valid(str(link), str(tmp_path / "other.img"), 1048576, 66060288, loops)
    assert not loop_link_valid(str(tmp_path / "missing"), str(image), 1048576, 66060288, loops)
