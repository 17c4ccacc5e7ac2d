"""Checked-out trees and the ``current`` symlink of the pull state directory.

A tree appears under ``trees/`` only once complete (``GitMirror.export_tree``
renames it into place); ``current`` is switched with a symlink made aside and
renamed over the old one, so readers see the old spec or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

LOG = logging.getLogger(__name__)


class Trees:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "trees"
        self.current_link = state_dir / "current"

    def tree(self, commit: str) -> Path:
        return self.dir / commit

    def current(self) -> str | None:
        """The commit ``current`` points at, or None."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        commit = Path(target).name
        return commit if self.tree(commit).is_dir() else None

    def switch(self, commit: str) -> None:
        tmp = self.state_dir / ".current.new"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("trees") / commit, tmp)
        os.replace(tmp, self.current_link)
        fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def prune(self, keep: set[str]) -> None:
        """Remove every tree but ``keep``, and leftovers of interrupted checkouts."""
        if not self.dir.is_dir():
            return
        for entry in self.dir.iterdir():
            if entry.name in keep:
                continue
            LOG.debug("removing %s", entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
