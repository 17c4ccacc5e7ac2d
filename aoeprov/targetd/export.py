"""One served export: the open backing store and its AoE-visible state.

The state AoE peers can change (config string, Mac Mask List, reserve list)
lives here in memory, like vblade's; a SIGHUP that leaves an export's
configuration unchanged keeps the same ``Export`` object, so that state and the
counters survive a reload. A restart of the process resets them to the
configuration (the mask list to ``allowed_macs``, the others to empty).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, fields

from aoeprov import __version__
from aoeprov.aoe.ata import build_identify
from aoeprov.aoe.wire import SECTOR_SIZE, mac_to_bytes
from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.mapping import map_readonly

LOG = logging.getLogger(__name__)

MODEL = "aoeprov built-in AoE target"
MAX_MASKS = 32  # vblade's limit; initiators never need more


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
        flags = (os.O_RDONLY if config.read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            self.fd = os.open(config.path, flags)
        except OSError as exc:
            raise TargetError(f"export {config.label}: cannot open {config.path}: "
                              f"{exc.strerror}") from exc
        try:
            self.sectors = self._size(config)
        except BaseException:
            os.close(self.fd)
            raise
        self.base = config.offset * SECTOR_SIZE
        # reads are sent straight from here when the backing store can be mapped
        self.mapping = map_readonly(self.fd, self.base + self.sectors * SECTOR_SIZE,
                                    f"export {config.label}")
        self.address = self.mapping.address if self.mapping is not None else 0
        host = hostname if hostname is not None else socket.gethostname()
        self.identify = build_identify(self.sectors, f"{config.shelf}.{config.slot}:{host}",
                                       MODEL, __version__)
        self.masks: list[bytes] = [mac_to_bytes(m) for m in config.allowed_macs][:MAX_MASKS]
        self.reserve: list[bytes] = []
        self.config_string = b""
        self.counters = ExportCounters()
        self.closed = False

    def _size(self, config: ExportConfig) -> int:
        total = os.lseek(self.fd, 0, os.SEEK_END) // SECTOR_SIZE
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
            os.close(self.fd)

    def to_json(self) -> dict[str, object]:
        return {"name": self.label, "aoe": self.config.aoe_name, "path": self.config.path,
                "sectors": self.sectors, "read_only": self.read_only,
                "write_mode": self.config.write_mode, **self.counters.to_json()}


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
