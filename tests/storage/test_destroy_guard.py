"""A disk or partition holding data is untouched without both ``wipe`` and ``--allow-destroy``.

The tutorial spec against an image that already holds an ext4 filesystem on the
whole disk: apply refuses (exit 1, saying what would be lost) and the image is
byte-for-byte the same, with or without ``--allow-destroy``; with a spec that says
``wipe: true`` and ``--allow-destroy`` the filesystem is replaced as the spec says.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.storage.storagelab import Sandbox, aoeprov

pytestmark = pytest.mark.storage

REPO = Path(__file__).resolve().parents[2]
SKIP = "module,discovery,boot"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply(box: Sandbox, spec: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return aoeprov("apply", spec, "--host", "server1", "--root", box.root,
                   "--device", f"e0.1={box.image}", "--skip", SKIP, *extra)


def tutorial_with_wipe(box: Sandbox) -> Path:
    text = (REPO / "examples/tutorial.yaml").read_text()
    return box.spec(text.replace("    table: dos\n", "    table: dos\n    wipe: true\n"))


def test_whole_disk_filesystem_is_kept(sandbox: Sandbox) -> None:
    require_tools("mkfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", "-L", "precious", str(sandbox.image)], check=True)
    before = digest(sandbox.image)
    for extra in ((), ("--allow-destroy",)):
        done = apply(sandbox, REPO / "examples/tutorial.yaml", *extra)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "refusing to apply" in done.stderr
        assert "ext4 filesystem labelled 'precious'" in done.stderr
        assert digest(sandbox.image) == before
    plan = aoeprov("plan", REPO / "examples/tutorial.yaml", "--host", "server1", "--root",
                   sandbox.root, "--device", f"e0.1={sandbox.image}", "--skip", SKIP,
                   "--detailed-exitcode")
    # blocked: not "changes pending" (2) but an error naming what would be lost
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert "would lose" in plan.stderr and "BLOCKED" in plan.stdout
    assert "mkfs" not in plan.stdout and "+ mount" not in plan.stdout   # no follow-on steps
    done = apply(sandbox, tutorial_with_wipe(sandbox))   # wipe in the spec, not in the run
    assert done.returncode == 1 and digest(sandbox.image) == before
    assert not (sandbox.root / "etc/fstab").exists()


def test_with_wipe_and_allow_destroy_it_is_replaced(sandbox: Sandbox) -> None:
    require_tools("mkfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", "-L", "precious", str(sandbox.image)], check=True)
    spec = tutorial_with_wipe(sandbox)
    done = apply(sandbox, spec, "--allow-destroy")
    assert done.returncode == 0, done.stdout + done.stderr
    out = subprocess.run(["sfdisk", "--json", str(sandbox.image)], capture_output=True,
                         text=True, check=True).stdout
    parts = json.loads(out)["partitiontable"]["partitions"]
    assert [p["type"] for p in parts] == ["83"]
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(sandbox.image)],
                           capture_output=True, text=True).stdout
    assert "TYPE=ext4" not in probe     # the old whole-disk signature is gone
    plan = aoeprov("plan", spec, "--host", "server1", "--root", sandbox.root, "--device",
                   f"e0.1={sandbox.image}", "--skip", SKIP, "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_filesystem_on_the_partition_is_kept(sandbox: Sandbox) -> None:
    """The table matches, but partition 1 holds ext4 where the spec wants ext3: blocked."""
    require_tools("mkfs.ext4")
    subprocess.run(["sfdisk", "-q", str(sandbox.image)], input="label: dos\nstart=2048, type=83\n",
                   text=True, check=True)
    loop = subprocess.run(["losetup", "--find", "--show", "--offset", str(1 << 20),
                           str(sandbox.image)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        subprocess.run(["mkfs.ext4", "-q", "-L", "mine", loop], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)
    before = digest(sandbox.image)
    done = apply(sandbox, REPO / "examples/tutorial.yaml", "--allow-destroy")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ext4 filesystem labelled 'mine'" in done.stderr
    assert digest(sandbox.image) == before
