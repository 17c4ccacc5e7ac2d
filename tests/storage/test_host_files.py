"""Host files on real filesystems: fstab bytes through a symlink with owner and mode kept,
and ENOSPC / EROFS / EACCES turned into one error naming the file, with the old file intact.

Each run is ``aoeprov apply --only fstab`` under ``--root`` (the tutorial's server1
mounts /storage); the small filesystems are tmpfs mounts the test makes and unmounts.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.errors import HostFileError
from aoeprov.host import Host
from tests.conftest import require_tools
from tests.storage import storagelab

pytestmark = pytest.mark.storage

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial.yaml"
OURS = (b"/dev/etherd/e0.1p1\t/storage\text3\tdefaults,_netdev,"
        b"x-systemd.requires=aoeprov-initiator.service,x-aoeprov\t0\t0\n")
OPAQUE = (b"# /etc/fstab\r\nUUID=1 / ext4 errors=remount-ro 0 1\r\n"
          b"# disabled:\r/dev/sdc1 /backup ext4 defaults 0 0\n"
          b"# disabled:\x1c/dev/sdd1 /backup2 ext4 defaults 0 0\n"
          + "# disabled:\u2028/dev/sde1 /backup3 ext4 defaults 0 0\n".encode()
          + b"/dev/sdb1 /caf\xe9 ext4 defaults 0 2\n")


def apply_fstab(root: Path) -> subprocess.CompletedProcess[str]:
    return storagelab.aoeprov("apply", TUTORIAL, "--host", "server1", "--root", root,
                              "--only", "fstab")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    require_tools("mount", "umount")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    try:
        yield root
    finally:
        storagelab.cleanup(tmp_path, root)
        assert not storagelab.mounts_under(root), "mounts left behind"


def tiny_tmpfs(where: Path, size: str = "16k") -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "aoeprov-test",
                    str(where)], check=True, timeout=30)


def test_symlinked_fstab_is_written_through_with_owner_and_mode(root: Path) -> None:
    conf = root / "srv/conf"
    conf.mkdir(parents=True)
    real = conf / "fstab"
    real.write_bytes(OPAQUE)
    os.chown(real, 1234, 5678)
    real.chmod(0o640)
    (root / "etc/fstab").symlink_to("/srv/conf/fstab")   # absolute: inside the root
    done = apply_fstab(root)
    assert done.returncode == 0, done.stderr
    assert os.readlink(root / "etc/fstab") == "/srv/conf/fstab"
    assert real.read_bytes() == OPAQUE + OURS
    st = real.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o640)
    bak = conf / "fstab.aoeprov.bak"
    bst = bak.stat()
    assert bak.read_bytes() == OPAQUE
    assert (bst.st_uid, bst.st_gid, stat.S_IMODE(bst.st_mode)) == (1234, 5678, 0o640)
    assert sorted(p.name for p in conf.iterdir()) == ["fstab", "fstab.aoeprov.bak"]
    again = storagelab.aoeprov("plan", TUTORIAL, "--host", "server1", "--root", root,
                               "--only", "fstab", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


def test_a_link_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched\n")
    (root / "etc/fstab").symlink_to("../../outside")
    done = apply_fstab(root)
    assert done.returncode == 1
    assert done.stderr == (f"aoeprov: error: /etc/fstab: leads out of the root {root} (through "
                           "`..`); aoeprov does not follow it\n")
    assert outside.read_bytes() == b"untouched\n"


def test_enospc_names_the_file_and_keeps_it(root: Path) -> None:
    etc = root / "etc"
    tiny_tmpfs(etc)
    (etc / "fstab").write_bytes(OPAQUE)
    fd = os.open(etc / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:   # fill the rest, page by page
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    done = apply_fstab(root)
    assert done.returncode == 1
    assert done.stderr == (
        f"aoeprov: error: cannot write /etc/fstab ({etc}/fstab): keeping a backup in "
        f"{etc}/fstab.aoeprov.bak: writing {len(OPAQUE)} bytes to a temporary file in {etc}: "
        "No space left on device (the filesystem is full); the old file is intact\n")
    assert (etc / "fstab").read_bytes() == OPAQUE
    assert sorted(p.name for p in etc.iterdir()) == ["filler", "fstab"]   # no temp file left


def test_erofs_names_the_file_and_keeps_it(root: Path) -> None:
    etc = root / "etc"
    tiny_tmpfs(etc)
    (etc / "fstab").write_bytes(OPAQUE)
    subprocess.run(["mount", "-o", "remount,ro", str(etc)], check=True, timeout=30)
    done = apply_fstab(root)
    assert done.returncode == 1
    assert done.stderr == (
        f"aoeprov: error: cannot write /etc/fstab ({etc}/fstab): keeping a backup in "
        f"{etc}/fstab.aoeprov.bak: creating a temporary file in {etc}: Read-only file system "
        "(the filesystem is mounted read-only); the old file is intact\n")
    assert (etc / "fstab").read_bytes() == OPAQUE


def test_eacces_names_the_file_and_keeps_it() -> None:
    """As an unprivileged user (a forked child drops to nobody): permission denied."""
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="aoeprov-eacces.") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        (root / "etc").mkdir(mode=0o755)
        (root / "etc/fstab").write_bytes(OPAQUE)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:   # child: never returns into pytest
            try:
                os.close(read_fd)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    Host(root=root).write_bytes("/etc/fstab", OPAQUE + OURS)
                    os.write(write_fd, b"no error")
                except HostFileError as exc:
                    os.write(write_fd, str(exc).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as fh:
            message = fh.read().decode()
        os.waitpid(pid, 0)
        assert message == (f"cannot write /etc/fstab ({root}/etc/fstab): creating a temporary "
                           f"file in {root}/etc: Permission denied; the old file is intact")
        assert (root / "etc/fstab").read_bytes() == OPAQUE


MOUNTED_EXPORT_SPEC = """\
version: 1
hosts:
  - {{name: nas, roles: [target], interfaces: [eth0]}}
targets:
  - {{name: t, host: nas, device: {{path: {device}}}}}
exports:
  - {{name: t, target: t, shelf: 0, slot: 1, interfaces: [eth0]}}
"""


def test_a_mounted_loop_device_is_refused_as_an_export(tmp_path: Path) -> None:
    """plan refuses it naming the mount; `aoeprov target` too, unless --force."""
    require_tools("losetup", "mkfs.ext4", "mount", "umount")
    root = tmp_path / "root"
    root.mkdir()
    image, point = storagelab.make_image(tmp_path / "disk.img", 16 << 20), tmp_path / "mnt"
    point.mkdir()
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", str(device)], check=True, timeout=60)
        subprocess.run(["mount", device, str(point)], check=True, timeout=60)
        spec = tmp_path / "spec.yaml"
        spec.write_text(MOUNTED_EXPORT_SPEC.format(device=device))
        plan = storagelab.aoeprov("plan", spec, "--host", "nas", "--root", root,
                                  "--only", "backing")
        assert plan.returncode == 1
        assert plan.stderr == (
            f"aoeprov: error: target t: {device} is in use on nas: {device} is mounted at "
            f"{point}. Exporting it would let initiators write under a live filesystem or "
            "volume; stop using it here first (umount, swapoff, vgchange -an, mdadm --stop)\n")
        served = storagelab.aoeprov("target", "0", "1", "aoeprov-nonexistent0", device,
                                    "--state-dir", tmp_path / "state", timeout=60)
        assert served.returncode == 1
        assert served.stderr.endswith(
            f"aoeprov: error: refusing to export {device} as e0.1: it is in use here ({device} "
            f"is mounted at {point}), and initiators would write under it; --force exports it "
            "anyway\n"), served.stderr
        forced = storagelab.aoeprov("target", "0", "1", "aoeprov-nonexistent0", device,
                                    "--state-dir", tmp_path / "state", "--force", timeout=60)
        assert forced.returncode == 1   # past the check: now it is the interface that is missing
        assert "in use" not in forced.stderr.split("aoeprov: error:")[-1], forced.stderr
        assert "aoeprov-nonexistent0" in forced.stderr, forced.stderr
        subprocess.run(["umount", str(point)], check=True, timeout=60)
        plan = storagelab.aoeprov("plan", spec, "--host", "nas", "--root", root,
                                  "--only", "backing")
        assert plan.returncode == 0, plan.stderr
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True, timeout=60)
        subprocess.run(["losetup", "-d", device], check=False, timeout=60)


IMAGE_EXPORT_SPEC = """\
version: 1
hosts:
  - {{name: nas, roles: [target], interfaces: [eth0]}}
targets:
  - {{name: t, host: nas, file: {{path: {image}, size: 16M}}}}
exports:
  - {{name: t, target: t, shelf: 0, slot: 1, interfaces: [eth0]}}
"""


def test_an_image_file_mounted_through_a_loop_device_is_refused(tmp_path: Path) -> None:
    require_tools("losetup", "mkfs.ext4", "mount", "umount")
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    image = storagelab.make_image(root / "srv/t.img", 16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)
    point = tmp_path / "mnt"
    point.mkdir()
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    try:
        subprocess.run(["mount", device, str(point)], check=True, timeout=60)
        spec = tmp_path / "spec.yaml"
        spec.write_text(IMAGE_EXPORT_SPEC.format(image="/srv/t.img"))
        plan = storagelab.aoeprov("plan", spec, "--host", "nas", "--root", root,
                                  "--only", "backing")
        assert plan.returncode == 1
        assert plan.stderr == (
            f"aoeprov: error: target t: /srv/t.img is in use on nas: it backs {device}, and "
            f"{device} is mounted at {point}. Exporting it would let initiators write under a "
            "live filesystem; unmount it and detach the loop device first (umount, losetup "
            "-d)\n")
        served = storagelab.aoeprov("target", "0", "1", "aoeprov-nonexistent0", image,
                                    "--state-dir", tmp_path / "state", timeout=60)
        assert served.returncode == 1
        assert served.stderr.endswith(
            f"aoeprov: error: refusing to export {image} as e0.1: it is in use here (it backs "
            f"{device}, and {device} is mounted at {point}), and initiators would write under "
            "it; --force exports it anyway\n"), served.stderr
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True, timeout=60)
        subprocess.run(["losetup", "-d", device], check=False, timeout=60)


def test_a_loop_device_in_use_as_swap_is_refused_as_an_export(tmp_path: Path) -> None:
    require_tools("losetup", "mkswap", "swapon", "swapoff")
    root = tmp_path / "root"
    root.mkdir()
    image = storagelab.make_image(tmp_path / "swap.img", 16 << 20)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    try:
        subprocess.run(["mkswap", device], check=True, capture_output=True, timeout=60)
        subprocess.run(["swapon", device], check=True, timeout=60)
        spec = tmp_path / "spec.yaml"
        spec.write_text(MOUNTED_EXPORT_SPEC.format(device=device))
        plan = storagelab.aoeprov("plan", spec, "--host", "nas", "--root", root,
                                  "--only", "backing")
        assert plan.returncode == 1
        assert plan.stderr == (
            f"aoeprov: error: target t: {device} is in use on nas: {device} is an active swap "
            "area. Exporting it would let initiators write under a live filesystem or volume; "
            "stop using it here first (umount, swapoff, vgchange -an, mdadm --stop)\n")
    finally:
        subprocess.run(["swapoff", device], check=False, capture_output=True, timeout=60)
        subprocess.run(["losetup", "-d", device], check=False, timeout=60)
