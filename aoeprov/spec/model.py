"""The typed model of a spec: frozen dataclasses built by the loader.

The YAML has flat sections that reference each other by name (like Ignition):
``hosts``, ``targets`` (backing storage), ``exports`` (shelf.slot served from a
target), ``disks`` (an export as an initiator sees it), ``partitions``,
``filesystems`` and ``mounts``. Sizes are bytes here; ``None`` for a partition
size means "the rest of the disk".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from aoeprov.spec.hostpaths import normalize_path

# Buffer count an export advertises unless the spec says otherwise: what the Linux
# initiator keeps in flight at most (aoe_maxout). vblade's 16 costs 1.9-3.5x in
# throughput with a window-limited initiator (make bench, -b 16 against -b 64).
DEFAULT_BUFFER_COUNT = 64

_T = TypeVar("_T")


@dataclass(frozen=True)
class Location:
    """Where a node sits in its spec file (1-based line and column)."""

    file: str
    line: int
    col: int


class Role(StrEnum):
    TARGET = "target"
    INITIATOR = "initiator"


class ModulePersistence(StrEnum):
    ETC_MODULES = "etc-modules"        # one name per line in /etc/modules, as the tutorial does
    MODULES_LOAD_D = "modules-load.d"  # /etc/modules-load.d/ + /etc/modprobe.d/aoeprov.conf


@dataclass(frozen=True)
class KernelModule:
    name: str
    options: tuple[tuple[str, str], ...] = ()  # in spec order, e.g. (("aoe_iflist", "eth0"),)


@dataclass(frozen=True)
class HostSpec:
    name: str
    roles: frozenset[Role]
    interfaces: tuple[str, ...]
    modules: tuple[KernelModule, ...] = ()
    module_persistence: ModulePersistence = ModulePersistence.ETC_MODULES
    metrics_dir: str | None = None   # the built-in target's --metrics-dir

    @property
    def is_target(self) -> bool:
        return Role.TARGET in self.roles

    @property
    def is_initiator(self) -> bool:
        return Role.INITIATOR in self.roles


class Allocation(StrEnum):
    SPARSE = "sparse"
    PREALLOCATED = "preallocated"


@dataclass(frozen=True)
class LvmBacking:
    vg: str
    lv: str
    size: int

    @property
    def device_path(self) -> str:
        return f"/dev/{self.vg}/{self.lv}"


def _normalize(item: FileBacking | DeviceBacking | MountSpec) -> None:
    """Keep only the normal form of ``item.path`` (``/srv//a/./b.img`` -> ``/srv/a/b.img``):
    every comparison of host paths then compares like with like."""
    object.__setattr__(item, "path", normalize_path(item.path))


@dataclass(frozen=True)
class FileBacking:
    path: str
    size: int
    allocation: Allocation = Allocation.SPARSE
    # an existing file that does not look like an image (text, owned by a package, smaller
    # than a sector) is used anyway: the spec says it is the image
    adopt: bool = False

    def __post_init__(self) -> None:
        _normalize(self)

    @property
    def device_path(self) -> str:
        return self.path


@dataclass(frozen=True)
class DeviceBacking:
    path: str
    size: int | None = None  # expected size, checked when given

    def __post_init__(self) -> None:
        _normalize(self)

    @property
    def device_path(self) -> str:
        return self.path


Backing = LvmBacking | FileBacking | DeviceBacking


@dataclass(frozen=True)
class TargetSpec:
    """Backing storage on a target host."""

    name: str
    host: str
    backing: Backing

    @property
    def size(self) -> int | None:
        return self.backing.size


class ServerKind(StrEnum):
    BUILTIN = "builtin"
    VBLADE = "vblade"


class WriteMode(StrEnum):
    SYNC = "sync"            # data on stable storage before the reply
    WRITEBACK = "writeback"  # reply once the data is in the page cache


@dataclass(frozen=True)
class ExportSpec:
    name: str
    shelf: int
    slot: int
    target: str
    interfaces: tuple[str, ...]
    server: ServerKind = ServerKind.BUILTIN
    read_only: bool = False
    allowed_macs: tuple[str, ...] = ()  # lower-case aa:bb:cc:dd:ee:ff
    write_mode: WriteMode = WriteMode.SYNC
    buffer_count: int = DEFAULT_BUFFER_COUNT
    direct: bool = False  # O_DIRECT on the backing store (vblade -d)

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"


class TableType(StrEnum):
    DOS = "dos"
    GPT = "gpt"


@dataclass(frozen=True)
class DiskSpec:
    """An AoE device as an initiator host uses it: /dev/etherd/eSHELF.SLOT."""

    name: str
    host: str
    shelf: int
    slot: int
    target_host: str | None = None
    target_mac: str | None = None
    table: TableType | None = None  # None: no partition table (filesystem on the whole disk)
    wipe: bool = False              # may be repartitioned, only with --allow-destroy too

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"

    @property
    def device_path(self) -> str:
        return f"/dev/etherd/{self.aoe_name}"


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    disk: str
    number: int
    type: str                 # loaded canonical: dos hex id "83", gpt upper-case type GUID
    size: int | None = None   # bytes; None = the rest of the disk
    label: str | None = None  # GPT partition name; gpt partitions are matched by it


class FsType(StrEnum):
    EXT2 = "ext2"
    EXT3 = "ext3"
    EXT4 = "ext4"
    XFS = "xfs"


@dataclass(frozen=True)
class FilesystemSpec:
    name: str
    device: str               # name of a partition, or of a disk used whole
    type: FsType
    label: str | None = None
    mkfs_options: tuple[str, ...] = ()
    wipe: bool = False        # may be formatted over another signature, only with --allow-destroy


@dataclass(frozen=True)
class MountSpec:
    path: str
    filesystem: str
    options: tuple[str, ...] = ("defaults",)
    auto: bool = True                   # mounted at boot ("auto") or not ("noauto")
    nofail: bool = False                # boot goes on if the device is missing
    device_timeout: int | None = None   # seconds, x-systemd.device-timeout=

    def __post_init__(self) -> None:
        _normalize(self)


@dataclass(frozen=True)
class Spec:
    version: int
    hosts: tuple[HostSpec, ...]
    targets: tuple[TargetSpec, ...] = ()
    exports: tuple[ExportSpec, ...] = ()
    disks: tuple[DiskSpec, ...] = ()
    partitions: tuple[PartitionSpec, ...] = ()
    filesystems: tuple[FilesystemSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    source: str = field(default="<memory>", compare=False)
    # YAML path (("exports", 0, "shelf")) -> position, for errors raised after loading
    locations: dict[tuple[str | int, ...], Location] = field(
        default_factory=dict, compare=False, repr=False, hash=False)

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def target(self, name: str) -> TargetSpec:
        return _by_name(self.targets, name)

    def disk(self, name: str) -> DiskSpec:
        return _by_name(self.disks, name)

    def partition(self, name: str) -> PartitionSpec:
        return _by_name(self.partitions, name)

    def filesystem(self, name: str) -> FilesystemSpec:
        return _by_name(self.filesystems, name)

    def exports_on(self, host: str) -> tuple[ExportSpec, ...]:
        """Exports served by ``host`` (through the target that backs them)."""
        names = {t.name for t in self.targets if t.host == host}
        return tuple(e for e in self.exports if e.target in names)

    def disks_on(self, host: str) -> tuple[DiskSpec, ...]:
        return tuple(d for d in self.disks if d.host == host)

    def where(self, *path: str | int) -> Location | None:
        return self.locations.get(tuple(path))


def _by_name(items: tuple[_T, ...], name: str) -> _T:
    for item in items:
        if getattr(item, "name", None) == name:
            return item
    raise KeyError(name)
