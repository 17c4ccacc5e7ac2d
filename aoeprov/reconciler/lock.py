"""One apply at a time per root, and per device: ``fcntl.flock`` on lock files.

``/run/aoeprov/lock`` under the root serialises runs on one root. Runs on
different roots (``--root``) can still reach the same device (the same
``--device`` image, the same /dev/etherd disk, the same backing device), so an
apply also locks every device it may touch, in one directory of the real
machine, ``/run/aoeprov/devices``, whatever its root: one lock file per device,
named after what identifies the device (block devices by major:minor, AoE disks
by shelf.slot, LVM volumes by group and name, files by their real path), taken
in a fixed order so two runs never wait on each other crosswise.

The kernel drops a lock when the holder dies (even by ``kill -9``), so a stale
lock file never blocks a later run. The holder's pid is written into the file
so a second run can say who holds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from aoeprov.errors import HostFileError, LockError
from aoeprov.host import Host
from aoeprov.spec.model import DeviceBacking, FileBacking, LvmBacking, Spec
from aoeprov.spec.queries import mapped_path, targets_on

LOG = logging.getLogger(__name__)

LOCK_PATH = "/run/aoeprov/lock"
DEVICE_LOCK_DIR = Path("/run/aoeprov/devices")   # on the real machine, never under --root


class ApplyLock:
    """Context manager holding an exclusive, non-blocking lock on ``path``."""

    def __init__(self, path: Path, what: str = "") -> None:
        self.path = path
        self.what = what        # the device a device lock stands for, for the message
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise HostFileError(f"cannot create the lock file {self.path}: "
                                f"{exc.strerror or exc}; nothing was changed") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            if self.what:
                raise LockError(f"another aoeprov apply is using {self.what} ({who} holds "
                                f"{self.path}, maybe under another --root); wait for it to "
                                "finish") from None
            raise LockError(f"another aoeprov apply is running ({who} holds {self.path}); "
                            "wait for it to finish") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        LOG.debug("locked %s", self.path)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)   # closing drops the flock
            self._fd = None

    def __enter__(self) -> ApplyLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def device_key(path: str) -> str:
    """What identifies the device or file at ``path``: a block device by major:minor (any
    path to it gives the same key), anything else by its real path."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return f"path {real}"
    if stat.S_ISBLK(st.st_mode):
        return f"block {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return f"path {real}"


def devices_touched(spec: Spec, host_name: str, host: Host,
                    device_map: Mapping[str, str]) -> dict[str, str]:
    """Lock key -> the device as people know it, for every device a run on ``host_name`` may
    partition, format, mount, create or export."""
    out: dict[str, str] = {}
    for disk in spec.disks_on(host_name):
        mapped = mapped_path(device_map, disk)
        if mapped is not None:
            out[device_key(mapped)] = f"{mapped} (disk {disk.name})"
        elif not host.sandboxed or os.path.exists(disk.device_path):
            # the AoE name is the identity, before and after the device node appears (a
            # --root rehearsal without it reaches no AoE device: nothing to lock)
            out[f"aoe {disk.aoe_name}"] = disk.device_path
    for target in targets_on(spec, host_name):
        b = target.backing
        if isinstance(b, LvmBacking):
            out[f"lvm {b.vg}/{b.lv}"] = b.device_path
        elif isinstance(b, FileBacking):
            real = str(host.real_path(b.path))
            out[f"path {os.path.realpath(real)}"] = real
        elif isinstance(b, DeviceBacking):
            out[device_key(b.path)] = b.path
    return out


def device_lock_dir() -> Path:
    """``DEVICE_LOCK_DIR``, or a per-user directory when this user cannot create it (an
    unprivileged --root rehearsal: it cannot reach another user's devices anyway)."""
    try:
        DEVICE_LOCK_DIR.mkdir(parents=True, exist_ok=True)
        if os.access(DEVICE_LOCK_DIR, os.W_OK):
            return DEVICE_LOCK_DIR
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"aoeprov-{os.getuid()}" / "devices"


class DeviceLocks:
    """Exclusive locks on every device of ``devices`` (key -> name), taken in key order."""

    def __init__(self, devices: Mapping[str, str], directory: Path | None = None) -> None:
        self.devices = dict(sorted(devices.items()))
        self.directory = directory
        self._held: list[ApplyLock] = []

    def __enter__(self) -> DeviceLocks:
        directory = self.directory or device_lock_dir()
        try:
            for key, name in self.devices.items():
                digest = hashlib.sha256(key.encode()).hexdigest()[:32]
                lock = ApplyLock(directory / f"{digest}.lock", what=name)
                lock.acquire()
                self._held.append(lock)
        except BaseException:
            self.release()
            raise
        return self

    @property
    def paths(self) -> list[Path]:
        """The lock files held, in the order taken."""
        return [lock.path for lock in self._held]

    def release(self) -> None:
        while self._held:
            self._held.pop().release()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
