"""An image file target on a target host, under --root: sparse create, grow, refuse shrink.

Also: preallocated files are allocated without writing zeros, the built-in target's
config parses back, and the unit verifies. Nothing is started under --root.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from aoeprov.install import aoeprov_command
from aoeprov.targetd.config import parse_config
from tests.conftest import require_tools
from tests.storage.storagelab import Sandbox, aoeprov

pytestmark = pytest.mark.storage

SPEC = """\
version: 1
hosts:
  - {name: server2, roles: [target], interfaces: [eth0]}
targets:
  - name: sparse
    host: server2
    file: {path: /srv/aoe/sparse.img, size: SPARSE}
  - name: full
    host: server2
    file: {path: /srv/aoe/full.img, size: 16M, allocation: preallocated}
exports:
  - {name: sparse, target: sparse, shelf: 0, slot: 1, interfaces: [eth0]}
  - {name: full, target: full, shelf: 0, slot: 2, interfaces: [eth0], read_only: true}
"""


def apply(box: Sandbox, sparse: str) -> subprocess.CompletedProcess[str]:
    spec = box.spec(SPEC.replace("SPARSE", sparse))
    return aoeprov("apply", spec, "--host", "server2", "--root", box.root,
                   "--only", "backing,export")


def test_image_file_target(sandbox: Sandbox) -> None:
    sparse, full = sandbox.root / "srv/aoe/sparse.img", sandbox.root / "srv/aoe/full.img"
    done = apply(sandbox, "1G")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sparse.stat().st_size == 1 << 30
    assert sparse.stat().st_blocks * 512 < 1 << 20          # sparse: nothing written
    assert full.stat().st_blocks * 512 >= 16 << 20          # preallocated
    exports = parse_config((sandbox.root / "etc/aoeprov/target.json").read_text())
    assert [(e.aoe_name, e.path, e.read_only) for e in exports] == [
        ("e0.1", "/srv/aoe/sparse.img", False), ("e0.2", "/srv/aoe/full.img", True)]

    again = apply(sandbox, "1G")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout

    grown = apply(sandbox, "2G")
    assert grown.returncode == 0, grown.stdout + grown.stderr
    assert sparse.stat().st_size == 2 << 30 and sparse.stat().st_blocks * 512 < 1 << 20

    shrink = apply(sandbox, "1G")
    assert shrink.returncode == 1
    assert "never shrinks" in shrink.stderr
    assert sparse.stat().st_size == 2 << 30


def test_generated_unit_verifies(sandbox: Sandbox) -> None:
    require_tools("systemd-analyze")
    assert apply(sandbox, "64M").returncode == 0
    unit = sandbox.root / "etc/systemd/system/aoeprov-target.service"
    # units run the installed console script (aoeprov.install), never "python -m aoeprov"
    assert f"ExecStart={' '.join(aoeprov_command())} target" in unit.read_text()
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    assert res.returncode == 0, res.stderr
