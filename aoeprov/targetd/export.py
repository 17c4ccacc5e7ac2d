"""One served export: the open backing store and its AoE-visible state.

The state AoE peers can change (config string, Mac Mask List, reserve list)
lives here; a SIGHUP that leaves an export's configuration unchanged keeps the
same ``Export`` object, so that state and the counters survive a reload.
``targetd.state`` keeps the peer-set state on disk across restarts.

Opening checks what vblade leaves to chance: a backing store that is not
writable is refused unless the export is read-only ("use -r"), also for root,
who could write a 0444 file anyway; an empty one is refused; bytes past the
last whole sector are reported, since no initiator can reach them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import mmap
import os
import socket
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from aoeprov import __version__
from aoeprov.aoe.ata import build_identify
from aoeprov.aoe.wire import SECTOR_SIZE, mac_to_bytes
from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.diskio import HeldReplies, IoBuffer, Ordering
from aoeprov.targetd.mapping import map_readonly

LOG = logging.getLogger(__name__)
PAGE_SIZE = mmap.PAGESIZE

MODEL = "aoeprov built-in AoE target"
MAX_MASKS = 32  # vblade's limit; initiators never need more
# filesystems whose files live in memory: reading them never waits on a disk
TMPFS_MAGIC, RAMFS_MAGIC = 0x01021994, 0x858458F6
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(slots=True)
class ExportCounters:
    frames_in: int = 0       # requests addressed to this export and accepted
    frames_out: int = 0      # responses sent (including error responses)
    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    flushes: int = 0
    ata_errors: int = 0      # ATA status ERR (range, read-only, unknown command, I/O error)
    aoe_errors: int = 0      # responses with the AoE error flag
    masked: int = 0          # frames dropped because the sender is not in the mask list
    overrun: int = 0         # requests dropped: the sender had buffer_count in flight
    disk_queued: int = 0     # requests served by disk jobs (target.diskio), not inline
    disk_direct: int = 0     # ... of them reads that missed the cache, read with O_DIRECT
    # Requests of this export taken from a link in one batch, all answered before the
    # next batch is read (one thread, no other queue; on a disk, requests may also wait
    # for the disk, at most ``buffer_count`` per initiator): ``in_flight`` is the last
    # such batch, ``in_flight_max`` the largest. ``queue_full`` counts the batches
    # holding ``buffer_count`` or more of them: the initiator had its whole
    # advertised window outstanding, so this target's queue limited it (what
    # ggaoectl reports as queue full).
    in_flight: int = 0
    in_flight_max: int = 0
    queue_full: int = 0

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Export:
    """An open export; ``sectors`` is what initiators see (after offset/length)."""

    def __init__(self, config: ExportConfig, *, hostname: str | None = None) -> None:
        config.validate()
        self.config = config
        self.shelf = config.shelf
        self.slot = config.slot
        self.read_only = config.read_only
        self.sync = config.write_mode == "sync"
        self.buffer_count = config.buffer_count
        self.direct = config.direct
        if not config.read_only:
            _check_writable(config)
        self.fd = _open(config)
        try:
            self.sectors = self._size(config)
            if self.direct:
                _check_direct(self.fd, config)
            self.on_disk = self.direct or _on_disk(self.fd)
            # random reads that miss the page cache bypass it (see ``open_miss_reader``)
            self.miss_fd, self.miss_align = (
                open_miss_reader(config) if self.on_disk and not self.direct else (-1, 0))
        except BaseException:
            os.close(self.fd)
            raise
        # where the last read (of any path) ended: a read starting there continues a
        # sequential stream, which the page cache's readahead serves best; reads still
        # taken to miss the cache without asking (``batch.COLD_READS``)
        self.read_end = -1
        self.cold_reads = 0
        self.base = config.offset * SECTOR_SIZE
        # reads are sent straight from here when the backing store can be mapped (not
        # with O_DIRECT: the mapping would keep the second copy -d is there to avoid)
        self.mapping = None if self.direct else map_readonly(
            self.fd, self.base + self.sectors * SECTOR_SIZE, f"export {config.label}")
        self.address = self.mapping.address if self.mapping is not None else 0
        # disk jobs (target.diskio) in flight, in arrival order; sync writes written but
        # not yet covered by an fdatasync, whether one is running, and the last write
        # job it waits for; requests in flight per initiator MAC (at most buffer_count each)
        self.order = Ordering()
        self.unsynced: list[IoBuffer] = []
        self.unsynced_held: list[HeldReplies] = []
        self.syncing = False
        self.sync_after = -1   # the next sync waits for writes up to this job (group commit)
        self.sync_failed_upto = -1  # writes up to this job fail: a sync failed while in flight
        self.outstanding: dict[bytes, int] = {}
        host = hostname if hostname is not None else socket.gethostname()
        self.serial = export_serial(config, host)
        self.identify = build_identify(self.sectors, self.serial, MODEL, __version__)
        self.masks: list[bytes] = [mac_to_bytes(m) for m in config.allowed_macs][:MAX_MASKS]
        self.reserve: list[bytes] = []
        self.config_string = b""
        self.counters = ExportCounters()
        self.closed = False

    def resized(self) -> bool:
        """The backing store's size now gives another sector count than when opened."""
        try:
            return self._size(self.config) != self.sectors
        except (OSError, TargetError):
            return False   # reopening would fail the same way: keep serving what is open

    def _size(self, config: ExportConfig) -> int:
        size = os.lseek(self.fd, 0, os.SEEK_END)
        where = f"export {config.label}: {config.path}"
        if size == 0:
            raise TargetError(f"{where} is empty (0 bytes): there is nothing to export")
        if size < SECTOR_SIZE:
            raise TargetError(f"{where} is {size} bytes, less than one {SECTOR_SIZE}-byte "
                              f"sector: there is nothing to export")
        total = size // SECTOR_SIZE
        if size % SECTOR_SIZE and config.length is None:
            LOG.warning("%s is %d bytes, not a whole number of %d-byte sectors: its last %d "
                        "bytes are not exported", where, size, SECTOR_SIZE, size % SECTOR_SIZE)
        if config.offset >= total:
            raise TargetError(f"export {config.label}: offset {config.offset} is beyond the "
                              f"{total} sectors of {config.path}")
        available = total - config.offset
        if config.length is None:
            return available
        if config.length > available:
            raise TargetError(f"export {config.label}: length {config.length} exceeds the "
                              f"{available} sectors after offset {config.offset} in {config.path}")
        return config.length

    @property
    def label(self) -> str:
        return self.config.label

    def read_into(self, data: memoryview, pos: int) -> None:
        """``preadv`` ``data`` from byte ``pos`` (zeros past the end of a file that shrank);
        O_DIRECT exports read through a page-aligned buffer."""
        if not self.direct:
            _read_zero_tail(self.fd, data, pos)
            return
        with _aligned(len(data)) as bounce:
            _read_zero_tail(self.fd, bounce[:len(data)], pos)
            data[:] = bounce[:len(data)]

    def write_from(self, data: memoryview, pos: int) -> None:
        """``pwrite`` ``data`` at byte ``pos`` (through an aligned buffer for O_DIRECT)."""
        if not self.direct:
            os.pwrite(self.fd, data, pos)
            return
        with _aligned(len(data)) as bounce:
            bounce[:len(data)] = data
            os.pwrite(self.fd, bounce[:len(data)], pos)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.read_only:
                # nothing more we can do at close; writes were answered already
                with contextlib.suppress(OSError):
                    os.fsync(self.fd)
            if self.mapping is not None:
                self.mapping.close()
                self.address = 0
            if self.miss_fd >= 0:
                os.close(self.miss_fd)
            os.close(self.fd)

    def to_json(self) -> dict[str, object]:
        return {"name": self.label, "aoe": self.config.aoe_name, "path": self.config.path,
                "sectors": self.sectors, "read_only": self.read_only,
                "write_mode": self.config.write_mode, "buffer_count": self.buffer_count,
                **self.counters.to_json()}


# open(2) failures that mean "not writable here"
READ_ONLY_ERRNOS = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))
SERIAL_CHARS = 20  # ATA IDENTIFY words 10-19


def _open(config: ExportConfig) -> int:
    flags = (os.O_RDONLY if config.read_only else os.O_RDWR) | os.O_CLOEXEC
    if config.direct:
        flags |= os.O_DIRECT
    try:
        return os.open(config.path, flags)
    except OSError as exc:
        if config.direct and exc.errno == errno.EINVAL:
            raise TargetError(_no_direct(config)) from exc
        hint = ("; use -r to export it read-only"
                if exc.errno in READ_ONLY_ERRNOS and not config.read_only else "")
        raise TargetError(f"export {config.label}: cannot open {config.path}: "
                          f"{exc.strerror}{hint}") from exc


def _no_direct(config: ExportConfig) -> str:
    return (f"export {config.label}: direct I/O (O_DIRECT, direct: true / -d) is not "
            f"supported for {config.path} by its filesystem; set direct: false (or drop -d)")


def _direct_alignment(fd: int, base: int, sizes: tuple[int, ...]) -> tuple[int, OSError | None]:
    """The first of ``sizes`` (ascending) an O_DIRECT read of ``fd`` at ``base`` works
    with, or (0, the last error): some filesystems open with O_DIRECT and refuse the I/O,
    and a device's logical block size may be larger than a sector."""
    error: OSError | None = None
    with _aligned(max(sizes)) as buf:
        for size in sizes:
            if base % size:
                break
            try:
                os.preadv(fd, [buf[:size]], base)
            except OSError as exc:
                error = exc
                continue
            return size, None
    return 0, error


def _check_direct(fd: int, config: ExportConfig) -> None:
    """A ``direct`` export must read with O_DIRECT in 512-byte sectors: read one to know."""
    size, exc = _direct_alignment(fd, config.offset * SECTOR_SIZE, (SECTOR_SIZE,))
    if size:
        return
    if exc is None or exc.errno == errno.EINVAL:
        raise TargetError(_no_direct(config) + " (or its logical block size is over "
                          "512 bytes, which 512-byte AoE sectors cannot be aligned to)") from exc
    raise TargetError(f"export {config.label}: cannot read {config.path}: "
                      f"{exc.strerror}") from exc


def open_miss_reader(config: ExportConfig) -> tuple[int, int]:
    """A second, O_DIRECT, read-only descriptor for reads that miss the page cache, and
    the alignment it needs (512 or 4096 bytes); (-1, 0) where the store refuses it.

    Why: a random read that misses costs the disk one read either way, but through the
    page cache it also costs an io_uring worker thread, a page-cache insertion and a
    copy, about twice the CPU of the same read with O_DIRECT, which io_uring issues
    without a worker (measured on the benchmark's disk: 20.8 against 10.4 us per
    random 4 KiB read at queue depth 64, the same IOPS). The page cache would not
    keep such pages long on a store larger than it anyway. Coherent with the cached
    path: an O_DIRECT read writes back dirty cached pages of its range first.
    """
    try:
        fd = os.open(config.path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as exc:
        LOG.info("export %s: no O_DIRECT reads of cache misses (%s)", config.label,
                 exc.strerror)
        return -1, 0
    align, _error = _direct_alignment(fd, config.offset * SECTOR_SIZE, (SECTOR_SIZE, PAGE_SIZE))
    if align:
        return fd, align
    LOG.info("export %s: no O_DIRECT reads of cache misses (refused by the filesystem)",
             config.label)
    os.close(fd)
    return -1, 0


def _on_disk(fd: int) -> bool:
    """Whether reading ``fd`` may wait on a device: anything but a file on tmpfs/ramfs.

    (A block device node lives on devtmpfs, so its own ``fstatfs`` says nothing.)
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return True
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
    if _LIBC.fstatfs(fd, buf) != 0:
        return True
    return int.from_bytes(buf.raw[:ctypes.sizeof(ctypes.c_long)], sys.byteorder) not in (
        TMPFS_MAGIC, RAMFS_MAGIC)


@contextlib.contextmanager
def _aligned(nbytes: int) -> Iterator[memoryview]:
    memory = mmap.mmap(-1, max(nbytes, 1))
    view = memoryview(memory)
    try:
        yield view
    finally:
        view.release()
        memory.close()


def _read_zero_tail(fd: int, data: memoryview, pos: int) -> None:
    done = max(os.preadv(fd, [data], pos), 0)
    if done < len(data):
        data[done:] = bytes(len(data) - done)


def _check_writable(config: ExportConfig) -> None:
    """Refuse a read-write export of a store that is read-only by its mode or its mount.

    The mode bits, not ``access()``: root may write a 0444 file, but whoever made it
    0444 did not mean it to be written through AoE.
    """
    try:
        st = os.stat(config.path)
        readonly_mount = bool(os.statvfs(config.path).f_flag & os.ST_RDONLY)
    except OSError:
        return  # open() reports it
    why = ""
    if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:
        why = f"mode {stat.S_IMODE(st.st_mode):04o}"
    elif readonly_mount and not stat.S_ISBLK(st.st_mode):
        why = "on a read-only mount"
    if why:
        raise TargetError(f"export {config.label}: {config.path} is read-only ({why}): "
                          f"use -r to export it read-only")


def export_serial(config: ExportConfig, host: str) -> str:
    """The IDENTIFY serial: ``shelf.slot:`` and a digest of where this target runs.

    Unique per export and host, and the same on every link of one target, so a
    prober tells one target seen through two NICs (multipath) from two targets
    claiming one shelf.slot (a conflict). The digest covers the host name, the
    machine id (two machines may share a name) and the network namespace (two
    targets on one host in two namespaces are two targets); within one namespace
    ``targetd.claims`` refuses a second target for the same shelf.slot.
    """
    machine = netns = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    with contextlib.suppress(OSError):
        netns = os.readlink("/proc/self/ns/net")
    prefix = f"{config.shelf}.{config.slot}:"
    source = f"{host}\0{machine}\0{netns}".encode("utf-8", "surrogateescape")
    return prefix + hashlib.sha256(source).hexdigest()[:SERIAL_CHARS - len(prefix)]


def sync_exports(exports: Iterable[Export]) -> set[Export]:
    """fdatasync each export once (group commit); return those whose sync failed."""
    broken: set[Export] = set()
    for exp in set(exports):
        try:
            os.fdatasync(exp.fd)
        except OSError as exc:
            LOG.error("export %s: fdatasync failed: %s", exp.label, exc)
            broken.add(exp)
    return broken
