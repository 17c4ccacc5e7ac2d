"""The apply lock covers the devices a run touches, not only its root: two --roots on the
same device never run at once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from aoeprov.errors import HostFileError, LockError
from aoeprov.host import Host
from aoeprov.reconciler.apply import apply
from aoeprov.reconciler.engine import Reconciler
from aoeprov.reconciler.lock import DeviceLocks, devices_touched
from aoeprov.reconciler.waiting import DeviceWaiter
from aoeprov.spec import load_spec_text
from tests.unit.reconciler.fakes import FakeRunner, make_host, tutorial

SPEC = """\
version: 1
hosts:
  - {name: both, roles: [target, initiator], interfaces: [eth0]}
targets:
  - {name: img, host: both, file: {path: /srv/aoe/t.img, size: 1G}}
  - {name: lv, host: both, lvm: {vg: vg0, lv: data, size: 1G}}
exports:
  - {name: img, target: img, shelf: 0, slot: 1, interfaces: [eth0]}
  - {name: lv, target: lv, shelf: 0, slot: 2, interfaces: [eth0]}
disks:
  - {name: e0.1, host: both, shelf: 0, slot: 1}
  - {name: e0.2, host: both, shelf: 0, slot: 2}
"""


def engine(root: Path, device_map: dict[str, str]) -> Reconciler:
    return Reconciler(spec=tutorial(), host=make_host(root), kinds=("fstab",),
                      device_map=device_map)


def test_two_roots_on_one_image_do_not_run_at_once(tmp_path: Path) -> None:
    image = tmp_path / "e0.1.img"
    image.write_bytes(b"\0" * 4096)
    alias = tmp_path / "alias.img"
    alias.symlink_to(image)                 # another path to the same file
    locks = tmp_path / "locks"
    first, second = tmp_path / "root1", tmp_path / "root2"
    first.mkdir()
    second.mkdir()
    one = engine(first, {"e0.1": str(image)})
    two = engine(second, {"e0.1": str(alias)})
    key = f"path {image}"
    assert list(devices_touched(one.spec, "server1", one.host, one.device_map)) == [key]
    assert list(devices_touched(two.spec, "server1", two.host, two.device_map)) == [key]
    lock_file = locks / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"
    # the first run, mid-apply, holds the image
    with DeviceLocks({key: f"{image} (disk e0.1)"}, locks), pytest.raises(LockError) as err:
        apply(two, waiter=DeviceWaiter(system_root=second), device_lock_dir=locks)
    assert str(err.value) == (f"another aoeprov apply is using {alias} (disk e0.1) (pid "
                              f"{os.getpid()} holds {lock_file}, maybe under another --root); "
                              "wait for it to finish")
    assert not (second / "etc/fstab").exists()
    apply(two, waiter=DeviceWaiter(system_root=second), device_lock_dir=locks)   # free again
    assert (second / "etc/fstab").exists()


def test_what_a_run_locks(tmp_path: Path) -> None:
    spec = load_spec_text(SPEC)
    real = Host(root=Path("/"), runner=FakeRunner(), hostname="both")
    assert devices_touched(spec, "both", real, {}) == {
        "aoe e0.1": "/dev/etherd/e0.1",       # by shelf.slot: before and after it appears
        "aoe e0.2": "/dev/etherd/e0.2",
        "path /srv/aoe/t.img": "/srv/aoe/t.img",
        "lvm vg0/data": "/dev/vg0/data",      # LVM is live state, under --root too
    }
    one, two = make_host(tmp_path / "a"), make_host(tmp_path / "b")
    # a --root rehearsal reaches no AoE device (no discovery there); an image file under
    # another root is another file: two rehearsals have nothing in common but the volume
    assert devices_touched(spec, "both", one, {}) == {
        f"path {tmp_path}/a/srv/aoe/t.img": f"{tmp_path}/a/srv/aoe/t.img",
        "lvm vg0/data": "/dev/vg0/data",
    }
    assert f"path {tmp_path}/b/srv/aoe/t.img" in devices_touched(spec, "both", two, {})


def test_a_lock_that_cannot_be_created_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "run").write_bytes(b"a file where /run/aoeprov should go")
    with pytest.raises(HostFileError) as err:
        apply(engine(tmp_path, {}), waiter=DeviceWaiter(system_root=tmp_path),
              device_lock_dir=tmp_path / "locks")
    assert str(err.value) == (f"cannot create the lock file {tmp_path}/run/aoeprov/lock: Not a "
                              "directory; nothing was changed")
