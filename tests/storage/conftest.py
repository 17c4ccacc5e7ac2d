"""Fixtures of the storage tier: a --root sandbox and an image file standing in for a disk.

Cleanup runs even when a test fails: every mount under the sandbox root is
unmounted (innermost first), then every loop device whose backing file lives in
the test's directory (or is such a loop device) is detached, by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_tools

TOOLS = ("sfdisk", "blkid", "wipefs", "losetup", "mount", "umount", "mkfs.ext3")


@dataclass
class Sandbox:
    root: Path     # --root
    image: Path    # stands in for /dev/etherd/e0.1
    dir: Path

    def spec(self, text: str, name: str = "spec.yaml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


def aoeprov(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aoeprov", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def mounts_under(root: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(str(root))]


def loops_under(directory: Path) -> list[str]:
    """Loop devices backed by a file in ``directory``, or by such a loop device (innermost last)."""
    out = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"],
                         capture_output=True, text=True, check=True).stdout
    loops = json.loads(out)["loopdevices"] if out.strip() else []
    ours: list[str] = []
    changed = True
    while changed:
        changed = False
        for lo in loops:
            back = str(lo.get("back-file") or "").removesuffix(" (deleted)")
            if lo["name"] not in ours and (back.startswith(str(directory)) or back in ours):
                ours.append(lo["name"])
                changed = True
    return ours


def cleanup(directory: Path, root: Path) -> None:
    for _ in range(3):
        for point in reversed(mounts_under(root)):
            subprocess.run(["umount", point], check=False, timeout=60, capture_output=True)
    for name in reversed(loops_under(directory)):
        subprocess.run(["losetup", "-d", name], check=False, timeout=60, capture_output=True)


def make_image(path: Path, size: int = 64 << 20) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    require_tools(*TOOLS)
    root = tmp_path / "root"
    root.mkdir()
    box = Sandbox(root=root, image=make_image(tmp_path / "e0.1.img"), dir=tmp_path)
    try:
        yield box
    finally:
        cleanup(tmp_path, root)
        assert not mounts_under(root), "mounts left behind"
        assert not loops_under(tmp_path), "loop devices left behind"
