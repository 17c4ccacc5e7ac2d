"""Semantic checks: what the schema cannot say about a spec.

They run on the raw YAML data, next to the schema check, so one run reports
every problem. Values of the wrong type are skipped here (the schema already
reports them).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aoeprov.errors import SpecIssue
from aoeprov.spec.hostpaths import forbidden_mount_point, is_under, normalize_path, system_place
from aoeprov.spec.layout import GPT_TAIL_SECTORS, SECTOR, DoesNotFit, Geometry
from aoeprov.spec.parttypes import normalize_type
from aoeprov.spec.paths import Path
from aoeprov.spec.sizes import MAX_AOE_SIZE, format_size, parse_size
from aoeprov.spec.yamldoc import Document

SECTIONS = ("hosts", "targets", "exports", "disks", "partitions", "filesystems")
DOS_MAX_NUMBER = 4
LABEL_MAX = {"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12}


# What the checks below enforce, in words; docs/spec-reference.md lists these.
RULES = (
    "Names are unique within each section, and no partition has the name of a disk.",
    "Every reference resolves: export → target, target → host, disk → host, disk target_host → "
    "host, partition → disk, filesystem → partition or disk, mount → filesystem.",
    "Every host is used by a target, a disk or a disk's target_host.",
    "Targets live on hosts with the role target; disks on hosts with the role initiator; a "
    "disk's target_host has the role target and exports that shelf.slot in this spec.",
    "Two targets on one host never share the same logical volume, file or device.",
    "An export serves only on interfaces its host lists; an aoe_iflist names only listed "
    "interfaces.",
    "Each shelf.slot is exported once, used at most once per host, and by several hosts only "
    "when the export is read_only.",
    "Sizes parse (see Sizes above) and are at most 128P (48-bit ATA sector numbers).",
    "Image files live outside the system directories (/bin, /boot, /dev, /etc, /lib*, /proc, "
    "/run, /sbin, /sys, /usr) and aoeprov's state directories; paths are compared normalised "
    "(/srv//a/../b.img is /srv/b.img); no path holds a NUL byte.",
    "Partitions need a disk with a table; numbers are unique per disk, at most 4 on dos (no "
    "extended partitions); gpt partitions have unique labels, dos ones none; the type is a dos "
    "hex id or a gpt GUID/alias; at most one 'rest' partition, and it is the last.",
    "Partitions fit the export's target when its size is known: 1 MiB at the start, sizes "
    f"rounded up to MiB, {GPT_TAIL_SECTORS} sectors at the end on gpt, at least 1 MiB for "
    "'rest'.",
    "One filesystem per partition or disk; a whole-disk filesystem only on a disk without "
    "table; labels of at most 16 bytes (ext) or 12 (xfs), without control characters; gpt "
    "partition labels without control characters or double quotes.",
    "Mount paths are absolute and unique per host once normalised (/data/, //data and /data "
    "are one place); never /, /var, a system directory or anything inside one, aoeprov's state "
    "directories or a directory holding them; never over the image file of the export the "
    "mount itself uses. A filesystem is mounted once.",
    "Mount options hold no control characters; noauto is written as auto: false (an option "
    "auto contradicts auto: false).",
    "Nothing on a read_only export asks to be written: its disk and filesystems have no "
    "`wipe: true` and its mounts no `rw` option (they are mounted ro; its partition table and "
    "filesystems must already exist).",
)


def _quoted(value: int | str) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _unprintable(text: str, *, extra: str = "") -> str | None:
    """The first character of ``text`` that is not printable (or is in ``extra``)."""
    return next((c for c in text if not c.isprintable() or c in extra), None)


@dataclass(frozen=True)
class Entry:
    """One item of a section: its path and mapping."""

    path: Path
    data: dict[str, Any]

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    def number(self, key: str) -> int | None:
        value = self.data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    def at(self, key: str) -> Path:
        return (*self.path, key)


def semantic_issues(doc: Document) -> list[SpecIssue]:
    if not isinstance(doc.data, dict):
        return []
    return list(_Checker(doc).run())


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.sections = {name: list(self._entries(name)) for name in (*SECTIONS, "mounts")}
        self.by_name = {name: self._first_by_name(name) for name in SECTIONS}
        self.export_at: dict[tuple[int, int], Entry] = {}
        for export in self.sections["exports"]:
            address = self._address(export)
            if address is not None:
                self.export_at.setdefault(address, export)

    def _entries(self, section: str) -> Iterator[Entry]:
        items = self.doc.data.get(section)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    yield Entry((section, i), item)

    def _first_by_name(self, section: str) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for entry in self.sections[section]:
            name = entry.text("name")
            if name is not None:
                found.setdefault(name, entry)
        return found

    def issue(self, path: Path, message: str, *, at_key: bool = False) -> SpecIssue:
        return self.doc.issue(path, message, at_key=at_key)

    def line(self, path: Path) -> int:
        return self.doc.where(path).line

    def run(self) -> Iterator[SpecIssue]:
        yield from self.duplicate_names()
        yield from self.references()
        yield from self.roles_and_use()
        yield from self.shared_backing()
        yield from self.interfaces()
        yield from self.addresses()
        yield from self.sizes()
        yield from self.image_files()
        yield from self.partitions()
        yield from self.partition_fit()
        yield from self.filesystems()
        yield from self.mounts()
        yield from self.read_only_exports()

    # --- names and references -------------------------------------------------

    def duplicate_names(self) -> Iterator[SpecIssue]:
        for section in SECTIONS:
            for entry in self.sections[section]:
                name = entry.text("name")
                first = self.by_name[section].get(name) if name is not None else None
                if first is not None and first is not entry:
                    yield self.issue(entry.at("name"), f"duplicate name {name!r} in {section} "
                                                       f"(first at line {self.line(first.path)})")
        for entry in self.sections["partitions"]:
            name = entry.text("name")
            disk = self.by_name["disks"].get(name) if name is not None else None
            if disk is not None:
                yield self.issue(entry.at("name"), f"{name!r} names both a disk (line "
                                                   f"{self.line(disk.path)}) and a partition; "
                                                   "filesystems could not tell which is meant")

    def _ref(self, entry: Entry, key: str, section: str, what: str) -> Iterator[SpecIssue]:
        name = entry.text(key)
        if name is None or name in self.by_name[section]:
            return
        known = sorted(self.by_name[section])
        hint = difflib.get_close_matches(name, known, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else (
            f" (known: {', '.join(known)})" if known else f" (the spec has no {section})")
        yield self.issue(entry.at(key), f"unknown {what} {name!r}{extra}")

    def references(self) -> Iterator[SpecIssue]:
        for entry in self.sections["targets"]:
            yield from self._ref(entry, "host", "hosts", "host")
        for entry in self.sections["exports"]:
            yield from self._ref(entry, "target", "targets", "target")
        for entry in self.sections["disks"]:
            yield from self._ref(entry, "host", "hosts", "host")
            yield from self._ref(entry, "target_host", "hosts", "host")
        for entry in self.sections["partitions"]:
            yield from self._ref(entry, "disk", "disks", "disk")
        for entry in self.sections["filesystems"]:
            device = entry.text("device")
            if device is not None and device not in self.by_name["partitions"] \
                    and device not in self.by_name["disks"]:
                yield self.issue(entry.at("device"), f"unknown device {device!r}: not the name "
                                                     "of a partition or of a disk")
        for entry in self.sections["mounts"]:
            yield from self._ref(entry, "filesystem", "filesystems", "filesystem")

    def _host(self, entry: Entry, key: str) -> Entry | None:
        name = entry.text(key)
        return self.by_name["hosts"].get(name) if name is not None else None

    def roles_and_use(self) -> Iterator[SpecIssue]:
        used: set[str] = set()
        for entry in self.sections["targets"]:
            used.add(entry.text("host") or "")
            host = self._host(entry, "host")
            if host is not None and "target" not in host.texts("roles"):
                yield self.issue(entry.at("host"), f"host {host.text('name')!r} holds a target "
                                                   "but does not have the role 'target'")
        for entry in self.sections["disks"]:
            used.update((entry.text("host") or "", entry.text("target_host") or ""))
            host = self._host(entry, "host")
            if host is not None and "initiator" not in host.texts("roles"):
                yield self.issue(entry.at("host"), f"host {host.text('name')!r} uses a disk but "
                                                   "does not have the role 'initiator'")
            server = self._host(entry, "target_host")
            if server is not None and "target" not in server.texts("roles"):
                yield self.issue(entry.at("target_host"), f"host {server.text('name')!r} is "
                                                          "not a target host")
        for entry in self.sections["hosts"]:
            name = entry.text("name")
            if name is not None and name not in used and self.by_name["hosts"][name] is entry:
                yield self.issue(entry.at("name"), f"host {name!r} appears nowhere: no target, "
                                                   "disk or target_host refers to it")

    def shared_backing(self) -> Iterator[SpecIssue]:
        """Two targets on the same storage would serve one disk under two addresses."""
        seen: dict[tuple[str, str], Entry] = {}
        for entry in self.sections["targets"]:
            host = entry.text("host")
            for kind, keys in (("lvm", ("vg", "lv")), ("file", ("path",)), ("device", ("path",))):
                backing = entry.data.get(kind)
                if host is None or not isinstance(backing, dict):
                    continue
                parts = [p for p in (backing.get(k) for k in keys) if isinstance(p, str)]
                if len(parts) != len(keys):
                    continue
                storage = "/dev/" + "/".join(parts) if kind == "lvm" else parts[0]
                first = seen.setdefault((host, normalize_path(storage)), entry)
                if first is not entry:
                    yield self.issue(entry.at(kind), f"{storage} on host {host!r} already backs "
                                                     f"target {first.text('name')!r} (line "
                                                     f"{self.line(first.path)})", at_key=True)

    # --- network ----------------------------------------------------------------

    def _export_host(self, export: Entry) -> Entry | None:
        target = self.by_name["targets"].get(export.text("target") or "")
        return self._host(target, "host") if target is not None else None

    def interfaces(self) -> Iterator[SpecIssue]:
        for entry in self.sections["exports"]:
            host = self._export_host(entry)
            if host is None:
                continue
            listed = host.texts("interfaces")
            ifaces = entry.data.get("interfaces")
            for i, iface in enumerate(ifaces if isinstance(ifaces, list) else []):
                if isinstance(iface, str) and iface not in listed:
                    yield self.issue((*entry.at("interfaces"), i),
                                     f"interface {iface!r} is not listed in the interfaces of "
                                     f"host {host.text('name')!r} ({', '.join(listed)})")
        for host in self.sections["hosts"]:
            listed = host.texts("interfaces")
            modules = host.data.get("modules")
            load = modules.get("load") if isinstance(modules, dict) else None
            for i, module in enumerate(load if isinstance(load, list) else []):
                options = module.get("options") if isinstance(module, dict) else None
                iflist = options.get("aoe_iflist") if isinstance(options, dict) else None
                if module.get("name") != "aoe" or not isinstance(iflist, str):
                    continue
                for iface in iflist.replace(",", " ").split():
                    if iface not in listed:
                        path = (*host.at("modules"), "load", i, "options", "aoe_iflist")
                        yield self.issue(path, f"aoe_iflist names {iface!r}, which is not in "
                                               f"this host's interfaces ({', '.join(listed)})")

    def _address(self, entry: Entry) -> tuple[int, int] | None:
        shelf, slot = entry.number("shelf"), entry.number("slot")
        return None if shelf is None or slot is None else (shelf, slot)

    def addresses(self) -> Iterator[SpecIssue]:
        exports: dict[tuple[int, int], Entry] = {}
        for entry in self.sections["exports"]:
            address = self._address(entry)
            if address is None:
                continue
            first = exports.setdefault(address, entry)
            if first is not entry:
                yield self.issue(entry.at("shelf"), f"shelf.slot e{address[0]}.{address[1]} is "
                                                    f"already exported by {first.text('name')!r} "
                                                    f"(line {self.line(first.path)})")
        seen: dict[tuple[str, int, int], Entry] = {}
        hosts_of: dict[tuple[int, int], set[str]] = {}
        for entry in self.sections["disks"]:
            address, host = self._address(entry), entry.text("host")
            if address is None or host is None:
                continue
            aoe = f"e{address[0]}.{address[1]}"
            first = seen.setdefault((host, *address), entry)
            if first is not entry:
                yield self.issue(entry.at("shelf"), f"host {host!r} already uses {aoe} as disk "
                                                    f"{first.text('name')!r} (line "
                                                    f"{self.line(first.path)})")
                continue
            hosts_of.setdefault(address, set()).add(host)
            export = exports.get(address)
            read_only = export is not None and export.data.get("read_only") is True
            if len(hosts_of[address]) > 1 and not read_only:
                others = ", ".join(sorted(hosts_of[address] - {host}))
                yield self.issue(entry.at("host"), f"{aoe} is also used by {others}; a writable "
                                                   "AoE disk on several hosts corrupts ext and xfs "
                                                   "(export it read_only or use one host)")
            target_host = entry.text("target_host")
            if target_host is None or target_host not in self.by_name["hosts"]:
                continue
            server = self._export_host(export) if export is not None else None
            if export is None:
                yield self.issue(entry.at("target_host"), f"no export in this spec serves {aoe} "
                                                          f"(expected on {target_host!r})")
            elif server is not None and server.text("name") != target_host:
                yield self.issue(entry.at("target_host"), f"{aoe} is exported by host "
                                                          f"{server.text('name')!r}, not "
                                                          f"{target_host!r}")

    # --- sizes and partitions -------------------------------------------------------

    def _size(self, value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | str):
            return None
        try:
            return parse_size(value)
        except ValueError:
            return None

    def sizes(self) -> Iterator[SpecIssue]:
        for entry in self.sections["targets"]:
            for kind in ("lvm", "file", "device"):
                backing = entry.data.get(kind)
                if isinstance(backing, dict) and isinstance(backing.get("size"), int | str):
                    yield from self._size_issue((*entry.at(kind), "size"), backing["size"])
        for entry in self.sections["partitions"]:
            value = entry.data.get("size")
            if value != "rest" and isinstance(value, int | str):
                yield from self._size_issue(entry.at("size"), value)

    def _size_issue(self, path: Path, value: int | str) -> Iterator[SpecIssue]:
        if isinstance(value, bool):
            return
        try:
            size = parse_size(value)
        except ValueError as exc:
            yield self.issue(path, str(exc))
            return
        if size > MAX_AOE_SIZE:
            yield self.issue(path, f"{_quoted(value)} is more than AoE can address: 48-bit ATA "
                                   f"sector numbers reach {format_size(MAX_AOE_SIZE)} (2^48 "
                                   "sectors of 512 bytes)")

    def _disk_table(self, partition: Entry) -> tuple[Entry, str | None] | None:
        disk = self.by_name["disks"].get(partition.text("disk") or "")
        if disk is None:
            return None
        table = disk.text("table")
        return disk, table if table in ("dos", "gpt") else None

    def _partitions_of(self) -> dict[str, list[Entry]]:
        groups: dict[str, list[Entry]] = {}
        for entry in self.sections["partitions"]:
            disk = entry.text("disk")
            if disk is not None and disk in self.by_name["disks"]:
                groups.setdefault(disk, []).append(entry)
        return groups

    def partitions(self) -> Iterator[SpecIssue]:
        for entry in self.sections["partitions"]:
            found = self._disk_table(entry)
            if found is None:
                continue
            disk, table = found
            if "table" not in disk.data:
                yield self.issue(entry.at("disk"), f"disk {disk.text('name')!r} has no partition "
                                                   "table (set table: dos or gpt on it)")
                continue
            if table is None:
                continue
            yield from self._partition_fields(entry, table)
        for disk_name, entries in self._partitions_of().items():
            yield from self._numbering(disk_name, entries)

    def _partition_fields(self, entry: Entry, table: str) -> Iterator[SpecIssue]:
        number = entry.number("number")
        if table == "dos" and number is not None and number > DOS_MAX_NUMBER:
            yield self.issue(entry.at("number"), f"dos partition number {number} is above "
                                                 f"{DOS_MAX_NUMBER}: aoeprov creates primary "
                                                 "partitions only, no extended/logical ones "
                                                 "(use table: gpt for more)")
        ptype = entry.data.get("type")
        if isinstance(ptype, int) and not isinstance(ptype, bool):
            ptype = self.doc.raw.get(entry.at("type"), str(ptype))
        if isinstance(ptype, str):
            try:
                normalize_type(ptype, table)
            except ValueError as exc:
                yield self.issue(entry.at("type"), str(exc))
        label = entry.data.get("label")
        if table == "gpt" and "label" not in entry.data:
            yield self.issue(entry.at("label"), "gpt partitions need a label (aoeprov finds "
                                                "them by PARTLABEL)")
        elif table == "dos" and label is not None:
            yield self.issue(entry.at("label"), "dos partitions have no labels (use a "
                                                "filesystem label, or table: gpt)")
        elif isinstance(label, str) and (bad := _unprintable(label, extra='"')) is not None:
            yield self.issue(entry.at("label"), f"gpt label {label!r} holds {bad!r}: labels go "
                                                "into sfdisk's script as name=\"...\", where a "
                                                "control character or a double quote breaks it")

    def _numbering(self, disk: str, entries: list[Entry]) -> Iterator[SpecIssue]:
        numbers: dict[int, Entry] = {}
        labels: dict[str, Entry] = {}
        rest: list[Entry] = []
        for entry in entries:
            number, label = entry.number("number"), entry.text("label")
            if number is not None and (first := numbers.setdefault(number, entry)) is not entry:
                yield self.issue(entry.at("number"), f"disk {disk!r} already has partition "
                                                     f"{number} (line {self.line(first.path)})")
            if label is not None and (first := labels.setdefault(label, entry)) is not entry:
                yield self.issue(entry.at("label"), f"label {label!r} is already used on "
                                                    f"disk {disk!r} (line {self.line(first.path)})")
            if entry.data.get("size", "rest") == "rest":
                rest.append(entry)
        for extra in rest[1:]:
            yield self.issue(extra.at("size"), f"disk {disk!r} already has a 'rest' partition "
                                               f"(line {self.line(rest[0].path)}); only one "
                                               "partition can take the rest")
        last = rest[0].number("number") if len(rest) == 1 else None
        if last is not None and numbers and last != max(numbers):
            yield self.issue(rest[0].at("size"), f"the 'rest' partition must be the last one on "
                                                 f"disk {disk!r} (partition {max(numbers)} comes "
                                                 "after it)")

    def _known_size(self, disk: Entry) -> tuple[int, str] | None:
        """The size of the export behind ``disk``, when the spec defines its target."""
        address = self._address(disk)
        export = self.export_at.get(address) if address is not None else None
        target = self.by_name["targets"].get(export.text("target") or "") if export else None
        if target is None:
            return None
        for kind in ("lvm", "file", "device"):
            backing = target.data.get(kind)
            if isinstance(backing, dict) and "size" in backing:
                size = self._size(backing["size"])
                return (size, f"target {target.text('name')!r}") if size else None
        return None

    def image_files(self) -> Iterator[SpecIssue]:
        for entry in self.sections["targets"]:
            for kind in ("file", "device"):
                backing = entry.data.get(kind)
                path = backing.get("path") if isinstance(backing, dict) else None
                if isinstance(path, str) and "\0" in path:
                    yield self.issue((*entry.at(kind), "path"), f"{kind} path {path!r} holds a "
                                                                "NUL byte, which no path can")
            backing = entry.data.get("file")
            path = backing.get("path") if isinstance(backing, dict) else None
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                continue
            normal = normalize_path(path)
            reason = system_place(normal)
            if reason is not None:
                shown = path if path == normal else f"{path} (that is {normal})"
                yield self.issue((*entry.at("file"), "path"),
                                 f"image file {shown} {reason}; initiators would write over "
                                 "it: keep image files in a directory of their own, such as "
                                 "/srv/aoe")

    def partition_fit(self) -> Iterator[SpecIssue]:
        for disk_name, entries in self._partitions_of().items():
            disk = self.by_name["disks"][disk_name]
            table = disk.text("table")
            known = self._known_size(disk)
            if known is None or table not in ("dos", "gpt"):
                continue
            disk_size, source = known
            geometry = Geometry(disk_size // SECTOR, table)
            numbered = sorted((e for e in entries if e.number("number") is not None),
                              key=lambda e: e.number("number") or 0)
            values = [e.data.get("size", "rest") for e in numbered]
            sized = [(e, v) for e, v in zip(numbered, values, strict=True)
                     if v == "rest" or self._size(v) is not None]
            try:
                geometry.place(geometry.align, [None if v == "rest" else self._size(v)
                                                for _, v in sized])
            except DoesNotFit as exc:
                entry, value = sized[exc.index]
                what = "at least 1M for the 'rest'" if value == "rest" else "its size"
                reserve = f"1M at the start and {GPT_TAIL_SECTORS} sectors at the end" \
                    if table == "gpt" else "1M at the start"
                yield self.issue(entry.at("size"), f"partition {entry.number('number')} does not "
                                                   f"fit on disk {disk_name!r}: the {table} layout "
                                                   f"({reserve}, MiB-aligned partitions, {what}) "
                                                   f"needs {format_size(exc.needs * SECTOR)} but "
                                                   f"{source} is {format_size(disk_size)}")
            except ValueError:
                continue   # a 'rest' that is not last: reported by _numbering

    # --- filesystems and mounts -----------------------------------------------------

    def filesystems(self) -> Iterator[SpecIssue]:
        on_device: dict[str, Entry] = {}
        has_partitions = self._partitions_of()
        for entry in self.sections["filesystems"]:
            device = entry.text("device")
            if device is None:
                continue
            first = on_device.setdefault(device, entry)
            if first is not entry:
                yield self.issue(entry.at("device"), f"{device!r} already holds filesystem "
                                                     f"{first.text('name')!r} (line "
                                                     f"{self.line(first.path)})")
            disk = self.by_name["disks"].get(device)
            if disk is not None and device not in self.by_name["partitions"]:
                if device in has_partitions:
                    yield self.issue(entry.at("device"), f"disk {device!r} has partitions; put "
                                                         "the filesystem on one of them")
                elif "table" in disk.data:
                    yield self.issue(entry.at("device"), f"disk {device!r} gets a partition "
                                                         "table; a whole-disk filesystem needs a "
                                                         "disk without table:")
            fstype, label = entry.text("type"), entry.text("label")
            limit = LABEL_MAX.get(fstype or "")
            if label is not None and limit is not None and len(label.encode()) > limit:
                yield self.issue(entry.at("label"), f"{fstype} labels are at most {limit} bytes; "
                                                    f"{label!r} has {len(label.encode())}")
            elif label is not None and (bad := _unprintable(label)) is not None:
                yield self.issue(entry.at("label"), f"filesystem label {label!r} holds {bad!r}, "
                                                    "which blkid reports back escaped: the label "
                                                    "would never match and be rewritten on every "
                                                    "run")

    def _disk_of_filesystem(self, name: str) -> Entry | None:
        fs = self.by_name["filesystems"].get(name)
        device = fs.text("device") if fs is not None else None
        partition = self.by_name["partitions"].get(device or "")
        if partition is not None:
            device = partition.text("disk")
        return self.by_name["disks"].get(device or "")

    def _host_of_filesystem(self, name: str) -> str | None:
        disk = self._disk_of_filesystem(name)
        return disk.text("host") if disk is not None else None

    def mounts(self) -> Iterator[SpecIssue]:
        paths: dict[tuple[str | None, str], Entry] = {}
        mounted: dict[str, Entry] = {}
        for entry in self.sections["mounts"]:
            path, fs = entry.text("path"), entry.text("filesystem")
            host = self._host_of_filesystem(fs) if fs is not None else None
            if path is not None:
                if "\0" in path:
                    yield self.issue(entry.at("path"), f"mount path {path!r} holds a NUL byte, "
                                                       "which no path can")
                elif not path.startswith("/"):
                    yield self.issue(entry.at("path"), f"mount path {path!r} is relative; it must "
                                                       "start with /")
                else:
                    normal = normalize_path(path)
                    yield from self._mount_point(entry, path, normal, fs, host)
                    key = (host, normal)
                    if (first := paths.setdefault(key, entry)) is not entry:
                        on = f" on host {host!r}" if host else ""
                        yield self.issue(entry.at("path"), f"{key[1]} is already a mountpoint{on} "
                                                           f"(line {self.line(first.path)})")
            if fs is not None and (first := mounted.setdefault(fs, entry)) is not entry:
                yield self.issue(entry.at("filesystem"), f"filesystem {fs!r} is already "
                                                         f"mounted (line {self.line(first.path)})")
            yield from self._mount_options(entry)

    def _mount_point(self, entry: Entry, path: str, normal: str, fs: str | None,
                     host: str | None) -> Iterator[SpecIssue]:
        shown = path if path == normal else f"{path} (that is {normal})"
        reason = forbidden_mount_point(normal)
        if reason is not None:
            yield self.issue(entry.at("path"), f"mount path {shown} {reason}; a mount there "
                                               "would hide it at every boot (use a directory of "
                                               "its own, such as /srv/NAME or /mnt/NAME)")
            return
        disk = self._disk_of_filesystem(fs) if fs is not None else None
        address = self._address(disk) if disk is not None else None
        export = self.export_at.get(address) if address is not None else None
        target = self.by_name["targets"].get(export.text("target") or "") if export else None
        backing = target.data.get("file") if target is not None else None
        image = backing.get("path") if isinstance(backing, dict) else None
        if target is None or target.text("host") != host or not isinstance(image, str) \
                or not is_under(normalize_path(image), normal) or address is None:
            return
        yield self.issue(entry.at("path"), f"host {host!r} would mount e{address[0]}.{address[1]} "
                                           f"at {normal}, over {normalize_path(image)}, the image "
                                           f"file that export serves (target "
                                           f"{target.text('name')!r}, line "
                                           f"{self.line(target.path)}): the disk would hide its "
                                           "own backing file")

    def _mount_options(self, entry: Entry) -> Iterator[SpecIssue]:
        options = entry.data.get("options")
        auto = entry.data.get("auto")
        for i, option in enumerate(options if isinstance(options, list) else []):
            if not isinstance(option, str):
                continue
            at = (*entry.at("options"), i)
            bad = next((c for c in option if not c.isprintable() and not c.isspace()), None)
            if bad is not None:   # whitespace is the schema's (the option pattern)
                yield self.issue(at, f"mount option {option!r} holds {bad!r}, which fstab cannot "
                                     "carry (findmnt would skip the whole line)")
            elif option == "noauto" and auto is not False:
                yield self.issue(at, "noauto is not read from options (auto, true unless the "
                                     "spec says otherwise, decides auto or noauto): write "
                                     "auto: false instead")
            elif option == "auto" and auto is False:
                yield self.issue(at, "option auto contradicts auto: false")

    # --- read-only exports ------------------------------------------------------------

    def _read_only_export(self, device: str | None) -> Entry | None:
        """The read_only export under a disk or partition name, if it is one."""
        partition = self.by_name["partitions"].get(device or "")
        if partition is not None:
            device = partition.text("disk")
        disk = self.by_name["disks"].get(device or "")
        address = self._address(disk) if disk is not None else None
        export = self.export_at.get(address) if address is not None else None
        return export if export is not None and export.data.get("read_only") is True else None

    def read_only_exports(self) -> Iterator[SpecIssue]:
        for section, what in (("disks", "disk"), ("filesystems", "filesystem")):
            for entry in self.sections[section]:
                ref = entry.text("name") if section == "disks" else entry.text("device")
                export = self._read_only_export(ref)
                if export is not None and entry.data.get("wipe") is True:
                    yield self.issue(entry.at("wipe"), f"{what} {entry.text('name')!r} is on "
                                                       f"export {export.text('name')!r}, which "
                                                       "is read_only: it can never be wiped "
                                                       "(remove wipe: true)")
        for entry in self.sections["mounts"]:
            fs = self.by_name["filesystems"].get(entry.text("filesystem") or "")
            export = self._read_only_export(fs.text("device")) if fs is not None else None
            options = entry.data.get("options")
            if export is None or not isinstance(options, list) or "rw" not in options:
                continue
            yield self.issue((*entry.at("options"), options.index("rw")),
                             f"option rw on export {export.text('name')!r}, which is read_only "
                             "(its filesystems are mounted ro)")
