"""``_loopmap attach``: reuse a loop that already maps the partition, else attach one; link it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from aoeprov.resources._loopmap import attach
from aoeprov.runner import Result


class FakeRunner:
    def __init__(self, loops: list[dict[str, object]], new: str = "/dev/loop7") -> None:
        self.loops, self.new = loops, new
        self.calls: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, stdin: str | bytes | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result:
        argv = tuple(argv)
        self.calls.append(argv)
        if argv[:2] == ("losetup", "--list"):
            return Result(argv, 0, json.dumps({"loopdevices": self.loops}), "")
        assert argv[:3] == ("losetup", "--find", "--show")
        return Result(argv, 0, self.new + "\n", "")


def test_attaches_and_links(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"")
    runner = FakeRunner([])
    link = tmp_path / "run/aoeprov/dev/e0.1p1"
    assert attach(runner, str(image), 1048576, 4194304, link) == "/dev/loop7"
    assert runner.calls[-1] == ("losetup", "--find", "--show", "--offset", "1048576",
                                "--sizelimit", "4194304", str(image))
    assert os.readlink(link) == "/dev/loop7"


def test_reuses_a_loop_left_by_a_killed_run(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"")
    runner = FakeRunner([
        {"name": "/dev/loop2", "back-file": str(image), "offset": 0, "sizelimit": 0},
        {"name": "/dev/loop3", "back-file": str(image), "offset": 1048576, "sizelimit": 4194304},
    ])
    link = tmp_path / "e0.1p1"
    os.symlink("/dev/loop9", link)   # a stale link is replaced atomically
    assert attach(runner, str(image), 1048576, 4194304, link) == "/dev/loop3"
    assert [c[:2] for c in runner.calls] == [("losetup", "--list")]
    assert os.readlink(link) == "/dev/loop3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img", "e0.1p1"]


def test_stale_partition_loops() -> None:
    """Only partition loops over the rehearsal's images that no link names and nothing
    mounts are stale; a whole-image loop (mount -o loop) and other files are never touched."""
    from aoeprov.resources._blockdev import LoopInfo
    from aoeprov.resources._loopmap import stale_loops

    loops = [LoopInfo("/dev/loop1", "/img/d.img", 1 << 20, 63 << 20),   # linked
             LoopInfo("/dev/loop2", "/img/d.img", 1 << 20, 31 << 20),   # replaced: stale
             LoopInfo("/dev/loop3", "/img/d.img", 1 << 20, 15 << 20),   # mounted
             LoopInfo("/dev/loop4", "/img/d.img"),                      # mount -o loop
             LoopInfo("/dev/loop5", "/other.img", 1 << 20, 1 << 20)]    # not ours
    assert stale_loops(loops, {"/img/d.img"}, {"/dev/loop1"}, {"/dev/loop3"}) == ["/dev/loop2"]
