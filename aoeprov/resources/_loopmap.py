"""Attach a loop device over one partition of an image file and record it as a symlink.

Run by a plan action (``python -m aoeprov.resources._loopmap attach ...``) because
the loop device's name is only known once ``losetup --find`` has picked it. An
existing loop over the same file, offset and size is reused, so a run killed
between ``losetup`` and the link leaks nothing: the next run finds that loop.
Only used for disks given with ``--device`` (this kernel does not scan their
partitions); real AoE disks get their partition nodes from the kernel. At the
end of an apply, partition loops over the rehearsal's images that no link names
and nothing mounts (a link replaced after a partition grew, a killed run) are
detached: the linked ones are reused by the next run, nothing else is left.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aoeprov.resources._blockdev import LoopInfo, list_loops
from aoeprov.resources.mount import parse_mountinfo
from aoeprov.runner import Runner, ShRunner


def attach(runner: Runner, back_file: str, offset: int, size: int, link: Path) -> str:
    """A loop over ``size`` bytes of ``back_file`` from ``offset``; ``link`` points at it."""
    back = os.path.realpath(back_file)
    existing = [lo.name for lo in list_loops(runner)
                if os.path.realpath(lo.back_file) == back and lo.offset == offset
                and lo.sizelimit == size]
    if existing:
        loop = existing[0]
    else:
        loop = runner.run(("losetup", "--find", "--show", "--offset", str(offset),
                           "--sizelimit", str(size), back)).stdout.strip()
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(loop, tmp)
    os.replace(tmp, link)  # atomic: the link is either the old one or the new one
    return loop


def stale_loops(loops: Sequence[LoopInfo], images: set[str], linked: set[str],
                mounted: set[str]) -> list[str]:
    """Partition loops over rehearsal images (resolved paths) that no link names and nothing
    mounts: left by a link that was replaced (a grown partition) or by a killed run."""
    return [lo.name for lo in loops
            if os.path.realpath(lo.back_file) in images and (lo.offset or lo.sizelimit)
            and lo.name not in linked and lo.name not in mounted]


def release_stale(runner: Runner, link_dir: Path, images: Sequence[str],
                  mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Detach the stale partition loops of this rehearsal (``stale_loops``); the linked ones
    stay for the next run to reuse. Returns the loops detached."""
    linked = {os.path.realpath(p) for p in link_dir.iterdir()} if link_dir.is_dir() else set()
    mounted = {os.path.realpath(e.source) for e in parse_mountinfo(mountinfo.read_text())
               if e.source.startswith("/")}
    stale = stale_loops(list_loops(runner), {os.path.realpath(i) for i in images}, linked,
                        mounted)
    for name in stale:
        runner.run(("losetup", "--detach", name))
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aoeprov.resources._loopmap")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("attach")
    p.add_argument("--link", required=True, type=Path)
    p.add_argument("--offset", required=True, type=int)
    p.add_argument("--size", required=True, type=int)
    p.add_argument("back_file")
    args = parser.parse_args(argv)
    loop = attach(ShRunner(), args.back_file, args.offset, args.size, args.link)
    sys.stdout.write(f"{loop}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
