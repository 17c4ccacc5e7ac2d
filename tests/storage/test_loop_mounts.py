"""Mount sources given through symlinks (``--device e0.1=LINK``), resolved before mounting.

A link to an image file is mounted with ``-o loop`` (one loop device, backed by the
image); a link to a loop block device is mounted as that device, without a second
loop stacked on it. Either way the next plan matches mountinfo and is empty.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.storage.storagelab import Sandbox, _loops, aoeprov, mounts_under

pytestmark = pytest.mark.storage

SPEC = """\
version: 1
hosts:
  - {name: server2, roles: [target], interfaces: [eth0]}
  - {name: server1, roles: [initiator], interfaces: [eth0]}
targets:
  - {name: t, host: server2, file: {path: /srv/t.img, size: 64M}}
exports:
  - {name: t, target: t, shelf: 0, slot: 1, interfaces: [eth0]}
disks:
  - {name: e0.1, host: server1, shelf: 0, slot: 1}
filesystems:
  - {name: data, device: e0.1, type: ext3}
mounts:
  - {path: /data, filesystem: data}
"""


def run(box: Sandbox, command: str, device: Path, *extra: str) -> str:
    done = aoeprov(command, box.spec(SPEC), "--host", "server1", "--root", box.root,
                   "--device", f"e0.1={device}", "--skip", "module,discovery,boot", *extra)
    assert done.returncode in (0, 2) if command == "plan" else done.returncode == 0, (
        done.stdout + done.stderr)
    return done.stdout


def mount_entry(box: Sandbox) -> list[str]:
    point = str(box.root / "data")
    (entry,) = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4] == point]
    return entry


def backed_by(path: Path) -> list[str]:
    return [str(lo["name"]) for lo in _loops()
            if str(lo.get("back-file") or "").removesuffix(" (deleted)") == str(path)]


def test_link_to_an_image_file_gets_one_loop(sandbox: Sandbox) -> None:
    link = sandbox.dir / "current.img"
    link.symlink_to(sandbox.image)
    out = run(sandbox, "apply", link)
    assert f"mount {link} ({sandbox.image}) (ext3)" in out
    assert mounts_under(sandbox.root) == [str(sandbox.root / "data")]
    (loop,) = backed_by(sandbox.image)
    assert mount_entry(sandbox)[-2] == loop
    assert "No changes" in run(sandbox, "plan", link, "--detailed-exitcode")


def test_link_to_a_loop_device_is_not_looped_again(sandbox: Sandbox) -> None:
    loop = subprocess.run(["losetup", "--find", "--show", str(sandbox.image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    link = sandbox.dir / "disk"
    link.symlink_to(loop)
    out = run(sandbox, "apply", link)
    assert f"mount {link} ({loop}) (ext3)" in out
    assert mount_entry(sandbox)[-2] == loop
    assert backed_by(sandbox.image) == [loop] and not backed_by(Path(loop))
    assert "No changes" in run(sandbox, "plan", link, "--detailed-exitcode")
