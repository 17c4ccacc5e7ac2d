"""The ``Host``: the machine aoeprov acts on, with every path under ``root``.

``--root DIR`` redirects every file aoeprov reads or writes, so tests run in a
sandbox without monkeypatching. Writes are atomic: temp file in the same
directory, fsync, rename, fsync of the directory.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.runner import Runner, ShRunner


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644,
                 backup: bool = False) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file, never half."""
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    if backup and path.exists():
        atomic_write(path.with_name(path.name + ".aoeprov.bak"), path.read_bytes(),
                     mode=path.stat().st_mode & 0o7777)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Host:
    """This machine as aoeprov sees it: a root for files and a runner for commands."""

    root: Path = Path("/")
    runner: Runner = field(default_factory=ShRunner)
    hostname: str = field(default_factory=socket.gethostname)

    @property
    def sandboxed(self) -> bool:
        """True when files are redirected (``--root``): live kernel state is not ours to touch."""
        return self.root.resolve() != Path("/")

    def path(self, abs_path: str | Path) -> Path:
        """Map an absolute path on the host (``/etc/fstab``) to where it lives under root."""
        p = Path(abs_path)
        if not p.is_absolute():
            raise ValueError(f"host paths must be absolute: {abs_path}")
        return self.root / p.relative_to("/")

    def read_text(self, abs_path: str | Path) -> str | None:
        """File content, or None when the file does not exist."""
        try:
            return self.path(abs_path).read_text()
        except FileNotFoundError:
            return None

    def write_text(self, abs_path: str | Path, text: str, *, mode: int = 0o644,
                   backup: bool = False) -> None:
        atomic_write(self.path(abs_path), text, mode=mode, backup=backup)
