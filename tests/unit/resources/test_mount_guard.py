"""A mount point that symlinks on the host lead into a system directory is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from aoeprov.errors import HostFileError, PlanError
from aoeprov.host import Host
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.resources import mount
from tests.unit.reconciler.fakes import FakeRunner, tutorial


def gather(root: Path) -> mount.MountFacts:
    spec = tutorial()
    host = Host(root=root, runner=FakeRunner(), hostname="server1")
    return mount.gather(GatherContext(host=host, spec=spec, me=spec.host("server1")))


def test_a_mount_point_symlinked_into_etc_is_refused(tmp_path: Path) -> None:
    """Under --root the link is followed inside the root (chroot-style), then refused."""
    (tmp_path / "etc/aoe").mkdir(parents=True)
    (tmp_path / "storage").symlink_to("/etc/aoe")
    facts = gather(tmp_path)
    assert facts.redirected == {"/storage": "/etc/aoe"}
    spec = tutorial()
    with pytest.raises(PlanError) as err:
        mount.plan(PlanContext(spec=spec, me=spec.host("server1"), sandboxed=True), facts,
                   State("server1"))
    assert str(err.value) == ("mount /storage: it is a symbolic link to /etc/aoe, which is "
                              "inside the system directory /etc; mounting there would hide it "
                              "(remove the link and apply again)")


def test_a_mount_point_linked_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "storage").symlink_to("../../../../../../../../etc")
    with pytest.raises(HostFileError) as err:
        gather(tmp_path)
    assert str(err.value) == (f"/storage: leads out of the root {tmp_path} (through `..`); "
                              "aoeprov does not follow it")


def test_a_plain_directory_is_not_redirected(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    assert gather(tmp_path).redirected == {}
