"""Questions about a loaded spec's structure, answered in one place.

Which disk a filesystem lives on and under which device name, which export serves
a disk and whether read-only, which targets, filesystems and mounts belong to a
host, which interfaces the aoe driver uses, where ``--device`` maps a disk.
Resources, the boot unit and the lab ask these; none re-derives them, so a rule
(the ``p`` between a disk and its partition number, a read-only export making a
mount ``ro``) holds the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from aoeprov.errors import PlanError
from aoeprov.spec.model import (
    DiskSpec,
    ExportSpec,
    FilesystemSpec,
    HostSpec,
    MountSpec,
    Spec,
    TargetSpec,
)

# ---- device names ---------------------------------------------------------------------------


def partition_node(disk_path: str, number: int) -> str:
    """Kernel name of a partition: /dev/etherd/e0.1p1, /dev/loop0p1, /dev/sdb1."""
    sep = "p" if disk_path[-1:].isdigit() or "/etherd/" in disk_path else ""
    return f"{disk_path}{sep}{number}"


def disk_of(spec: Spec, device: str) -> tuple[DiskSpec, int | None]:
    """A filesystem's ``device`` (a partition or a whole disk) -> its disk and partition number."""
    for part in spec.partitions:
        if part.name == device:
            return spec.disk(part.disk), part.number
    for disk in spec.disks:
        if disk.name == device:
            return disk, None
    raise PlanError(f"device {device!r} is neither a partition nor a disk of the spec")


def device_path(spec: Spec, device: str) -> str:
    """The /dev/etherd name of a spec device: ``/dev/etherd/e0.1`` or ``/dev/etherd/e0.1p2``."""
    disk, number = disk_of(spec, device)
    return disk.device_path if number is None else partition_node(disk.device_path, number)


def mapped_path(device_map: Mapping[str, str], disk: DiskSpec) -> str | None:
    """The ``--device`` PATH for a disk, given by disk name or by eX.Y."""
    return device_map.get(disk.name) or device_map.get(disk.aoe_name)


# ---- exports seen from an initiator ---------------------------------------------------------


def export_of(spec: Spec, disk: DiskSpec) -> ExportSpec | None:
    """The spec's export serving ``disk`` (same shelf.slot, on its target_host when given)."""
    for export in spec.exports:
        if (export.shelf, export.slot) != (disk.shelf, disk.slot):
            continue
        if disk.target_host is None or export in spec.exports_on(disk.target_host):
            return export
    return None


def read_only_server(spec: Spec, disk: DiskSpec) -> str | None:
    """The host exporting ``disk`` read-only, or None when the initiator may write to it."""
    export = export_of(spec, disk)
    if export is None or not export.read_only:
        return None
    try:
        return spec.target(export.target).host
    except KeyError:
        return disk.target_host or "its target"


def mount_read_only(spec: Spec, mount: MountSpec) -> bool:
    """True when the mount's filesystem lives on a read-only export: it is mounted ``ro``."""
    disk, _ = disk_of(spec, spec.filesystem(mount.filesystem).device)
    return read_only_server(spec, disk) is not None


# ---- what belongs to a host -----------------------------------------------------------------


def targets_on(spec: Spec, host: str) -> tuple[TargetSpec, ...]:
    return tuple(t for t in spec.targets if t.host == host)


def filesystems_on(spec: Spec, host: str) -> list[FilesystemSpec]:
    """The filesystems on ``host``'s disks or on their partitions."""
    disks = {d.name for d in spec.disks_on(host)}
    parts = {p.name for p in spec.partitions if p.disk in disks}
    return [fs for fs in spec.filesystems if fs.device in disks | parts]


def mounts_on(spec: Spec, host: str) -> list[tuple[MountSpec, str, str]]:
    """(mount, /dev/etherd source, fstype) for the mounts whose disk belongs to ``host``."""
    out = []
    for mount in spec.mounts:
        fs = spec.filesystem(mount.filesystem)
        disk, _ = disk_of(spec, fs.device)
        if disk.host == host:
            out.append((mount, device_path(spec, fs.device), fs.type.value))
    return out


def parse_iflist(text: str) -> tuple[str, ...]:
    """``aoe_iflist`` is a blank- or comma-separated list of interface names."""
    return tuple(w for w in text.replace(",", " ").split() if w)


def aoe_iflist(me: HostSpec) -> tuple[str, ...]:
    """The interfaces the aoe driver uses: the spec's ``aoe_iflist`` option, else all listed."""
    for mod in me.modules:
        if mod.name == "aoe":
            value = dict(mod.options).get("aoe_iflist")
            if value is not None:
                return parse_iflist(value)
    return tuple(me.interfaces)
