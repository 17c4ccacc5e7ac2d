"""Helpers of the storage tier: a --root sandbox and an image file standing in for a disk.

Cleanup runs even when a test fails: every mount under the sandbox root is
unmounted (innermost first), then every loop device whose backing file lives in
the test's directory (or is such a loop device) is detached, by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


def _loops() -> list[dict[str, object]]:
    out = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE,AUTOCLEAR"],
                         capture_output=True, text=True, check=True).stdout
    return list(json.loads(out)["loopdevices"]) if out.strip() else []


def loops_under(directory: Path, *, pending_autoclear: bool = True) -> list[str]:
    """Loop devices backed by a file in ``directory``, or by such a loop device (innermost last).

    ``pending_autoclear=False`` leaves out loops already detached but still held open: a
    mount namespace created meanwhile by another process (``ip netns exec`` makes one)
    keeps a copy of the mount, and the kernel frees the loop when that copy goes.
    """
    loops = _loops()
    ours: list[str] = []
    changed = True
    while changed:
        changed = False
        for lo in loops:
            back = str(lo.get("back-file") or "").removesuffix(" (deleted)")
            if lo["name"] not in ours and (back.startswith(str(directory)) or back in ours):
                ours.append(str(lo["name"]))
                changed = True
    if not pending_autoclear:
        cleared = {str(lo["name"]) for lo in loops if lo.get("autoclear") in (True, "1", 1)}
        ours = [name for name in ours if name not in cleared]
    return ours


def cleanup(directory: Path, root: Path) -> None:
    for _ in range(3):
        for point in reversed(mounts_under(root)):
            subprocess.run(["umount", point], check=False, timeout=60, capture_output=True)
    for name in reversed(loops_under(directory)):
        subprocess.run(["losetup", "-d", name], check=False, timeout=60, capture_output=True)
    # a loop released just after its umount is detached by the kernel a moment later
    deadline = time.monotonic() + 10
    while loops_under(directory, pending_autoclear=False) and time.monotonic() < deadline:
        time.sleep(0.05)


def make_image(path: Path, size: int = 64 << 20) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path
