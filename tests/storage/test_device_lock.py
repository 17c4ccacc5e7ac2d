"""Two applies with different --roots on one device: the second refuses while the first
holds the device (the lock lives in /run/aoeprov/devices, outside both roots)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aoeprov.reconciler.lock import DeviceLocks, device_key
from tests.storage import storagelab

pytestmark = pytest.mark.storage

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial.yaml"


def test_a_second_root_waits_for_the_device(tmp_path: Path) -> None:
    image = storagelab.make_image(tmp_path / "e0.1.img", 16 << 20)
    roots = [tmp_path / "root1", tmp_path / "root2"]
    for root in roots:
        root.mkdir()
    args = ["--host", "server1", "--device", f"e0.1={image}", "--only", "fstab"]
    with DeviceLocks({device_key(str(image)): "the first run"}) as held:
        done = storagelab.aoeprov("apply", TUTORIAL, "--root", roots[1], *args)
        (lock_file,) = held.paths
    assert done.returncode == 1
    assert done.stderr == (f"aoeprov: error: another aoeprov apply is using {image} (disk e0.1) "
                           f"(pid {os.getpid()} holds {lock_file}, maybe under another --root); "
                           "wait for it to finish\n")
    assert not (roots[1] / "etc/fstab").exists()
    for root in roots:   # one after the other: both fine
        again = storagelab.aoeprov("apply", TUTORIAL, "--root", root, *args)
        assert again.returncode == 0, again.stderr
