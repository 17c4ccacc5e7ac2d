"""Turn validated YAML data into the typed model (``aoeprov.spec.model``).

Only called once the schema and semantic checks found nothing, so it may
assume every value has the right type and every reference resolves.
"""

from __future__ import annotations

from typing import Any

from aoeprov.spec.model import (
    DEFAULT_BUFFER_COUNT,
    Allocation,
    Backing,
    DeviceBacking,
    DiskSpec,
    ExportSpec,
    FileBacking,
    FilesystemSpec,
    FsType,
    HostSpec,
    KernelModule,
    LvmBacking,
    ModulePersistence,
    MountSpec,
    PartitionSpec,
    Role,
    ServerKind,
    Spec,
    TableType,
    TargetSpec,
    WriteMode,
)
from aoeprov.spec.parttypes import default_type, normalize_type
from aoeprov.spec.paths import Path
from aoeprov.spec.sizes import parse_size
from aoeprov.spec.yamldoc import Document


def build_spec(doc: Document) -> Spec:
    data: dict[str, Any] = doc.data
    builder = _Builder(doc)
    disks = tuple(builder.disk(d) for d in data.get("disks", []))
    tables = {d.name: d.table for d in disks}
    return Spec(
        version=int(data["version"]),  # the schema lets 1.0 through
        hosts=tuple(builder.host(i, h) for i, h in enumerate(data["hosts"])),
        targets=tuple(builder.target(t) for t in data.get("targets", [])),
        exports=tuple(builder.export(e) for e in data.get("exports", [])),
        disks=disks,
        partitions=tuple(builder.partition(i, p, tables) for i, p in
                         enumerate(data.get("partitions", []))),
        filesystems=tuple(builder.filesystem(f) for f in data.get("filesystems", [])),
        mounts=tuple(builder.mount(m) for m in data.get("mounts", [])),
        source=doc.file,
        locations=dict(doc.locations),
    )


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def text(self, path: Path, value: str | int) -> str:
        """Integers as written (``type: 83``, ``aoe_iflist: 1``), not as Python prints them."""
        if isinstance(value, str):
            return value
        return self.doc.raw.get(path, str(value))

    def host(self, index: int, data: dict[str, Any]) -> HostSpec:
        modules = data.get("modules", {})
        load = tuple(
            KernelModule(m["name"], tuple(
                (k, self.text(("hosts", index, "modules", "load", j, "options", k), v))
                for k, v in m.get("options", {}).items()))
            for j, m in enumerate(modules.get("load", [])))
        return HostSpec(
            name=data["name"],
            roles=frozenset(Role(r) for r in data["roles"]),
            interfaces=tuple(data["interfaces"]),
            modules=load,
            module_persistence=ModulePersistence(modules.get("persist", "etc-modules")),
            metrics_dir=data.get("metrics_dir"),
        )

    def target(self, data: dict[str, Any]) -> TargetSpec:
        backing: Backing
        if "lvm" in data:
            lvm = data["lvm"]
            backing = LvmBacking(lvm["vg"], lvm["lv"], parse_size(lvm["size"]))
        elif "file" in data:
            f = data["file"]
            backing = FileBacking(f["path"], parse_size(f["size"]),
                                  Allocation(f.get("allocation", "sparse")),
                                  adopt=f.get("adopt", False))
        else:
            d = data["device"]
            backing = DeviceBacking(d["path"], parse_size(d["size"]) if "size" in d else None)
        return TargetSpec(data["name"], data["host"], backing)

    def export(self, data: dict[str, Any]) -> ExportSpec:
        return ExportSpec(
            name=data["name"],
            shelf=data["shelf"],
            slot=data["slot"],
            target=data["target"],
            interfaces=tuple(data["interfaces"]),
            server=ServerKind(data.get("server", "builtin")),
            read_only=data.get("read_only", False),
            allowed_macs=tuple(m.lower() for m in data.get("allowed_macs", [])),
            write_mode=WriteMode(data.get("write_mode", "sync")),
            buffer_count=data.get("buffer_count", DEFAULT_BUFFER_COUNT),
            direct=data.get("direct", False),
        )

    def disk(self, data: dict[str, Any]) -> DiskSpec:
        mac = data.get("target_mac")
        return DiskSpec(
            name=data["name"],
            host=data["host"],
            shelf=data["shelf"],
            slot=data["slot"],
            target_host=data.get("target_host"),
            target_mac=mac.lower() if mac is not None else None,
            table=TableType(data["table"]) if "table" in data else None,
            wipe=data.get("wipe", False),
        )

    def partition(self, index: int, data: dict[str, Any],
                  tables: dict[str, TableType | None]) -> PartitionSpec:
        table = tables[data["disk"]] or TableType.DOS
        ptype = data.get("type")
        kind = (normalize_type(self.text(("partitions", index, "type"), ptype), table)
                if ptype is not None else default_type(table))
        size = data.get("size", "rest")
        return PartitionSpec(
            name=data["name"],
            disk=data["disk"],
            number=data["number"],
            type=kind,
            size=None if size == "rest" else parse_size(size),
            label=data.get("label"),
        )

    def filesystem(self, data: dict[str, Any]) -> FilesystemSpec:
        return FilesystemSpec(
            name=data["name"],
            device=data["device"],
            type=FsType(data["type"]),
            label=data.get("label"),
            mkfs_options=tuple(data.get("mkfs_options", [])),
            wipe=data.get("wipe", False),
        )

    def mount(self, data: dict[str, Any]) -> MountSpec:
        return MountSpec(
            path=data["path"],
            filesystem=data["filesystem"],
            options=tuple(data.get("options", ["defaults"])),
            auto=data.get("auto", True),
            nofail=data.get("nofail", False),
            device_timeout=data.get("device_timeout"),
        )
