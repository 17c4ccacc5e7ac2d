"""Whether a block device (or an image file, through the loop devices over it) is in use
on this host, and by what.

Exporting a device that is mounted here (or has a mounted partition), that is an
active swap area, or that the kernel shows held by another device (an active LVM
physical volume under device-mapper, a RAID member under md) lets initiators
write under a live filesystem or volume. Three kernel sources say so:
``/proc/self/mountinfo`` (major:minor of every mounted device),
``/sys/dev/block/MAJ:MIN/holders`` (and each partition's), and ``/proc/swaps``.
A device whose LVM or RAID signature is not active is not "in use" here: nothing
on this host writes to it (the filesystem and partition resources guard what is
on it).

Gathering reads the files; ``describe_users`` is a pure function of what they said.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.resources.fstab import unescape
from aoeprov.resources.mount import MountInfo, parse_mountinfo


@dataclass(frozen=True)
class DeviceTree:
    """A block device and its partitions: major:minor -> kernel name (``sdb``, ``sdb1``)."""

    names: dict[str, str]
    holders: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> descriptions


def parse_swaps(text: str) -> list[str]:
    """``/proc/swaps`` -> the swap areas' paths (the header line is skipped)."""
    return [unescape(line.split()[0]) for line in text.splitlines()[1:] if line.split()]


def describe_users(tree: DeviceTree, mounts: list[MountInfo],
                   swaps: dict[str, str]) -> list[str]:
    """What uses the device or its partitions, one phrase each, in a stable order.

    ``swaps``: major:minor -> path of the active swap areas that are block devices.
    """
    out: list[str] = []
    for majmin, name in tree.names.items():
        for m in mounts:
            if m.device == majmin:
                out.append(f"/dev/{name} is mounted at {m.mountpoint}")
        if majmin in swaps:
            out.append(f"/dev/{name} is an active swap area")
        out.extend(f"/dev/{name} is held by {h}" for h in tree.holders.get(name, ()))
    return list(dict.fromkeys(out))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _holder(sys_block: Path, name: str) -> str:
    """``dm-0`` -> ``device-mapper dm-0 (vg0-data: LVM or dm-crypt)``; ``md0`` -> RAID."""
    dm_name = _read(sys_block / name / "dm" / "name")
    if dm_name is not None:
        return f"device-mapper {name} ({dm_name}: an active LVM volume or dm mapping)"
    if name.startswith("md"):
        return f"RAID array {name}"
    return name


def device_tree(sys_dev: Path, sys_block: Path) -> DeviceTree:
    """The sysfs directory of a device (``/sys/dev/block/8:16``) -> it and its partitions."""
    names: dict[str, str] = {}
    holders: dict[str, tuple[str, ...]] = {}
    dirs = [sys_dev, *sorted(d for d in sys_dev.iterdir()
                             if (d / "partition").is_file() and (d / "dev").is_file())]
    for d in dirs:
        majmin = _read(d / "dev")
        if majmin is None:
            continue
        names[majmin] = d.name
        held = sorted(p.name for p in (d / "holders").iterdir()) if (d / "holders").is_dir() \
            else []
        if held:
            holders[d.name] = tuple(_holder(sys_block, h) for h in held)
    return DeviceTree(names, holders)


def _majmin(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def loops_of(path: str, system_root: Path = Path("/")) -> list[str]:
    """Loop devices whose backing file is the regular file ``path`` (``/dev/loop3``...)."""
    real = os.path.realpath(path)
    sys_block = system_root / "sys/block"
    found = []
    for loop in sorted(sys_block.glob("loop*")) if sys_block.is_dir() else []:
        if _read(loop / "loop" / "backing_file") == real:
            found.append(f"/dev/{loop.name}")
    return found


def users_of(path: str, system_root: Path = Path("/")) -> list[str]:
    """What uses block device ``path`` on this host, or the loop devices over image file
    ``path`` (empty: nothing uses it)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    if stat.S_ISREG(st.st_mode):
        return [f"it backs {loop}, and {use}" for loop in loops_of(path, system_root)
                for use in users_of(loop, system_root)]
    if not stat.S_ISBLK(st.st_mode):
        return []
    sys_dev = system_root / "sys/dev/block" / _majmin(st.st_rdev)
    if not sys_dev.is_dir():
        return []
    tree = device_tree(sys_dev.resolve(), system_root / "sys/block")
    mounts = parse_mountinfo(_read(system_root / "proc/self/mountinfo") or "")
    swaps: dict[str, str] = {}
    for swap in parse_swaps(_read(system_root / "proc/swaps") or ""):
        try:
            sst = os.stat(swap)
        except OSError:
            continue
        if stat.S_ISBLK(sst.st_mode):
            swaps[_majmin(sst.st_rdev)] = swap
    return describe_users(tree, mounts, swaps)
