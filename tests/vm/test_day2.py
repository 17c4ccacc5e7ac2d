"""Day 2 on real kernels (issue 10): grow, then remove, on one lab of the tutorial's two hosts.

The LV behind the export grows in the spec: apply on the target grows it and reloads the
built-in target, apply on the initiator re-identifies the device, grows partition 1 in
place and the mounted ext3 online; the data reads back and the mount never went away.
Then the export leaves the spec, and the initiator with it (a host decommissioned by
deleting it): a plan without --prune changes nothing (exit 0, "-" lines), apply --prune on
both hosts unmounts, removes the fstab line and the initiator unit, stops the target; the
LV is still there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml

from aoeprov.lab.up import GUEST_SPEC, apply_host, guest_aoeprov, run_plan
from tests.vm.conftest import TutorialLab

pytestmark = pytest.mark.vm


def set_spec(lab: TutorialLab, doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, sort_keys=False)
    for host in (lab.target, lab.initiator):
        lab.run(host, "tee", GUEST_SPEC, stdin=text)


def storage_mount(lab: TutorialLab) -> list[str]:
    lines = lab.run(lab.initiator, "cat", "/proc/self/mountinfo").splitlines()
    return [line for line in lines if line.split()[4] == "/storage"]


def size_of(lab: TutorialLab, path: str) -> int:
    return int(lab.run(lab.initiator, "df", "-B1", "--output=size", path).split()[-1])


def test_grow_online_then_prune(tutorial_builtin: TutorialLab) -> None:
    lab = tutorial_builtin
    doc = yaml.safe_load((lab.lab.state_dir / "spec.yaml").read_text())
    token = uuid.uuid4().hex
    lab.run(lab.initiator, "sh", "-c", f"echo {token} > /storage/day2 && sync")
    mounted, before = storage_mount(lab), size_of(lab, "/storage")

    # --- grow: the LV doubles; target, then initiator --------------------------------
    doc["targets"][0]["lvm"]["size"] = "2G"
    set_spec(lab, doc)
    _, out = apply_host(lab.lab, lab.target)
    assert "grow logical volume vg0/storage1" in out and "reload" in out, out
    _, out = apply_host(lab.lab, lab.initiator)
    assert "grow partition 1 in place" in out and "grow the ext3 filesystem online" in out, out
    # online: the same mount all along (its id and device; its options show the new size)
    assert [m.split()[:5] for m in storage_mount(lab)] == [m.split()[:5] for m in mounted]
    assert size_of(lab, "/storage") > 1.8 * before
    assert lab.run(lab.initiator, "cat", "/storage/day2").strip() == token
    for host in (lab.target, lab.initiator):
        rc, out = run_plan(lab.lab, host)
        assert rc == 0, f"{host} not converged after the grow:\n{out}"

    # --- remove the export and the initiator's use of it: server1 leaves the spec ------
    for key in ("exports", "disks", "partitions", "filesystems", "mounts"):
        doc.pop(key, None)
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] != lab.initiator]
    set_spec(lab, doc)
    rc, out = run_plan(lab.lab, lab.target)        # without --prune: "-" lines, exit 0
    assert rc == 0 and "- export e0.1: stop exporting" in out and "--prune" in out, out
    rc, out = run_plan(lab.lab, lab.initiator, ("--prune",))
    assert rc == 2 and "- mount /storage: unmount" in out, out
    assert storage_mount(lab)                     # planning changed nothing
    for host in (lab.initiator, lab.target):      # unmount before the export goes
        lab.run(host, *guest_aoeprov("apply", GUEST_SPEC, "--host", host, "--prune"),
                timeout=600)
    assert storage_mount(lab) == []
    assert "x-aoeprov" not in lab.run(lab.initiator, "cat", "/etc/fstab")
    assert lab.run(lab.initiator, "systemctl", "is-enabled", "aoeprov-initiator.service",
                   ok_codes=(0, 1)).strip() != "enabled"
    assert lab.run(lab.target, "systemctl", "is-active", "aoeprov-target.service",
                   ok_codes=(0, 3)).strip() != "active"
    lvs = lab.run(lab.target, "lvs", "--noheadings", "-o", "lv_name,lv_size", "--units", "g")
    assert lvs.split() == ["storage1", "2.00g"]   # the data is kept
    for host in (lab.target, lab.initiator):
        rc, out = run_plan(lab.lab, host, ("--prune",))
        assert rc == 0, f"{host} not converged after the prune:\n{out}"
