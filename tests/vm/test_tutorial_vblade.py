"""The tutorial served by Debian's vblade inside the target VM, on a 9000-byte MTU (issue 5).

One lab for the module, booted with ``--export-server vblade --mtu 9000``: the same
spec converges with the other server, and jumbo frames carry 17 sectors (8704 bytes)
per AoE frame.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aoeprov.lab.up import run_plan
from tests.vm.conftest import TutorialLab, measure_dd
from tests.vm.test_tutorial_builtin import assert_tutorial_view

pytestmark = pytest.mark.vm


def test_tutorial_with_vblade(tutorial_vblade_jumbo: TutorialLab) -> None:
    lab = tutorial_vblade_jumbo
    assert_tutorial_view(lab, payload=8704)
    procs = lab.run(lab.target, "ps", "-eo", "comm,args", "--no-headers")
    assert any(line.split()[0] == "vblade" and "/dev/vg0/storage1" in line
               for line in procs.splitlines()), procs


def test_jumbo_frames_payload(tutorial_vblade_jumbo: TutorialLab) -> None:
    lab = tutorial_vblade_jumbo
    assert lab.run(lab.initiator, "cat", "/sys/block/etherd!e0.1/payload").strip() == "8704"
    assert lab.run(lab.initiator, "cat", "/sys/class/net/eth0/mtu").strip() == "9000"
    # a transfer larger than one frame goes through
    out = lab.run(lab.initiator, "sh", "-c",
                  "head -c 1048576 /dev/urandom > /var/tmp/jumbo && "
                  "cp /var/tmp/jumbo /storage/jumbo && sync && "
                  "echo 3 > /proc/sys/vm/drop_caches && cmp /var/tmp/jumbo /storage/jumbo "
                  "&& echo same")
    assert out.strip() == "same"


def test_dd_through_vblade(tutorial_vblade_jumbo: TutorialLab,
                           record_property: Callable[[str, object], None]) -> None:
    run = measure_dd(tutorial_vblade_jumbo)
    record_property("read_mb_s", round(run.read_mb_s, 1))
    record_property("write_mb_s", round(run.write_mb_s, 1))
    run.check()   # every byte asked for was copied, and what was written reads back


def test_second_apply_changes_nothing_with_vblade(tutorial_vblade_jumbo: TutorialLab) -> None:
    for host in (tutorial_vblade_jumbo.target, tutorial_vblade_jumbo.initiator):
        rc, output = run_plan(tutorial_vblade_jumbo.lab, host)
        assert rc == 0, output
