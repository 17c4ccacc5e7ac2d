"""LVM report parsers and image file facts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aoeprov.errors import CommandNotFound, PlanError
from aoeprov.host import Host
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.resources import backing
from aoeprov.resources.backing import (
    round_to_extent,
)
from aoeprov.spec import load_spec, load_spec_text
from tests.unit.reconciler.fakes import REPO, FakeRunner, make_host


def test_sizes_round_up_to_whole_extents() -> None:
    assert round_to_extent(1000 << 20, 32 << 20) == 1024 << 20
    assert round_to_extent(20 << 30, 4 << 20) == 20 << 30


SPEC = """
version: 1
hosts: [{name: s, roles: [target], interfaces: [eth0]}]
targets:
  - {name: sparse, host: s, file: {path: /srv/aoe/sparse.img, size: 64M}}
  - {name: full, host: s, file: {path: /srv/aoe/full.img, size: 8M, allocation: preallocated}}
"""


def _plan(root: Path) -> tuple[backing.BackingFacts, list[tuple[str, ...]]]:
    spec = load_spec_text(SPEC)
    me = spec.host("s")
    facts = backing.gather(GatherContext(Host(root=root), spec, me))
    plan = backing.plan(PlanContext(spec, me, sandboxed=True), facts, State("s"))
    return facts, [getattr(a, "argv", ()) for a in plan.actions]


def test_image_files_under_root(tmp_path: Path) -> None:
    facts, argvs = _plan(tmp_path)
    assert [f.parent_exists for f in facts.files] == [False, False]
    assert argvs[1] == ("truncate", "-s", str(64 << 20), str(tmp_path / "srv/aoe/sparse.img"))
    assert argvs[2] == ("fallocate", "-l", str(8 << 20), str(tmp_path / "srv/aoe/full.img"))


def test_image_file_facts_see_holes(tmp_path: Path) -> None:
    (tmp_path / "srv/aoe").mkdir(parents=True)
    with (tmp_path / "srv/aoe/sparse.img").open("wb") as fh:
        fh.truncate(64 << 20)
    with (tmp_path / "srv/aoe/full.img").open("wb") as fh:
        fh.truncate(8 << 20)   # right size, but all holes: preallocation is owed
    facts, argvs = _plan(tmp_path)
    assert facts.files[0].exists and facts.files[0].size == 64 << 20
    assert facts.files[1].allocated < facts.files[1].size
    assert argvs == [("fallocate", "-l", str(8 << 20), str(tmp_path / "srv/aoe/full.img"))]


def test_image_file_shrink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "srv/aoe").mkdir(parents=True)
    with (tmp_path / "srv/aoe/sparse.img").open("wb") as fh:
        fh.truncate(65 << 20)
    with pytest.raises(PlanError, match="never shrinks"):
        _plan(tmp_path)


def test_a_directory_in_the_way_is_an_error(tmp_path: Path) -> None:
    os.makedirs(tmp_path / "srv/aoe/sparse.img")
    with pytest.raises(PlanError, match="not a regular file"):
        _plan(tmp_path)


def test_lvm_tools_missing_are_a_fact_not_a_crash(tmp_path: Path) -> None:
    def not_installed(argv: tuple[str, ...]) -> None:
        raise CommandNotFound(argv)
    spec = load_spec(REPO / "examples/tutorial.yaml")
    me = spec.host("server2")
    runner = FakeRunner(effects={"vgs": not_installed, "lvs": not_installed})
    facts = backing.gather(GatherContext(make_host(tmp_path, runner), spec, me))
    assert facts.lvm_missing == "lvm not available: vgs is not installed (package lvm2)"
    assert facts.vgs == () and facts.lvs == ()


def test_image_file_doubts_are_gathered(tmp_path: Path) -> None:
    """Text, a package's file (dpkg's lists under --root), a symlink into /etc."""
    (tmp_path / "srv/aoe").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "srv/aoe/sparse.img").write_text("# notes, not a disk\n")
    (tmp_path / "srv/aoe/full.img").symlink_to("/etc/passwd")   # inside the root
    (tmp_path / "var/lib/dpkg/info").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/info/base-files.list").write_text("/.\n/etc\n/etc/passwd\n")
    (tmp_path / "var/lib/dpkg/info/notes:all.list").write_text("/srv/aoe/sparse.img\n")
    spec = load_spec_text(SPEC)
    me = spec.host("s")
    facts = backing.gather(GatherContext(Host(root=tmp_path), spec, me))
    sparse, full = facts.files
    assert (sparse.text, sparse.package, sparse.size, sparse.real_path) == (True, "notes", 20, "")
    assert (full.text, full.package, full.real_path) == (True, "base-files", "/etc/passwd")
    with pytest.raises(PlanError) as err:
        backing.plan(PlanContext(spec, me, sandboxed=True), facts, State("s"))
    assert str(err.value) == (
        "target sparse: /srv/aoe/sparse.img exists and does not look like a disk image: it is "
        "20 bytes, less than one 512-byte sector; it holds text (no NUL byte in its first 64 "
        "KiB); package notes owns it. Exporting it lets initiators overwrite it; if it really "
        "is the image, say adopt: true for it in the spec")


def test_commands_act_on_the_link_target_inside_the_root(tmp_path: Path) -> None:
    """/srv/aoe/sparse.img -> /data/sparse.img: truncate gets ROOT/data/sparse.img, never the
    real machine's /data/sparse.img."""
    (tmp_path / "srv/aoe").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    with (tmp_path / "data/sparse.img").open("wb") as fh:
        fh.truncate(1 << 20)
    (tmp_path / "srv/aoe/sparse.img").symlink_to("/data/sparse.img")
    facts, argvs = _plan(tmp_path)
    assert facts.files[0].real_path == "/data/sparse.img"
    assert ("truncate", "-s", str(64 << 20), str(tmp_path / "data/sparse.img")) in argvs
