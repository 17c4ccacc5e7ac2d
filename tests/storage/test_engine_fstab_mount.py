"""Reconciler, fstab and mount on a real ext4 image mounted through a loop device, under --root.

A whole-disk filesystem (no partition table) on an image file stands in for
/dev/etherd/e0.1 (``--device``): apply writes the fstab line and mounts it,
a second plan is empty with exit code 0, another filesystem mounted at the same
place is drift (never a stacked mount), and a concurrent apply fails at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.storage import storagelab

pytestmark = pytest.mark.storage

SPEC = """\
version: 1
hosts:
  - name: server2
    roles: [target]
    interfaces: [eth0]
  - name: server1
    roles: [initiator]
    interfaces: [eth0]
targets:
  - name: t
    host: server2
    file: {path: /srv/t.img, size: 64M}
exports:
  - {name: t, target: t, shelf: 0, slot: 1, interfaces: [eth0]}
disks:
  - {name: e0.1, host: server1, shelf: 0, slot: 1}
filesystems:
  - {name: data, device: e0.1, type: ext4}
mounts:
  - {path: /data, filesystem: data, options: [defaults, noatime], nofail: true,
     device_timeout: 20}
"""


def aoeprov(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = storagelab.aoeprov(*args)
    if check and done.returncode not in (0, 2):
        raise AssertionError(f"aoeprov {args} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def mounts_at(point: Path) -> list[list[str]]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split() for line in lines if line.split()[4] == str(point)]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    require_tools("mkfs.ext4", "mount", "umount", "losetup")
    root, image, spec = tmp_path / "root", tmp_path / "e0.1.img", tmp_path / "spec.yaml"
    root.mkdir()
    with image.open("wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)
    spec.write_text(SPEC)
    try:
        yield root, image, spec
    finally:
        for _ in range(3):   # unmount whatever the test left, innermost first
            for entry in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
                point = entry.split()[4]
                if point.startswith(str(root)):
                    subprocess.run(["umount", point], check=False, timeout=60)


def common(root: Path, image: Path, spec: Path) -> list[str | Path]:
    return [spec, "--host", "server1", "--root", root, "--device", f"e0.1={image}",
            "--only", "fstab,mount"]


def test_apply_mounts_and_converges(sandbox: tuple[Path, Path, Path]) -> None:
    root, image, spec = sandbox
    args = common(root, image, spec)
    first = aoeprov("apply", *args)
    assert first.returncode == 0, first.stderr
    fstab = (root / "etc/fstab").read_text()
    assert fstab == ("/dev/etherd/e0.1\t/data\text4\tdefaults,noatime,_netdev,"
                     "x-systemd.requires=aoeprov-initiator.service,nofail,"
                     "x-systemd.device-timeout=20s,x-aoeprov\t0\t0\n")
    found = mounts_at(root / "data")
    assert len(found) == 1 and found[0][-3:-1] == ["ext4", found[0][-2]]
    assert found[0][-2].startswith("/dev/loop")
    # converged: an empty plan, exit code 0, and apply does nothing
    again = aoeprov("plan", *args, "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout
    assert "No changes" in aoeprov("apply", *args).stdout
    assert (root / "etc/fstab").read_text() == fstab
    assert len(mounts_at(root / "data")) == 1


def test_something_else_mounted_is_drift_not_stacked(sandbox: tuple[Path, Path, Path]) -> None:
    root, image, spec = sandbox
    (root / "data").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "other", str(root / "data")], check=True, timeout=30)
    args = common(root, image, spec)
    plan = aoeprov("plan", *args, "--detailed-exitcode")
    assert plan.returncode == 2
    assert "other (tmpfs) is mounted at" in plan.stdout and "drift" in plan.stdout
    applied = aoeprov("apply", *args)
    assert applied.returncode == 0 and "to fix: umount" in applied.stdout
    found = mounts_at(root / "data")
    assert [m[-2] for m in found] == ["other"]     # still only the tmpfs: nothing stacked


def test_concurrent_apply_fails_at_once(sandbox: tuple[Path, Path, Path]) -> None:
    root, image, spec = sandbox
    lock = root / "run/aoeprov/lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        done = aoeprov("apply", *common(root, image, spec), check=False)
        assert done.returncode == 1
        assert f"pid {os.getpid()} holds" in done.stderr
        assert not (root / "etc/fstab").exists()
    finally:
        os.close(fd)


def test_removed_mount_is_pruned_only_with_prune(sandbox: tuple[Path, Path, Path]) -> None:
    """The mount leaves the spec: a "-" line pending --prune (exit 0, nothing changes), then
    apply --prune unmounts it and removes its fstab line; the filesystem is kept."""
    root, image, spec = sandbox
    args = common(root, image, spec)
    assert aoeprov("apply", *args).returncode == 0
    (root / "etc/fstab").write_text("# hand-written\nproc /proc proc defaults 0 0\n"
                                    + (root / "etc/fstab").read_text())
    spec.write_text(SPEC.split("mounts:\n")[0])
    plan = aoeprov("plan", *args, "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr   # nothing apply would do
    assert "- mount /data: unmount" in plan.stdout and "- fstab /data" in plan.stdout
    assert "pending: only with --prune" in plan.stdout
    assert "No changes" in aoeprov("apply", *args).stdout.splitlines()[-1]
    assert len(mounts_at(root / "data")) == 1
    pruned = aoeprov("plan", *args, "--prune", "--detailed-exitcode")
    assert pruned.returncode == 2, pruned.stdout + pruned.stderr
    done = aoeprov("apply", *args, "--prune")
    assert done.returncode == 0, done.stdout + done.stderr
    assert mounts_at(root / "data") == []
    assert (root / "etc/fstab").read_text() == "# hand-written\nproc /proc proc defaults 0 0\n"
    probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(image)],
                           capture_output=True, text=True, check=False)
    assert probe.stdout.strip() == "ext4"   # the filesystem is kept
    again = aoeprov("plan", *args, "--prune", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
def test_changed_options_remount_in_place(fstype: str, tmp_path: Path) -> None:
    """ro and nodev added to a mounted filesystem's spec: the plan names a remount, apply
    remounts in place (same mount, no unmount), and the next plan is empty."""
    require_tools(f"mkfs.{fstype}", "mount", "umount")
    root, image, spec = tmp_path / "root", tmp_path / "e0.1.img", tmp_path / "spec.yaml"
    root.mkdir()
    with image.open("wb") as fh:
        fh.truncate(320 << 20)   # xfs wants 300 MiB at least
    subprocess.run([f"mkfs.{fstype}", "-q", str(image)], check=True, timeout=60)
    text = SPEC.replace("type: ext4", f"type: {fstype}")
    spec.write_text(text)
    args = common(root, image, spec)
    try:
        assert aoeprov("apply", *args).returncode == 0
        (before,) = mounts_at(root / "data")
        assert before[5].startswith("rw") and "nodev" not in before[5].split(",")
        spec.write_text(text.replace("options: [defaults, noatime]",
                                     "options: [defaults, noatime, ro, nodev]"))
        plan = aoeprov("plan", *args, "--detailed-exitcode")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert "remount" in plan.stdout and "ro (live: rw), nodev (live: dev)" in plan.stdout
        assert aoeprov("apply", *args).returncode == 0
        (after,) = mounts_at(root / "data")
        assert after[2] == before[2] and after[0] == before[0]   # the same mount, remounted
        assert {"ro", "nodev", "noatime"} <= set(after[5].split(","))
        again = aoeprov("plan", *args, "--detailed-exitcode")
        assert again.returncode == 0, again.stdout
    finally:
        storagelab.cleanup(tmp_path, root)


def test_destroying_a_mounted_filesystem_is_blocked(sandbox: tuple[Path, Path, Path]) -> None:
    """Even with `wipe: true` and --allow-destroy, a mounted filesystem is never wiped: the
    plan is refused naming the mount point (not wipefs's "Device or resource busy")."""
    root, image, spec = sandbox
    args = common(root, image, spec)
    assert aoeprov("apply", *args).returncode == 0    # the ext4 is mounted at /data
    spec.write_text(SPEC.replace("{name: data, device: e0.1, type: ext4}",
                                 "{name: data, device: e0.1, type: xfs, wipe: true}"))
    wide = [a if a != "fstab,mount" else "filesystem,fstab,mount" for a in args]
    done = aoeprov("apply", *wide, "--allow-destroy", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"is mounted at {root}/data: umount {root}/data first" in done.stderr
    assert "busy" not in done.stderr
    probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(image)],
                           capture_output=True, text=True, check=False)
    assert probe.stdout.strip() == "ext4" and len(mounts_at(root / "data")) == 1


@pytest.mark.parametrize("fstype", ["xfs"])
def test_grown_image_grows_the_mounted_filesystem_online(fstype: str, tmp_path: Path) -> None:
    """The image under a mounted whole-disk filesystem grows (as an LV would): apply lets the
    loop device see the new size and grows the filesystem online; the data reads back.

    xfs only here: ext4's online resize needs CAP_SYS_RESOURCE, which this machine's
    container drops (resize2fs: "Permission denied to resize filesystem" even by hand); the
    vm tier grows the tutorial's ext3 online (tests/vm/test_tutorial_builtin.py, its last test)."""
    require_tools(f"mkfs.{fstype}", "mount", "umount", "losetup",
                  "xfs_growfs" if fstype == "xfs" else "resize2fs")
    root, image, spec = tmp_path / "root", tmp_path / "e0.1.img", tmp_path / "spec.yaml"
    root.mkdir()
    size = 320 << 20
    with image.open("wb") as fh:
        fh.truncate(size)
    subprocess.run([f"mkfs.{fstype}", "-q", str(image)], check=True, timeout=60)
    spec.write_text(SPEC.replace("type: ext4", f"type: {fstype}"))
    args = [a if a != "fstab,mount" else "filesystem,fstab,mount"
            for a in common(root, image, spec)]
    try:
        assert aoeprov("apply", *args).returncode == 0
        (root / "data/keep").write_bytes(b"aoeprov" * 1000)
        before = os.statvfs(root / "data")
        with image.open("r+b") as fh:
            fh.truncate(2 * size)
        plan = aoeprov("plan", *args, "--detailed-exitcode")
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert "losetup --set-capacity" in aoeprov("plan", *args, "-v").stdout
        assert f"grow the {fstype} filesystem online" in plan.stdout
        done = aoeprov("apply", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        after = os.statvfs(root / "data")
        assert after.f_blocks * after.f_frsize > 1.8 * before.f_blocks * before.f_frsize
        assert (root / "data/keep").read_bytes() == b"aoeprov" * 1000
        again = aoeprov("plan", *args, "--detailed-exitcode")
        assert again.returncode == 0, again.stdout
    finally:
        storagelab.cleanup(tmp_path, root)


def test_hand_written_line_is_adopted(sandbox: tuple[Path, Path, Path]) -> None:
    """The filesystem already has a hand-written fstab line by UUID=: it is taken over in
    place (marked, options merged), the other lines stay byte for byte."""
    root, image, spec = sandbox
    uuid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    (root / "etc").mkdir()
    (root / "etc/fstab").write_bytes(b"# mine\r\n" + f"UUID={uuid} /data ext4 defaults,"
                                     f"nodiratime 0 2\n".encode() + b"proc /proc proc 0 0\n")
    args = [a if a != "fstab,mount" else "filesystem,fstab,mount"
            for a in common(root, image, spec)]
    plan = aoeprov("plan", *args)
    assert "take over the hand-written line for /data" in plan.stdout, plan.stdout
    assert aoeprov("apply", *args).returncode == 0
    lines = (root / "etc/fstab").read_bytes().split(b"\n")
    assert lines[0] == b"# mine\r" and lines[2] == b"proc /proc proc 0 0"
    ours = lines[1].decode().split("\t")
    assert ours[:3] == ["/dev/etherd/e0.1", "/data", "ext4"]
    assert {"noatime", "nodiratime", "x-aoeprov", "_netdev"} <= set(ours[3].split(","))
    assert len(mounts_at(root / "data")) == 1
    spec.write_text(SPEC.replace("{name: data, device: e0.1, type: ext4}",
                                 "{name: data, device: e0.1, type: ext4, label: other}"))
    (root / "etc/fstab").write_text("LABEL=elsewhere /data ext4 defaults 0 0\n")
    refused = aoeprov("plan", *args, check=False)
    assert refused.returncode == 1 and "LABEL=elsewhere /data ext4" in refused.stderr
    assert "the spec wants:" in refused.stderr
