"""Write a ``Spec`` back as YAML that loads into an equal ``Spec``.

Fields equal to their default are left out, so a dumped spec reads like one
written by hand.
"""

from __future__ import annotations

from typing import Any

import yaml

from aoeprov.spec.model import (
    DEFAULT_BUFFER_COUNT,
    Backing,
    DeviceBacking,
    DiskSpec,
    ExportSpec,
    FileBacking,
    FilesystemSpec,
    HostSpec,
    LvmBacking,
    MountSpec,
    PartitionSpec,
    Spec,
    TargetSpec,
)
from aoeprov.spec.sizes import format_size

_ROLE_ORDER = ("target", "initiator")


def spec_to_data(spec: Spec) -> dict[str, Any]:
    data: dict[str, Any] = {"version": spec.version, "hosts": [_host(h) for h in spec.hosts]}
    sections: list[tuple[str, list[dict[str, Any]]]] = [
        ("targets", [_target(t) for t in spec.targets]),
        ("exports", [_export(e) for e in spec.exports]),
        ("disks", [_disk(d) for d in spec.disks]),
        ("partitions", [_partition(p) for p in spec.partitions]),
        ("filesystems", [_filesystem(f) for f in spec.filesystems]),
        ("mounts", [_mount(m) for m in spec.mounts]),
    ]
    data.update((name, items) for name, items in sections if items)
    return data


def dump_spec(spec: Spec) -> str:
    return yaml.safe_dump(spec_to_data(spec), sort_keys=False, default_flow_style=False,
                          allow_unicode=True)


def _host(h: HostSpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": h.name,
        "roles": [r for r in _ROLE_ORDER if r in h.roles],
        "interfaces": list(h.interfaces),
    }
    if h.modules or h.module_persistence != "etc-modules":
        modules: dict[str, Any] = {"persist": str(h.module_persistence)}
        if h.modules:
            modules["load"] = [{"name": m.name, **({"options": dict(m.options)} if m.options
                                                   else {})} for m in h.modules]
        data["modules"] = modules
    if h.metrics_dir is not None:
        data["metrics_dir"] = h.metrics_dir
    return data


def _backing(b: Backing) -> tuple[str, dict[str, Any]]:
    if isinstance(b, LvmBacking):
        return "lvm", {"vg": b.vg, "lv": b.lv, "size": format_size(b.size)}
    if isinstance(b, FileBacking):
        data: dict[str, Any] = {"path": b.path, "size": format_size(b.size)}
        if b.allocation != "sparse":
            data["allocation"] = str(b.allocation)
        if b.adopt:
            data["adopt"] = True
        return "file", data
    assert isinstance(b, DeviceBacking)
    device: dict[str, Any] = {"path": b.path}
    if b.size is not None:
        device["size"] = format_size(b.size)
    return "device", device


def _target(t: TargetSpec) -> dict[str, Any]:
    kind, backing = _backing(t.backing)
    return {"name": t.name, "host": t.host, kind: backing}


def _export(e: ExportSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": e.name, "target": e.target, "shelf": e.shelf,
                            "slot": e.slot, "interfaces": list(e.interfaces)}
    if e.server != "builtin":
        data["server"] = str(e.server)
    if e.read_only:
        data["read_only"] = True
    if e.allowed_macs:
        data["allowed_macs"] = list(e.allowed_macs)
    if e.write_mode != "sync":
        data["write_mode"] = str(e.write_mode)
    if e.buffer_count != DEFAULT_BUFFER_COUNT:
        data["buffer_count"] = e.buffer_count
    if e.direct:
        data["direct"] = True
    return data


def _disk(d: DiskSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": d.name, "host": d.host, "shelf": d.shelf, "slot": d.slot}
    optional = {"target_host": d.target_host, "target_mac": d.target_mac,
                "table": str(d.table) if d.table else None}
    data.update((k, v) for k, v in optional.items() if v is not None)
    if d.wipe:
        data["wipe"] = True
    return data


def _partition(p: PartitionSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": p.name, "disk": p.disk, "number": p.number, "type": p.type,
                            "size": "rest" if p.size is None else format_size(p.size)}
    if p.label is not None:
        data["label"] = p.label
    return data


def _filesystem(f: FilesystemSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": f.name, "device": f.device, "type": str(f.type)}
    if f.label is not None:
        data["label"] = f.label
    if f.mkfs_options:
        data["mkfs_options"] = list(f.mkfs_options)
    if f.wipe:
        data["wipe"] = True
    return data


def _mount(m: MountSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"path": m.path, "filesystem": m.filesystem}
    if m.options != ("defaults",):
        data["options"] = list(m.options)
    if not m.auto:
        data["auto"] = False
    if m.nofail:
        data["nofail"] = True
    if m.device_timeout is not None:
        data["device_timeout"] = m.device_timeout
    return data
