"""Rehearsing the tutorial under --root without its disk (no --device, no discovery here).

``plan`` shows the whole provisional plan; ``apply`` stops at the first thing that
cannot happen in the sandbox with an error saying how to rehearse, instead of
waiting out a device timeout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aoeprov.cli import main
from tests.unit.reconciler.fakes import REPO

TUTORIAL = str(REPO / "examples" / "tutorial.yaml")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def plan_json(capsys: pytest.CaptureFixture[str], host: str, root: Path) -> dict[str, Any]:
    rc, out, err = run_cli(capsys, "plan", TUTORIAL, "--host", host, "--root", str(root),
                           "--json", "--detailed-exitcode")
    assert rc == 2, err
    plan: dict[str, Any] = json.loads(out)
    return plan


def test_initiator_plan_without_the_disk_is_whole_and_provisional(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    actions = plan_json(capsys, "server1", tmp_path)["actions"]
    steps = [(a["kind"], a["type"], a["provisional"]) for a in actions]
    assert [k for k, _, _ in steps] == [
        "module", "module", "discovery", "partition", "partition", "partition", "filesystem",
        "fstab", "mount", "mount", "boot", "boot"]
    wait = actions[2]
    assert wait["type"] == "WaitForDevice" and wait["target"] == "/dev/etherd/e0.1"
    assert "run with --device e0.1=IMAGE to rehearse on an image" in wait["unavailable"]
    device_dependent = [a for a in actions if a["kind"] in ("partition", "filesystem")
                        or (a["type"] == "RunCommand" and a["kind"] == "mount")]
    assert all(a["provisional"] for a in device_dependent)
    assert not any(a["provisional"] for a in actions
                   if a["kind"] in ("module", "discovery", "fstab", "boot"))
    assert actions[3]["stdin"] == "label: dos\nstart=2048, type=83\n"
    assert actions[6]["argv"] == ["mkfs.ext3", "/dev/etherd/e0.1p1"]
    assert "/dev/etherd/e0.1p1\t/storage\text3" in actions[7]["content"]


def test_initiator_apply_without_the_disk_stops_at_the_wait(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "apply", TUTORIAL, "--host", "server1", "--root", str(tmp_path))
    assert rc == 1
    assert ("cannot wait for /dev/etherd/e0.1: --root gives a sandbox without AoE discovery; "
            "run with --device e0.1=IMAGE to rehearse on an image") in err
    assert (tmp_path / "etc/modules").exists()      # planned before the wait: done
    assert not (tmp_path / "etc/fstab").exists()    # after it: never reached


@pytest.mark.tools
def test_target_plan_without_the_volume_group_shows_the_volume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    actions = plan_json(capsys, "server2", tmp_path)["actions"]
    lv = actions[0]
    assert (lv["kind"], lv["target"], lv["provisional"]) == ("backing", "/dev/vg0/storage1", True)
    assert lv["argv"] == ["lvcreate", "--yes", "-L", "21474836480b", "-n", "storage1", "vg0"]
    # this machine has no vg0: either LVM's tools are missing or the group is
    assert "lvm not available" in lv["summary"] or "'vg0' does not exist" in lv["summary"]
    assert {a["kind"] for a in actions[1:]} == {"export"}


@pytest.mark.tools
def test_target_apply_without_the_volume_group_fails_before_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "apply", TUTORIAL, "--host", "server2", "--root", str(tmp_path))
    assert rc == 1 and "cannot decide backing /dev/vg0/storage1 on this run" in err
    assert not (tmp_path / "etc/aoeprov/target.json").exists()
