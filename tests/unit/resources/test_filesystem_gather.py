"""Filesystem and partition facts gathered from real image files (no root, no loop device)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from aoeprov.host import Host
from aoeprov.reconciler.engine import Reconciler
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.resources import filesystem, partition
from aoeprov.resources._blockdev import disk_state, gather_disks
from aoeprov.resources.filesystem import mkfs_argv
from aoeprov.runner import Result, ShRunner
from aoeprov.spec import load_spec_text
from aoeprov.spec.model import FilesystemSpec, FsType
from tests.conftest import require_tools

SPEC = """
version: 1
hosts:
  - {name: db1, roles: [initiator], interfaces: [eth0]}
disks:
  - {name: whole, host: db1, shelf: 1, slot: 1}
  - {name: parted, host: db1, shelf: 1, slot: 2, table: dos}
partitions:
  - {name: parted1, disk: parted, number: 1, type: "83", size: rest}
filesystems:
  - {name: db, device: whole, type: ext4, label: db}
  - {name: data, device: parted1, type: ext3}
"""


def _contexts(tmp_path: Path, images: dict[str, Path]) -> tuple[GatherContext, PlanContext]:
    spec = load_spec_text(SPEC)
    me = spec.host("db1")
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    device_map = {k: str(v) for k, v in images.items()}
    gctx = GatherContext(Host(root=root), spec, me, device_map)
    return (replace(gctx, disks=gather_disks(gctx)),   # as the reconciler hands them over
            PlanContext(spec, me, sandboxed=True, device_map=device_map))


def _image(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.truncate(32 << 20)
    return path


@pytest.mark.tools
def test_blank_images_plan_partition_and_mkfs(tmp_path: Path) -> None:
    require_tools("sfdisk", "blkid", "wipefs", "losetup")
    whole, parted = _image(tmp_path, "whole.img"), _image(tmp_path, "parted.img")
    gctx, pctx = _contexts(tmp_path, {"whole": whole, "e1.2": parted})
    state = State("db1")
    pfacts = partition.gather(gctx)
    assert pfacts.disk("parted") is not None and pfacts.disk("parted").mapped_kind == "file"
    pplan = partition.plan(pctx, pfacts, state)
    assert [a.op.value for a in pplan.actions] == ["create", "create", "wait"]
    assert pplan.actions[0].argv == ("sfdisk", str(parted))  # type: ignore[attr-defined]
    fplan = filesystem.plan(pctx, filesystem.gather(gctx), state)
    argvs = [a.argv for a in fplan.actions]  # type: ignore[attr-defined]
    assert argvs[0] == ("mkfs.ext4", "-L", "db", str(whole))
    assert not fplan.actions[0].provisional
    assert fplan.actions[1].provisional   # the new partition is probed once it is reachable


@pytest.mark.tools
def test_existing_filesystem_is_found_and_left_alone(tmp_path: Path) -> None:
    require_tools("mkfs.ext4", "blkid", "wipefs")
    whole, parted = _image(tmp_path, "whole.img"), _image(tmp_path, "parted.img")
    subprocess.run(["mkfs.ext4", "-q", "-L", "db", str(whole)], check=True)
    gctx, pctx = _contexts(tmp_path, {"whole": whole, "parted": parted})
    facts = filesystem.gather(gctx)
    dev = facts.device("db")
    assert dev is not None and dev.probe is not None
    assert dev.probe.fstype == "ext4" and dev.probe.label == "db"
    state = State("db1")
    partition.plan(pctx, partition.gather(gctx), state)
    plan = filesystem.plan(pctx, facts, state)
    assert [n.target for n in plan.noops] == ["/dev/etherd/e1.1"]
    assert "ext4 filesystem labelled 'db' already there" in plan.noops[0].reason


@pytest.mark.tools
def test_image_with_a_filesystem_is_not_partitioned(tmp_path: Path) -> None:
    require_tools("mkfs.xfs", "blkid", "wipefs", "sfdisk")
    whole, parted = _image(tmp_path, "whole.img"), _image(tmp_path, "parted.img")
    with parted.open("r+b") as fh:
        fh.truncate(300 << 20)   # mkfs.xfs wants at least 300 MiB
    subprocess.run(["mkfs.xfs", "-q", "-L", "keep", str(parted)], check=True)
    gctx, pctx = _contexts(tmp_path, {"whole": whole, "parted": parted})
    plan = partition.plan(pctx, partition.gather(gctx), State("db1"))
    (action,) = plan.actions
    assert action.destructive and action.requires_allow
    assert "xfs filesystem labelled 'keep'" in action.data_loss


def test_mkfs_force_flag_only_when_asked() -> None:
    fs = FilesystemSpec("x", "d", FsType.XFS, label="x", mkfs_options=("-m", "crc=1"))
    assert mkfs_argv(fs, "/dev/x", force=False) == ("mkfs.xfs", "-L", "x", "-m", "crc=1", "/dev/x")
    assert mkfs_argv(fs, "/dev/x", force=True)[:2] == ("mkfs.xfs", "-f")
    ext = FilesystemSpec("y", "d", FsType.EXT3)
    assert mkfs_argv(ext, "/dev/y", force=True) == ("mkfs.ext3", "-F", "/dev/y")


@pytest.mark.tools
def test_a_read_table_spares_the_whole_disk_probe_but_never_counts_as_blank(
        tmp_path: Path) -> None:
    require_tools("sfdisk", "blkid", "wipefs")
    whole, parted = _image(tmp_path, "whole.img"), _image(tmp_path, "parted.img")
    for image in (whole, parted):   # the same dos table on both
        subprocess.run(["sfdisk", "--quiet", str(image)], input="label: dos\ntype=83\n",
                       text=True, check=True, capture_output=True)
    gctx, _ = _contexts(tmp_path, {"whole": whole, "parted": parted})
    pfacts = partition.gather(gctx)
    parted_facts = pfacts.disk("parted")
    assert parted_facts is not None and parted_facts.table is not None
    assert parted_facts.probe is None     # planning decides by the table alone
    state = disk_state(parted_facts)
    assert state.signatures == ("dos",) and not state.blank
    # "whole" has a filesystem on the whole disk in the spec: probed, and never mkfs'd blind
    dev = filesystem.gather(gctx).device("db")
    assert dev is not None and dev.probe is not None and "dos" in dev.probe.signatures


@dataclass
class CountingRunner:
    """The real runner, counting the commands it ran."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, argv: Sequence[str], **kwargs: Any) -> Result:
        self.calls.append(tuple(argv))
        return ShRunner().run(argv, **kwargs)


@pytest.mark.tools
def test_one_round_reads_each_disk_once_for_both_kinds(tmp_path: Path) -> None:
    """The reconciler gathers block devices once and hands them to partition and filesystem."""
    require_tools("sfdisk", "blkid", "wipefs", "losetup")
    whole, parted = _image(tmp_path, "whole.img"), _image(tmp_path, "parted.img")
    root = tmp_path / "root"
    root.mkdir()
    runner = CountingRunner()
    engine = Reconciler(spec=load_spec_text(SPEC), host=Host(root=root, runner=runner),
                        host_name="db1", kinds=("partition", "filesystem"),
                        device_map={"whole": str(whole), "parted": str(parted)})
    for round_ in (1, 2):
        facts = engine.gather()
        assert facts["partition"].disk("parted").exists
        assert facts["filesystem"].device("db").present
        tables = [c[-1] for c in runner.calls if c[:2] == ("sfdisk", "--json")]
        assert sorted(tables) == sorted([str(whole), str(parted)] * round_)
        assert sum(c[0] == "losetup" for c in runner.calls) == round_


def test_filesystem_size_parsers() -> None:
    """Captured from dumpe2fs 1.47 and xfs_info 6.1 on Debian 12."""
    from aoeprov.resources.filesystem import parse_dumpe2fs, parse_xfs_info

    ext = "Filesystem volume name:   <none>\nBlock count:              65536\n" \
          "Reserved block count:     3276\nBlock size:               1024\n"
    assert parse_dumpe2fs(ext) == 64 << 20
    xfs = ("meta-data=d2x.img                isize=512    agcount=4, agsize=20480 blks\n"
           "         =                       sectsz=512   attr=2, projid32bit=1\n"
           "data     =                       bsize=4096   blocks=81920, imaxpct=25\n"
           "naming   =version 2              bsize=4096   ascii-ci=0, ftype=1\n")
    assert parse_xfs_info(xfs) == 320 << 20
    assert parse_dumpe2fs("dumpe2fs: Bad magic number\n") is None
    assert parse_xfs_info("") is None
