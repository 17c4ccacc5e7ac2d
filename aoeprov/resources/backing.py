"""Backing storage of the targets a host serves: LVM volumes, image files, block devices.

LVM state comes from the ``lvs``/``vgs`` JSON reports in bytes; sizes are rounded
up to the volume group's extent size, as ``lvcreate`` does, before comparing.
Volumes and image files are created or grown, never shrunk (a smaller spec size
is an error saying so). Image files are made sparse with ``truncate`` or
preallocated with ``fallocate`` — never by writing zeros. A block device is only
checked: it must exist, be at least the size the spec expects, and not be in use
on this host (mounted, a mounted partition, active swap, held by LVM or RAID).

LVM is live state of the machine, read even under ``--root``. When the volume
group cannot be seen (``lvs``/``vgs`` not installed: the facts say "lvm not
available"; or the group is not on this machine), a real run stops with an
error naming what is missing, while a ``--root`` rehearsal shows the volume's
creation as provisional (decided where the volume group exists; apply stops
there).
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aoeprov.errors import CommandNotFound, PlanError
from aoeprov.reconciler.actions import Action, MakeDirectory, Noop, Op, ResourcePlan, RunCommand
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import BlockDeviceState, State
from aoeprov.resources._blockdev import human_size
from aoeprov.resources._holders import users_of
from aoeprov.resources.export import TARGET_RELOAD
from aoeprov.spec.hostpaths import normalize_path, system_place
from aoeprov.spec.model import (
    Allocation,
    DeviceBacking,
    FileBacking,
    LvmBacking,
    ServerKind,
    TargetSpec,
)
from aoeprov.spec.queries import targets_on
from aoeprov.spec.sizes import SECTOR

LOG = logging.getLogger(__name__)

KIND = "backing"
VGS_ARGV = ("vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", "vg_name,vg_size,vg_free,vg_extent_size")
LVS_ARGV = ("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", "vg_name,lv_name,lv_size,lv_path")


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int
    extent_size: int


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    name: str
    size: int
    path: str = ""


@dataclass(frozen=True)
class FileInfo:
    path: str                 # the spec's path on the host
    local_path: str           # the same under --root
    exists: bool = False
    regular: bool = True
    size: int = 0
    allocated: int = 0        # bytes actually allocated (st_blocks * 512)
    parent_exists: bool = True
    # what says an existing file may not be a disk image (adopt: true overrides):
    text: bool = False        # no NUL byte in its first TEXT_PROBE bytes (and not empty)
    package: str = ""         # the Debian package that owns it (dpkg's lists under --root)
    real_path: str = ""       # where a symlink leads, as a host path, when it is one
    users: tuple[str, ...] = ()   # mounted here through a loop device ("it backs /dev/loop3...")


@dataclass(frozen=True)
class DeviceInfo:
    path: str
    exists: bool = False
    block: bool = True
    size: int | None = None
    users: tuple[str, ...] = ()   # what uses it on this host ("/dev/sdb1 is mounted at /srv")


@dataclass(frozen=True)
class BackingFacts:
    vgs: tuple[VolumeGroup, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()
    files: tuple[FileInfo, ...] = ()
    devices: tuple[DeviceInfo, ...] = ()
    lvm_missing: str = ""     # why lvs/vgs could not run ("lvm not available: vgs ..."), or ""

    def vg(self, name: str) -> VolumeGroup | None:
        return next((v for v in self.vgs if v.name == name), None)

    def lv(self, vg: str, name: str) -> LogicalVolume | None:
        return next((v for v in self.lvs if v.vg == vg and v.name == name), None)

    def file(self, path: str) -> FileInfo | None:
        return next((f for f in self.files if f.path == path), None)

    def device(self, path: str) -> DeviceInfo | None:
        return next((d for d in self.devices if d.path == path), None)


# ---- pure parsers -------------------------------------------------------------------------

def _report_rows(text: str, section: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for report in json.loads(text).get("report", []):
        rows.extend(report.get(section, []))
    return rows


def parse_vgs_json(text: str) -> tuple[VolumeGroup, ...]:
    """``vgs`` JSON report (``VGS_ARGV``): sizes in bytes."""
    return tuple(VolumeGroup(r["vg_name"], int(r["vg_size"]), int(r["vg_free"]),
                             int(r["vg_extent_size"])) for r in _report_rows(text, "vg"))


def parse_lvs_json(text: str) -> tuple[LogicalVolume, ...]:
    """``lvs`` JSON report (``LVS_ARGV``): sizes in bytes."""
    return tuple(LogicalVolume(r["vg_name"], r["lv_name"], int(r["lv_size"]), r.get("lv_path", ""))
                 for r in _report_rows(text, "lv"))


def round_to_extent(size: int, extent: int) -> int:
    return math.ceil(size / extent) * extent


# ---- gathering ----------------------------------------------------------------------------

def gather(ctx: GatherContext) -> BackingFacts:
    targets = targets_on(ctx.spec, ctx.me.name)
    if not targets:
        return BackingFacts()
    vgs: tuple[VolumeGroup, ...] = ()
    lvs: tuple[LogicalVolume, ...] = ()
    lvm_missing = ""
    if any(isinstance(t.backing, LvmBacking) for t in targets):
        try:
            vgs = parse_vgs_json(ctx.host.runner.run(VGS_ARGV).stdout)
            lvs = parse_lvs_json(ctx.host.runner.run(LVS_ARGV).stdout)
        except CommandNotFound as exc:
            lvm_missing = f"lvm not available: {exc.argv[0]} is not installed (package lvm2)"
    files, devices = [], []
    for t in targets:
        if isinstance(t.backing, FileBacking):
            files.append(_file_info(ctx, t.backing.path))
        elif isinstance(t.backing, DeviceBacking):
            devices.append(_device_info(ctx, t.backing.path))
    return BackingFacts(vgs, lvs, tuple(files), tuple(devices), lvm_missing)


TEXT_PROBE = 64 * 1024
DPKG_INFO = "/var/lib/dpkg/info"


def _file_info(ctx: GatherContext, path: str) -> FileInfo:
    # commands (truncate, fallocate) act on the file symlinks lead to inside the root: a
    # link's absolute target is the root's, never the real machine's
    real = ctx.host.real_path(path)
    local = str(real)
    real_host = "/" + str(real.relative_to(ctx.host.root)) if real != ctx.host.path(path) else ""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return FileInfo(path, local, parent_exists=os.path.isdir(os.path.dirname(local)),
                        real_path=real_host)
    regular = stat.S_ISREG(st.st_mode)
    text = False
    if regular and st.st_size:
        with open(real, "rb") as fh:
            text = b"\0" not in fh.read(TEXT_PROBE)
    owners = {path, real_host} - {""}
    return FileInfo(path, local, exists=True, regular=regular, size=st.st_size,
                    allocated=st.st_blocks * 512, text=text,
                    package=package_owning(ctx.host.path(DPKG_INFO), owners) if regular else "",
                    real_path=real_host, users=tuple(users_of(str(real))) if regular else ())


def package_owning(info_dir: Path, paths: set[str]) -> str:
    """The package whose dpkg file list (``<pkg>.list``, one path a line) has one of ``paths``."""
    if not info_dir.is_dir():
        return ""
    needles = [b"\n" + p.encode() + b"\n" for p in paths]   # whole lines only
    for listing in sorted(info_dir.glob("*.list")):
        try:
            text = b"\n" + listing.read_bytes() + b"\n"
        except OSError:
            continue
        if any(n in text for n in needles):
            return listing.name[:-len(".list")].split(":")[0]
    return ""


def _device_info(ctx: GatherContext, path: str) -> DeviceInfo:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return DeviceInfo(path)
    if not stat.S_ISBLK(mode):
        return DeviceInfo(path, exists=True, block=False)
    size = int(ctx.host.runner.run(("blockdev", "--getsize64", path)).stdout.strip())
    return DeviceInfo(path, exists=True, size=size, users=tuple(users_of(path)))


# ---- planning -----------------------------------------------------------------------------

def plan(ctx: PlanContext, facts: BackingFacts, state: State) -> ResourcePlan:
    actions: list[Action] = []
    noops: list[Noop] = []
    planned_free: dict[str, int] = {vg.name: vg.free for vg in facts.vgs}
    planned_dirs: set[str] = set()
    for target in targets_on(ctx.spec, ctx.me.name):
        b = target.backing
        # the built-in target sees a grown store on its next reload (it reopens it at the
        # new size): journaled with the grow, so a run killed in between still reloads
        owes = (TARGET_RELOAD,) if any(
            e.target == target.name and e.server == ServerKind.BUILTIN
            for e in ctx.spec.exports_on(ctx.me.name)) else ()
        if isinstance(b, LvmBacking):
            new, noop = _plan_lv(target, b, facts, planned_free, state, ctx.sandboxed, owes)
        elif isinstance(b, FileBacking):
            new, noop = _plan_file(target, b, facts, state, planned_dirs, owes)
        else:
            new, noop = _plan_device(target, b, facts, state)
        actions.extend(new)
        if noop:
            noops.append(noop)
    return ResourcePlan(tuple(actions), tuple(noops))


def _plan_lv(target: TargetSpec, b: LvmBacking, facts: BackingFacts,
             planned_free: dict[str, int], state: State,
             sandboxed: bool = False, owes: tuple[str, ...] = ()
             ) -> tuple[list[Action], Noop | None]:
    vg = facts.vg(b.vg)
    if vg is None:
        have = ", ".join(v.name for v in facts.vgs) or "none"
        why = facts.lvm_missing or (f"volume group {b.vg!r} does not exist on {target.host} "
                                    f"(volume groups: {have})")
        if not sandboxed:
            raise PlanError(f"target {target.name}: {why}; "
                            + ("install it" if facts.lvm_missing else "create it first"))
        return [_sandbox_lv(b, why, state)], None
    want = round_to_extent(b.size, vg.extent_size)
    lv = facts.lv(b.vg, b.lv)
    path = b.device_path
    if lv is not None and lv.size == want:
        state.devices[path] = BlockDeviceState(path=path, exists=True, size=lv.size)
        return [], Noop(KIND, path, f"logical volume {b.vg}/{b.lv} is {human_size(lv.size)} "
                                    f"({lv.size} bytes, {vg.extent_size}-byte extents)")
    if lv is not None and lv.size > want:
        raise PlanError(f"target {target.name}: logical volume {b.vg}/{b.lv} is "
                        f"{human_size(lv.size)} ({lv.size} bytes) but the spec says "
                        f"{human_size(want)}; aoeprov never shrinks a volume (set the size to at "
                        f"least {lv.size} bytes, or shrink it yourself)")
    grow = want - (lv.size if lv else 0)
    if grow > planned_free[b.vg]:
        raise PlanError(f"target {target.name}: volume group {b.vg} has "
                        f"{human_size(planned_free[b.vg])} free, {b.vg}/{b.lv} needs "
                        f"{human_size(grow)} more")
    planned_free[b.vg] -= grow
    state.devices[path] = BlockDeviceState(path=path, exists=True, size=want, predicted=lv is None)
    if lv is None:
        return [RunCommand(kind=KIND, target=path, op=Op.CREATE,
                           summary=f"create logical volume {b.vg}/{b.lv} of {human_size(want)}",
                           argv=("lvcreate", "--yes", "-L", f"{want}b", "-n", b.lv, b.vg))], None
    state.pending.update(owes)
    return [RunCommand(kind=KIND, target=path, op=Op.CHANGE,
                       summary=f"grow logical volume {b.vg}/{b.lv} from {human_size(lv.size)} "
                               f"to {human_size(want)}",
                       argv=("lvextend", "-L", f"{want}b", path), owes=owes)], None


def _sandbox_lv(b: LvmBacking, why: str, state: State) -> Action:
    """A --root rehearsal on a machine without the volume group: show the creation, undecided."""
    path = b.device_path
    state.devices[path] = BlockDeviceState(path=path, exists=True, size=b.size, predicted=True)
    return RunCommand(kind=KIND, target=path, op=Op.CREATE, provisional=True,
                      summary=f"create logical volume {b.vg}/{b.lv} of {human_size(b.size)} "
                              f"(--root rehearsal: {why}; decided where {b.vg} exists)",
                      argv=("lvcreate", "--yes", "-L", f"{b.size}b", "-n", b.lv, b.vg))


def _file_argv(b: FileBacking, local: str) -> tuple[str, ...]:
    if b.allocation == Allocation.PREALLOCATED:
        return ("fallocate", "-l", str(b.size), local)
    return ("truncate", "-s", str(b.size), local)


def _plan_file(target: TargetSpec, b: FileBacking, facts: BackingFacts, state: State,
               planned_dirs: set[str], owes: tuple[str, ...] = ()
               ) -> tuple[list[Action], Noop | None]:
    info = facts.file(b.path) or FileInfo(b.path, b.path)
    how = "preallocated" if b.allocation == Allocation.PREALLOCATED else "sparse"
    state.devices[b.path] = BlockDeviceState(path=b.path, exists=True, size=max(b.size, info.size),
                                             predicted=not info.exists,
                                             local_path=info.local_path)
    if not info.exists:
        actions: list[Action] = []
        parent = os.path.dirname(b.path)
        if not info.parent_exists and parent not in planned_dirs:
            planned_dirs.add(parent)
            actions.append(MakeDirectory(kind=KIND, target=parent, op=Op.CREATE,
                                         summary=f"create directory {parent}"))
        actions.append(RunCommand(kind=KIND, target=b.path, op=Op.CREATE,
                                  summary=f"create {how} image file of {human_size(b.size)}",
                                  argv=_file_argv(b, info.local_path)))
        return actions, None
    if not info.regular:
        raise PlanError(f"target {target.name}: {b.path} exists and is not a regular file")
    _check_image(target, b, info)
    if info.size > b.size:
        raise PlanError(f"target {target.name}: image file {b.path} is {info.size} bytes but the "
                        f"spec says {b.size}; aoeprov never shrinks backing storage (set the size "
                        f"to at least {info.size}, or shrink it yourself)")
    if info.size < b.size:
        state.pending.update(owes)
        return [RunCommand(kind=KIND, target=b.path, op=Op.CHANGE,
                           summary=f"grow image file from {human_size(info.size)} to "
                                   f"{human_size(b.size)} ({how})",
                           argv=_file_argv(b, info.local_path), owes=owes)], None
    if b.allocation == Allocation.PREALLOCATED and info.allocated < info.size:
        return [RunCommand(kind=KIND, target=b.path, op=Op.CHANGE,
                           summary=f"allocate the holes of the image file "
                                   f"({human_size(info.allocated)} of {human_size(info.size)} "
                                   f"allocated)",
                           argv=_file_argv(b, info.local_path))], None
    return [], Noop(KIND, b.path, f"{how} image file of {human_size(b.size)} "
                                  f"({human_size(info.allocated)} allocated)")


def _check_image(target: TargetSpec, b: FileBacking, info: FileInfo) -> None:
    """Refuse an existing file that is not plainly a disk image, unless the spec adopts it."""
    where = f"target {target.name}: {b.path}"
    if info.real_path:
        reason = system_place(normalize_path(info.real_path))
        if reason is not None:
            raise PlanError(f"{where} is a symbolic link to {info.real_path}, which {reason}; "
                            "an image file must live outside the system directories")
    if info.users:
        raise PlanError(f"{where} is in use on {target.host}: {'; '.join(info.users)}. "
                        "Exporting it would let initiators write under a live filesystem; "
                        "unmount it and detach the loop device first (umount, losetup -d)")
    if b.adopt:
        return
    doubts = []
    if info.size < SECTOR:
        doubts.append(f"it is {info.size} bytes, less than one {SECTOR}-byte sector")
    if info.text:
        doubts.append(f"it holds text (no NUL byte in its first {TEXT_PROBE // 1024} KiB)")
    if info.package:
        doubts.append(f"package {info.package} owns it")
    if doubts:
        raise PlanError(f"{where} exists and does not look like a disk image: "
                        f"{'; '.join(doubts)}. Exporting it lets initiators overwrite it; if it "
                        "really is the image, say adopt: true for it in the spec")


def _plan_device(target: TargetSpec, b: DeviceBacking, facts: BackingFacts,
                 state: State) -> tuple[list[Action], Noop | None]:
    info = facts.device(b.path) or DeviceInfo(b.path)
    if not info.exists:
        raise PlanError(f"target {target.name}: block device {b.path} does not exist")
    if not info.block:
        raise PlanError(f"target {target.name}: {b.path} is not a block device")
    if info.users:
        raise PlanError(f"target {target.name}: {b.path} is in use on {target.host}: "
                        f"{'; '.join(info.users)}. Exporting it would let initiators write under "
                        "a live filesystem or volume; stop using it here first (umount, swapoff, "
                        "vgchange -an, mdadm --stop)")
    if b.size is not None and (info.size or 0) < b.size:
        raise PlanError(f"target {target.name}: {b.path} is {info.size} bytes, smaller than the "
                        f"{b.size} bytes the spec expects")
    state.devices[b.path] = BlockDeviceState(path=b.path, exists=True, size=info.size)
    return [], Noop(KIND, b.path, f"block device of {human_size(info.size or 0)}")
