"""A read-only export on the initiator side, rehearsed on an image (``--device e2.0=IMAGE``).

The initiator never writes a read-only export: on a blank image apply fails with a
clear error and leaves the image untouched; on an image the target side prepared
(dos table, ext4) apply only adds the fstab line and mounts it ``ro``, without
changing a byte of the image, and the next plan is empty.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.storage.storagelab import Sandbox, aoeprov, mounts_under

pytestmark = pytest.mark.storage

SPEC = """\
version: 1
hosts:
  - {name: nas, roles: [target], interfaces: [eth0]}
  - {name: ws, roles: [initiator], interfaces: [eth0]}
targets:
  - {name: reference, host: nas, file: {path: /srv/reference.img, size: 64M}}
exports:
  - {name: reference, target: reference, shelf: 2, slot: 0, interfaces: [eth0], read_only: true}
disks:
  - {name: ref, host: ws, shelf: 2, slot: 0, target_host: nas, table: dos}
partitions:
  - {name: ref1, disk: ref, number: 1, type: "83", size: rest}
filesystems:
  - {name: refdata, device: ref1, type: ext4, label: refdata}
mounts:
  - {path: /srv/ref, filesystem: refdata, options: [defaults, noatime]}
"""
MIB = 1 << 20


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def args(box: Sandbox, spec: Path, command: str) -> list[str | Path]:
    return [command, spec, "--host", "ws", "--root", box.root, "--device", f"e2.0={box.image}",
            "--skip", "module,discovery,boot"]


def prepare_like_the_target(image: Path) -> None:
    """What the target host would have put on the export: a dos table and ext4 on partition 1."""
    subprocess.run(["sfdisk", "--quiet", str(image)], input="label: dos\nstart=2048, type=83\n",
                   text=True, check=True, capture_output=True)
    size = image.stat().st_size - MIB
    loop = subprocess.run(["losetup", "--find", "--show", "--offset", str(MIB), "--sizelimit",
                           str(size), str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-L", "refdata", loop], check=True,
                       capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_blank_read_only_export_is_an_error_and_untouched(sandbox: Sandbox) -> None:
    spec = sandbox.spec(SPEC)
    before = digest(sandbox.image)
    done = aoeprov(*args(sandbox, spec, "apply"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("e2.0 is exported read-only by nas: its partition table must already exist; "
            "found no partition table") in done.stderr
    assert digest(sandbox.image) == before
    assert not (sandbox.root / "etc/fstab").exists()


def test_prepared_read_only_export_is_mounted_ro_without_a_write(sandbox: Sandbox) -> None:
    spec = sandbox.spec(SPEC)
    prepare_like_the_target(sandbox.image)
    before = digest(sandbox.image)
    done = aoeprov(*args(sandbox, spec, "apply"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sfdisk" not in done.stdout and "mkfs" not in done.stdout
    fstab = (sandbox.root / "etc/fstab").read_text().split()
    assert fstab[:3] == ["/dev/etherd/e2.0p1", "/srv/ref", "ext4"]
    assert "ro" in fstab[3].split(",")
    point = str(sandbox.root / "srv/ref")
    assert mounts_under(sandbox.root) == [point]
    (entry,) = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4] == point]
    assert entry[5].split(",")[0] == "ro"
    assert digest(sandbox.image) == before
    again = aoeprov(*args(sandbox, spec, "plan"), "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
