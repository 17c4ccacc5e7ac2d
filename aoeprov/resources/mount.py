"""Live mounts of the spec's filesystems on this host.

The mount point is created (under ``--root``), the filesystem mounted at
``root/<path>``, and the result checked against ``/proc/self/mountinfo``
(source and type, not just "something is mounted"). When something else is
mounted there, that is drift: aoeprov never stacks a second mount on top.
The source is the device's command path (the ``--device`` mapping or the loop
device of a mapped partition, see ``BlockDeviceState.local_path``), else the
``/dev/etherd`` name. Symlinked sources (the partitions resource's loop links
under ``/run/aoeprov/dev``, a ``--device`` path) are resolved at gathering; only
a source that resolves to a regular file gets ``-o loop``, and the resolved
source is what is compared with mountinfo (a loop mount of an image file
matches through the loop device's backing file). Filesystems on read-only
exports are mounted ``ro``, as fstab says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from aoeprov.errors import ApplyError, PlanError
from aoeprov.reconciler.actions import (
    Action,
    Drift,
    MakeDirectory,
    Noop,
    Op,
    ResourcePlan,
    RunCommand,
)
from aoeprov.reconciler.journal import JOURNAL_PATH, parse_journal
from aoeprov.reconciler.resource import GatherContext, PlanContext, removal
from aoeprov.reconciler.state import BlockDeviceState, State
from aoeprov.resources._blockdev import human_size
from aoeprov.resources._liveopts import check_options
from aoeprov.resources.fstab import (
    FSTAB,
    FSTAB_ONLY,
    UNMOUNT_OWED,
    parse_fstab,
    unescape,
    with_read_only,
)
from aoeprov.spec.hostpaths import forbidden_mount_point
from aoeprov.spec.queries import disk_of, mapped_path, mount_read_only, mounts_on

KIND = "mount"
MIB = 1 << 20   # a device this much larger than its filesystem gets it grown


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mountpoint: str
    source: str
    fstype: str
    options: str = ""
    device: str = ""               # major:minor
    backing_file: str | None = None   # for /dev/loopN sources: the file behind it
    super_options: str = ""        # the superblock's options (mountinfo's last field)


@dataclass(frozen=True)
class MountFacts:
    root: str                                         # resolved --root
    mounts: tuple[MountInfo, ...] = ()                # entries at the spec's mount points
    directories: dict[str, bool] = field(default_factory=dict)   # spec path -> dir exists
    links: dict[str, str] = field(default_factory=dict)   # source path -> symlinks resolved
    files: tuple[str, ...] = ()   # candidate sources that resolve to regular files (need loop)
    # mount points aoeprov manages by its fstab lines (marker x-aoeprov): one that left the spec
    # is unmounted with --prune
    managed: tuple[str, ...] = ()
    # spec mount path -> where symlinks on the host lead it, when they do (inside the root)
    redirected: dict[str, str] = field(default_factory=dict)


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
                             fstype=fields[sep + 1], options=fields[5], device=fields[2],
                             super_options=fields[sep + 3] if len(fields) > sep + 3 else ""))
    return out


def real_path(root: str, path: str) -> str:
    """Where spec path ``path`` is on the real system under ``root``."""
    return path if root == "/" else root.rstrip("/") + path


def mount_options(options: tuple[str, ...], loop: bool = False) -> tuple[str, ...]:
    """Options for mount(8): fstab-only ones dropped; ``loop`` for a regular file source."""
    opts = [o for o in options if o not in FSTAB_ONLY and not o.startswith(("x-", "comment="))]
    if loop:
        opts.append("loop")
    return tuple(dict.fromkeys(opts))


def backing_file(source: str, sys_block: Path) -> str | None:
    name = os.path.basename(source)
    if not name.startswith("loop"):
        return None
    try:
        return (sys_block / name / "loop/backing_file").read_text().strip() or None
    except OSError:
        return None


LOOP_LINKS = "/run/aoeprov/dev"   # where the partitions resource links --device partitions


def _candidates(ctx: GatherContext) -> list[str]:
    """Paths a mount source can be besides /dev/etherd names: --device paths, loop links."""
    candidates = list(ctx.device_map.values())
    link_dir = ctx.host.path(LOOP_LINKS)
    if link_dir.is_dir():
        candidates += sorted(str(p) for p in link_dir.iterdir())
    return candidates


def resolve_sources(candidates: list[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(path -> its resolved path where symlinks change it, resolved regular files)."""
    links = {c: r for c in candidates if (r := os.path.realpath(c)) != c}
    files = tuple(dict.fromkeys(
        r for r in (links.get(c, c) for c in candidates) if os.path.isfile(r)))
    return links, files


def managed_points(fstab: bytes | None, journal: bytes | None) -> tuple[str, ...]:
    """Mount points that are aoeprov's: in its fstab lines, or owed an unmount by the journal
    (the line was removed by a run killed before it unmounted)."""
    points = [e.mountpoint for _, e in parse_fstab(fstab or b"") if e is not None and e.managed]
    if journal:
        try:
            owed = parse_journal(journal.decode("utf-8", "replace"))
        except ApplyError:
            owed = {}   # apply reports a broken journal; planning goes on without it
        points += [k[len(UNMOUNT_OWED):] for k in owed if k.startswith(UNMOUNT_OWED)]
    return tuple(dict.fromkeys(points))


def gather(ctx: GatherContext, system_root: Path = Path("/")) -> MountFacts:
    root = str(ctx.host.root.resolve())
    points = {m.path: real_path(root, m.path) for m, _, _ in mounts_on(ctx.spec, ctx.me.name)}
    entries = parse_mountinfo((system_root / "proc/self/mountinfo").read_text())
    managed = managed_points(ctx.host.read_bytes(FSTAB), ctx.host.read_bytes(JOURNAL_PATH))
    wanted = set(points.values()) | {real_path(root, p) for p in managed}
    mounts = tuple(MountInfo(e.mountpoint, e.source, e.fstype, e.options, e.device,
                             backing_file(e.source, system_root / "sys/block"),
                             e.super_options)
                   for e in entries if e.mountpoint in wanted)
    links, files = resolve_sources(_candidates(ctx)) if points else ({}, ())
    redirected = {p: lead for p in points
                  if (lead := _host_path(ctx.host.root, ctx.host.real_path(p))) != p}
    return MountFacts(root=root, mounts=mounts,
                      directories={p: Path(r).is_dir() for p, r in points.items()},
                      links=links, files=files, managed=managed, redirected=redirected)


def _host_path(root: Path, real: Path) -> str:
    """``ROOT/srv/x`` -> ``/srv/x``."""
    return "/" + str(real.relative_to(root)) if real != root else "/"


def _matches(entry: MountInfo, resolved: str, fstype: str) -> bool:
    """Same type, and the resolved source is the mounted device or the loop's backing file."""
    return entry.fstype == fstype and resolved in {entry.source, entry.backing_file}


def command_path(ctx: PlanContext, state: State, fs_device: str, etherd_path: str) -> str:
    """What mount(8) gets: the planners' local path, a --device mapped whole disk, or the name."""
    known = state.devices.get(etherd_path)
    if known is not None:
        return known.command_path
    disk, number = disk_of(ctx.spec, fs_device)
    if number is None:
        return mapped_path(ctx.device_map, disk) or etherd_path
    return etherd_path


def plan(ctx: PlanContext, facts: MountFacts, state: State) -> ResourcePlan:
    actions: list[Action] = []
    noops: list[Noop] = []
    for mount, etherd_path, fstype in mounts_on(ctx.spec, ctx.me.name):
        fs_device = ctx.spec.filesystem(mount.filesystem).device
        source = command_path(ctx, state, fs_device, etherd_path)
        resolved = facts.links.get(source, source)
        point = real_path(facts.root, mount.path)
        lead = facts.redirected.get(mount.path)
        reason = forbidden_mount_point(lead) if lead is not None else None
        if reason is not None:
            raise PlanError(f"mount {mount.path}: it is a symbolic link to {lead}, which "
                            f"{reason}; mounting there would hide it (remove the link and "
                            "apply again)")
        held = state.devices.get(etherd_path)
        if held is not None and held.held:
            noops.append(Noop(KIND, mount.path, f"nothing planned: {held.held}"))
            continue
        opts = mount_options(with_read_only(mount.options, mount_read_only(ctx.spec, mount)),
                             loop=resolved in facts.files)
        top = [e for e in facts.mounts if e.mountpoint == point]
        if top:
            entry = top[-1]
            if _matches(entry, resolved, fstype):
                action = _live_options(mount.path, point, opts, entry)
                if action is None:
                    noops.append(Noop(KIND, mount.path, f"mounted from {source} ({fstype}) "
                                                         f"with the spec's options"))
                else:
                    actions.append(action)
                loop_file = entry.backing_file if entry.backing_file in facts.files else None
                actions.extend(_grow(mount.path, point, fstype, entry.source, loop_file,
                                     state.devices.get(etherd_path)))
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
        argv = ("mount", "-t", fstype, *(("-o", ",".join(opts)) if opts else ()), resolved,
                point)
        shown = source if resolved == source else f"{source} ({resolved})"
        device = state.devices.get(etherd_path)
        provisional = device is not None and device.predicted
        actions.append(RunCommand(kind=KIND, target=mount.path, op=Op.CREATE,
                                  summary=f"mount {shown} ({fstype}) at {point}", argv=argv,
                                  # the device is not there yet: decided once it appeared
                                  provisional=provisional))
        if resolved not in facts.files:   # a loop device mount -o loop makes is not known yet
            actions.extend(replace(a, provisional=provisional) for a in _grow(
                mount.path, point, fstype, resolved, None, device))
    unmounts, gone = _plan_removed(ctx, facts, state)
    return ResourcePlan(actions=tuple(actions) + unmounts, noops=tuple(noops) + gone)


def _grow(path: str, point: str, fstype: str, source: str, loop_file: str | None,
          dev: BlockDeviceState | None) -> list[Action]:
    """The filesystem spans less than its device (the export, the image or the partition
    grew): grown online, mounted (resize2fs on the mounted device, xfs_growfs on the mount
    point). A loop device over a grown image file learns its size first (losetup -c)."""
    if dev is None or dev.fstype != fstype or not dev.size or not dev.fs_size \
            or dev.size - dev.fs_size < MIB:
        return []
    grown = f"{human_size(dev.fs_size)} -> {human_size(dev.size)}"
    out: list[Action] = []
    if loop_file is not None:
        out.append(RunCommand(kind=KIND, target=path, op=Op.RUN,
                              summary=f"let {source} see the grown {loop_file}",
                              argv=("losetup", "--set-capacity", source)))
    argv = ("xfs_growfs", point) if fstype == "xfs" else ("resize2fs", source)
    out.append(RunCommand(kind=KIND, target=path, op=Op.CHANGE,
                          summary=f"grow the {fstype} filesystem online to its device ({grown})",
                          argv=argv))
    dev.fs_size = dev.size
    return out


def _live_options(path: str, point: str, opts: tuple[str, ...], entry: MountInfo
                  ) -> Action | None:
    """The live mount against the spec's options: a remount for what it changes in place,
    drift with the remedy for what it cannot; None when they agree."""
    check = check_options(opts, entry.options, entry.super_options)
    if check.not_changeable:
        return Drift(
            kind=KIND, target=path, op=Op.CHANGE,
            summary=f"mounted without {', '.join(check.not_changeable)} (live options "
                    f"{entry.super_options or entry.options}); a remount cannot be trusted to "
                    f"change {'them' if len(check.not_changeable) > 1 else 'it'}",
            remedy=f"umount {point}, then apply again (it mounts with the spec's options)")
    if not check.remount:
        return None
    changes = ", ".join(f"{w} (live: {h})" for w, h in zip(check.remount, check.live,
                                                            strict=True))
    return RunCommand(kind=KIND, target=path, op=Op.CHANGE,
                      summary=f"remount {point} in place with {changes}",
                      argv=("mount", "-o", ",".join(("remount", *check.remount)), point))


def _plan_removed(ctx: PlanContext, facts: MountFacts, state: State
                  ) -> tuple[tuple[Action, ...], tuple[Noop, ...]]:
    """Unmount aoeprov's mounts that left the spec (with --prune): the filesystem is kept."""
    spec_points = {m.path for m, _, _ in mounts_on(ctx.spec, ctx.me.name)}
    owed = {k[len(UNMOUNT_OWED):] for k in state.pending if k.startswith(UNMOUNT_OWED)}
    actions: list[Action] = []
    noops: list[Noop] = []
    for path in dict.fromkeys((*facts.managed, *sorted(owed))):
        if path in spec_points:
            continue
        point = real_path(facts.root, path)
        key = UNMOUNT_OWED + path
        top = [e for e in facts.mounts if e.mountpoint == point]
        if not top:
            noops.append(Noop(KIND, path, "left the spec and is not mounted"))
            if key in state.pending:
                state.settled.add(key)
            continue
        actions.append(removal(ctx, RunCommand(
            kind=KIND, target=path, op=Op.DESTROY,
            summary=f"unmount {point} ({top[-1].source}, {top[-1].fstype}): the mount left the "
                    f"spec; the filesystem is kept",
            argv=("umount", point), settles=key if key in state.pending or ctx.prune else "")))
    return tuple(actions), tuple(noops)
