"""Live mounts of the spec's filesystems on this host.

The mount point is created (under ``--root``), the filesystem mounted at
``root/<path>``, and the result checked against ``/proc/self/mountinfo``
(source and type, not just "something is mounted"). When something else is
mounted there, that is drift: aoeprov never stacks a second mount on top.
The source is the device's command path (the ``--device`` mapping or the loop
device of a mapped partition, see ``BlockDeviceState.local_path``), else the
``/dev/etherd`` name; a loop mount of an image file matches through the loop
device's backing file, and a symlinked command path (the partitions resource's
loop links under ``/run/aoeprov/dev``, a ``--device`` path) through its target.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.reconciler.actions import (
    Action,
    Drift,
    MakeDirectory,
    Noop,
    Op,
    ResourcePlan,
    RunCommand,
)
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.resources.fstab import FSTAB_ONLY, device_of, mounts_on, unescape

KIND = "mount"


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mountpoint: str
    source: str
    fstype: str
    options: str = ""
    device: str = ""               # major:minor
    backing_file: str | None = None   # for /dev/loopN sources: the file behind it


@dataclass(frozen=True)
class MountFacts:
    root: str                                         # resolved --root
    mounts: tuple[MountInfo, ...] = ()                # entries at the spec's mount points
    directories: dict[str, bool] = field(default_factory=dict)   # spec path -> dir exists
    links: dict[str, str] = field(default_factory=dict)   # symlinked device path -> its target


def parse_mountinfo(text: str) -> list[MountInfo]:
    """``/proc/self/mountinfo`` -> entries in mount order (later ones hide earlier ones)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        out.append(MountInfo(mountpoint=unescape(fields[4]), source=unescape(fields[sep + 2]),
                             fstype=fields[sep + 1], options=fields[5], device=fields[2]))
    return out


def real_path(root: str, path: str) -> str:
    """Where spec path ``path`` is on the real system under ``root``."""
    return path if root == "/" else root.rstrip("/") + path


def mount_options(options: tuple[str, ...], source: str) -> tuple[str, ...]:
    """Options for mount(8): fstab-only ones dropped; ``loop`` for an image file source."""
    opts = [o for o in options if o not in FSTAB_ONLY and not o.startswith(("x-", "comment="))]
    if not source.startswith("/dev/"):
        opts.append("loop")
    return tuple(dict.fromkeys(opts))


def _backing_file(source: str, sys_block: Path) -> str | None:
    name = os.path.basename(source)
    if not name.startswith("loop"):
        return None
    try:
        return (sys_block / name / "loop/backing_file").read_text().strip() or None
    except OSError:
        return None


LOOP_LINKS = "/run/aoeprov/dev"   # where the partitions resource links --device partitions


def _links(ctx: GatherContext) -> dict[str, str]:
    candidates = list(ctx.device_map.values())
    link_dir = ctx.host.path(LOOP_LINKS)
    if link_dir.is_dir():
        candidates += [str(p) for p in link_dir.iterdir()]
    return {c: os.path.realpath(c) for c in candidates if os.path.islink(c)}


def gather(ctx: GatherContext, system_root: Path = Path("/")) -> MountFacts:
    root = str(ctx.host.root.resolve())
    points = {m.path: real_path(root, m.path) for m, _, _ in mounts_on(ctx.spec, ctx.me.name)}
    entries = parse_mountinfo((system_root / "proc/self/mountinfo").read_text())
    wanted = set(points.values())
    mounts = tuple(MountInfo(e.mountpoint, e.source, e.fstype, e.options, e.device,
                             _backing_file(e.source, system_root / "sys/block"))
                   for e in entries if e.mountpoint in wanted)
    return MountFacts(root=root, mounts=mounts,
                      directories={p: Path(r).is_dir() for p, r in points.items()},
                      links=_links(ctx))


def _matches(entry: MountInfo, source: str, fstype: str, links: dict[str, str]) -> bool:
    if entry.fstype != fstype:
        return False
    return bool({source, links.get(source)} & {entry.source, entry.backing_file})


def command_path(ctx: PlanContext, state: State, fs_device: str, etherd_path: str) -> str:
    """What mount(8) gets: the planners' local path, a --device mapped whole disk, or the name."""
    known = state.devices.get(etherd_path)
    if known is not None:
        return known.command_path
    disk, _ = device_of(ctx.spec, fs_device)
    if etherd_path == disk.device_path:
        return ctx.device_map.get(disk.name) or ctx.device_map.get(disk.aoe_name) or etherd_path
    return etherd_path


def plan(ctx: PlanContext, facts: MountFacts, state: State) -> ResourcePlan:
    actions: list[Action] = []
    noops: list[Noop] = []
    for mount, etherd_path, fstype in mounts_on(ctx.spec, ctx.me.name):
        fs_device = ctx.spec.filesystem(mount.filesystem).device
        source = command_path(ctx, state, fs_device, etherd_path)
        point = real_path(facts.root, mount.path)
        top = [e for e in facts.mounts if e.mountpoint == point]
        if top:
            entry = top[-1]
            if _matches(entry, source, fstype, facts.links):
                noops.append(Noop(KIND, mount.path, f"mounted from {source} ({fstype})"))
            else:
                actions.append(Drift(
                    kind=KIND, target=mount.path, op=Op.CHANGE,
                    summary=f"{entry.source} ({entry.fstype}) is mounted at {point}, the spec "
                            f"wants {source} ({fstype}); not mounting over it",
                    remedy=f"umount {point}, then apply again"))
            continue
        if not facts.directories.get(mount.path, False):
            actions.append(MakeDirectory(kind=KIND, target=mount.path, op=Op.CREATE,
                                         summary="create the mount point"))
        opts = mount_options(mount.options, source)
        argv = ("mount", "-t", fstype, *(("-o", ",".join(opts)) if opts else ()), source, point)
        actions.append(RunCommand(kind=KIND, target=mount.path, op=Op.CREATE,
                                  summary=f"mount {source} ({fstype}) at {point}", argv=argv))
    return ResourcePlan(actions=tuple(actions), noops=tuple(noops))
