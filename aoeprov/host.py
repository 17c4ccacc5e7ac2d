"""The ``Host``: the machine aoeprov acts on, with every path under ``root``.

``--root DIR`` redirects every file aoeprov reads or writes, so tests run in a
sandbox without monkeypatching. Files are bytes (``aoeprov.hostfile``): writes
are atomic (temp file in the target's directory, fsync, rename, fsync of the
directory), go through symlinks without leaving the root, and keep the old
file's mode, owner and group.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov import hostfile
from aoeprov.runner import Runner, ShRunner


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

    def real_path(self, abs_path: str) -> Path:
        """Where ``abs_path`` really is: symlinks followed as in a chroot at ``root``."""
        return hostfile.resolve_under(self.root, abs_path)

    def read_bytes(self, abs_path: str) -> bytes | None:
        """File content, or None when the file does not exist."""
        return hostfile.read_bytes(self.root, abs_path)

    def write_bytes(self, abs_path: str, data: bytes, *, mode: int | None = None,
                    backup: bool = False) -> None:
        """Replace the file atomically; ``mode`` only for a new file (an old one keeps its own)."""
        hostfile.write_bytes(self.root, abs_path, data, mode=mode, backup=backup)

    def remove(self, abs_path: str) -> None:
        hostfile.remove(self.root, abs_path)

    def make_directory(self, abs_path: str, mode: int = 0o755) -> None:
        hostfile.make_directory(self.root, abs_path, mode)
