"""Filesystems on the initiator's partitions or whole disks.

Every signature is probed (``blkid -p`` and ``wipefs``); a failed probe counts as
"not empty". mkfs runs only on a blank device, without its force flag. The
spec's filesystem already there → nothing (a different label is changed in
place); anything else there → replacing it is destructive: shown blocked unless
the filesystem says ``wipe: true`` and the run says ``--allow-destroy``, and only
then are the old signatures wiped and mkfs forced.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from aoeprov.errors import PlanError
from aoeprov.reconciler.actions import Action, Drift, Noop, Op, ResourcePlan, RunCommand
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import BlockDeviceState, State
from aoeprov.resources._blockdev import Probe, an, describe_signatures, probe_device
from aoeprov.resources.mount import backing_file, parse_mountinfo
from aoeprov.runner import Runner
from aoeprov.spec.model import FilesystemSpec, FsType
from aoeprov.spec.queries import (
    device_path,
    disk_of,
    filesystems_on,
    partition_node,
    read_only_server,
)

LOG = logging.getLogger(__name__)

KIND = "filesystem"
USES_DISKS = True   # the reconciler hands over the disks' facts in GatherContext.disks


@dataclass(frozen=True)
class DeviceFacts:
    """The device one spec filesystem lives on, as probed now."""

    filesystem: str                # spec filesystem name
    path: str                      # /dev/etherd/e0.1p1 or /dev/etherd/e0.1
    local_path: str | None = None  # where commands reach it when mapped
    present: bool = False
    size: int | None = None
    probe: Probe | None = None
    mounted_at: str | None = None  # where it is mounted now (mountinfo), if anywhere
    fs_size: int | None = None     # bytes the filesystem spans (dumpe2fs, xfs_info)


@dataclass(frozen=True)
class FilesystemFacts:
    devices: tuple[DeviceFacts, ...] = ()

    def device(self, filesystem: str) -> DeviceFacts | None:
        return next((d for d in self.devices if d.filesystem == filesystem), None)


def gather(ctx: GatherContext, system_root: Path = Path("/")) -> FilesystemFacts:
    wanted = filesystems_on(ctx.spec, ctx.me.name)
    if not wanted:
        return FilesystemFacts()
    out = []
    for fs in wanted:
        disk, number = disk_of(ctx.spec, fs.device)
        df = ctx.disks[disk.name]
        if number is None:
            probe = df.probe
            if df.exists and probe is None:   # never "blank" for want of a probe
                probe = probe_device(ctx.host.runner, df.command_path)
            out.append(DeviceFacts(fs.name, df.path, df.local_path, df.exists, df.size, probe))
            continue
        part = df.partition(number)
        size = None
        if df.table is not None:
            size = next((p.size * df.table.sector_size for p in df.table.partitions
                         if p.number == number), None)
        if part is None:
            out.append(DeviceFacts(fs.name, partition_node(disk.device_path, number)))
        else:
            probe = part.probe
            if part.present and probe is None:
                probe = probe_device(ctx.host.runner, part.local_path or part.path)
            out.append(DeviceFacts(fs.name, part.path, part.local_path, part.present, size,
                                   probe))
    out = [replace(d, fs_size=filesystem_size(ctx.host.runner, d)) for d in out]
    return FilesystemFacts(tuple(_with_mounts(out, system_root)))


def parse_dumpe2fs(text: str) -> int | None:
    """``dumpe2fs -h`` -> bytes the ext filesystem spans (block count x block size)."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError):
        return None


_XFS_DATA = re.compile(r"^data\s*=\s*bsize=(\d+)\s+blocks=(\d+)", re.MULTILINE)


def parse_xfs_info(text: str) -> int | None:
    """``xfs_info`` -> bytes the xfs data section spans (blocks x bsize)."""
    found = _XFS_DATA.search(text)
    return int(found.group(1)) * int(found.group(2)) if found else None


def filesystem_size(runner: Runner, dev: DeviceFacts) -> int | None:
    """How much of its device the filesystem uses (so a grown device is noticed)."""
    fstype = dev.probe.fstype if dev.probe is not None else None
    if not dev.present or fstype not in {t.value for t in FsType}:
        return None
    path = dev.local_path or dev.path
    if fstype == FsType.XFS.value:
        done = runner.run(("xfs_info", path), ok_codes=range(0, 256))
        return parse_xfs_info(done.stdout) if done.rc == 0 else None
    done = runner.run(("dumpe2fs", "-h", path), ok_codes=range(0, 256))
    return parse_dumpe2fs(done.stdout) if done.rc == 0 else None


def _with_mounts(devices: list[DeviceFacts], system_root: Path) -> list[DeviceFacts]:
    """Each device with where it is mounted: a mount source, or a loop device's backing file,
    that resolves to the device's command path (a loop link, an image, the /dev node)."""
    try:
        entries = parse_mountinfo((system_root / "proc/self/mountinfo").read_text())
    except OSError:
        return devices
    where: dict[str, str] = {}
    for e in entries:
        for src in (e.source, backing_file(e.source, system_root / "sys/block")):
            if src and src.startswith("/"):
                where[os.path.realpath(src)] = e.mountpoint
    return [replace(d, mounted_at=where.get(os.path.realpath(d.local_path or d.path)))
            if d.present else d for d in devices]


def plan(ctx: PlanContext, facts: FilesystemFacts, state: State) -> ResourcePlan:
    actions: list[Action] = []
    noops: list[Noop] = []
    for fs in filesystems_on(ctx.spec, ctx.me.name):
        disk, _ = disk_of(ctx.spec, fs.device)
        path = device_path(ctx.spec, fs.device)
        df = facts.device(fs.name)
        dev = _device_state(state, df, path)
        mounted = df.mounted_at if df is not None and not dev.predicted else None
        if not dev.exists:
            raise PlanError(f"filesystem {fs.name}: {path} does not exist and nothing in this "
                            f"plan creates it")
        server = read_only_server(ctx.spec, disk)
        if server:
            new, noop = _check_read_only(fs, dev, f"{disk.aoe_name} is exported read-only by "
                                                  f"{server}")
        else:
            new, noop = _plan_one(ctx, fs, dev, mounted)
        actions.extend(new)
        if noop:
            noops.append(noop)
    return ResourcePlan(tuple(actions), tuple(noops))


def _device_state(state: State, df: DeviceFacts | None, path: str) -> BlockDeviceState:
    """The device as planned so far; a prediction (new partition) wins over old facts."""
    known = state.devices.get(path)
    if known is not None and known.predicted:
        return known
    if df is None:
        return known or state.device(path)
    probe = df.probe or Probe()
    dev = BlockDeviceState(
        # a partition this plan grows has its new size recorded by the partition planner
        path=path, exists=df.present, size=(known.size if known is not None and known.size
                                             else df.size),
        signatures=probe.signatures, probe_failed=probe.failed, fstype=probe.fstype,
        label=probe.label, uuid=probe.uuid, fs_size=df.fs_size,
        local_path=df.local_path or (known.local_path if known else None))
    if known is not None and known.table is not None:
        dev.table = known.table
    state.devices[path] = dev
    return dev


def mkfs_argv(fs: FilesystemSpec, device: str, *, force: bool) -> tuple[str, ...]:
    argv: list[str] = [f"mkfs.{fs.type.value}"]
    if force:  # only after our own probe and an allowed destroy
        argv.append("-f" if fs.type == FsType.XFS else "-F")
    if fs.label:
        argv += ["-L", fs.label]
    argv += list(fs.mkfs_options)
    argv.append(device)
    return tuple(argv)


def relabel_argv(fs: FilesystemSpec, device: str) -> tuple[str, ...]:
    label = fs.label or ""
    if fs.type == FsType.XFS:
        return ("xfs_admin", "-L", label or "--", device)
    return ("e2label", device, label)


def _plan_one(ctx: PlanContext, fs: FilesystemSpec, dev: BlockDeviceState,
              mounted: str | None = None) -> tuple[list[Action], Noop | None]:
    """``mounted``: where the device is mounted now; what needs it unmounted is not started."""
    want = fs.type.value
    label = f" labelled {fs.label!r}" if fs.label else ""
    if dev.held:
        return [], Noop(KIND, dev.path, f"nothing planned: {dev.held}")
    if not dev.contents_known:
        action = RunCommand(
            kind=KIND, target=dev.path, op=Op.CREATE, provisional=True,
            summary=f"make {an(want)} filesystem{label} if the device is blank",
            argv=mkfs_argv(fs, dev.command_path, force=False))
        _record(dev, fs)
        return [action], None
    if dev.blank:
        action = RunCommand(kind=KIND, target=dev.path, op=Op.CREATE,
                            summary=f"make {an(want)} filesystem{label}",
                            argv=mkfs_argv(fs, dev.command_path, force=False))
        _record(dev, fs)
        return [action], None
    if not dev.probe_failed and dev.fstype == want:
        if fs.label is not None and dev.label != fs.label:
            summary = f"relabel the {want} filesystem {dev.label!r} -> {fs.label!r}"
            argv = relabel_argv(fs, dev.command_path)
            if mounted and fs.type == FsType.XFS:   # xfs_admin works on unmounted ones only
                return [Drift(kind=KIND, target=dev.path, op=Op.CHANGE,
                              summary=f"{summary}: needs unmount (it is mounted at {mounted})",
                              remedy=f"umount {mounted}, then apply again (it relabels with "
                                     f"`{' '.join(argv)}`, then mounts)")], None
            dev.label = fs.label
            return [RunCommand(kind=KIND, target=dev.path, op=Op.CHANGE, summary=summary,
                               argv=argv)], None
        uuid = f", UUID {dev.uuid}" if dev.uuid else ""
        return [], Noop(KIND, dev.path, f"{want} filesystem{label} already there{uuid}")
    loss = f"{dev.path} holds {describe_signatures(dev)}"
    blocked = not (fs.wipe and ctx.allow_destroy)
    # never a raw "Device or resource busy" from wipefs: blocked whatever the run allows
    busy = f"{dev.path} is mounted at {mounted}: umount {mounted} first" if mounted else ""
    actions: list[Action] = [
        RunCommand(kind=KIND, target=dev.path, op=Op.DESTROY, destructive=True, data_loss=loss,
                   requires_allow=blocked, blocked_by=busy,
                   summary=f"wipe every signature ({loss})",
                   argv=("wipefs", "--all", dev.command_path)),
        RunCommand(kind=KIND, target=dev.path, op=Op.CREATE, destructive=True, data_loss=loss,
                   requires_allow=blocked, blocked_by=busy,
                   summary=f"make {an(want)} filesystem{label} in its place",
                   argv=mkfs_argv(fs, dev.command_path, force=True)),
    ]
    if blocked or busy:
        dev.held = f"making {an(want)} filesystem on {dev.path} is blocked"
    else:
        _record(dev, fs)
    return actions, None


def _check_read_only(fs: FilesystemSpec, dev: BlockDeviceState, why: str
                     ) -> tuple[list[Action], Noop | None]:
    """A read-only export is never formatted nor relabelled: the filesystem must be there."""
    want = fs.type.value
    label = f" labelled {fs.label!r}" if fs.label else ""
    if not dev.contents_known:
        action = RunCommand(
            kind=KIND, target=dev.path, op=Op.RUN, provisional=True,
            summary=f"check for the {want} filesystem{label} once the device appears ({why}: "
                    f"never formatted)",
            argv=("blkid", "-p", "-o", "export", dev.command_path))
        _record(dev, fs)
        return [action], None
    found = ""
    if dev.blank:
        found = "no filesystem (the device is blank)"
    elif dev.probe_failed or dev.fstype != want:
        found = describe_signatures(dev)
    elif fs.label is not None and dev.label != fs.label:
        found = f"{an(want)} filesystem labelled {dev.label!r}, the spec says {fs.label!r}"
    if found:
        raise PlanError(f"{why}: filesystem {fs.name} ({want}{label}) must already exist on "
                        f"{dev.path}; found {found}")
    uuid = f", UUID {dev.uuid}" if dev.uuid else ""
    return [], Noop(KIND, dev.path, f"{want} filesystem{label} already there{uuid} "
                                    f"(read-only export)")


def _record(dev: BlockDeviceState, fs: FilesystemSpec) -> None:
    dev.signatures = (fs.type.value,)
    dev.fstype = fs.type.value
    dev.label = fs.label
    dev.uuid = None
    dev.probe_failed = False
    dev.contents_known = True
