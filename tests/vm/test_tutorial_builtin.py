"""The tutorial end to end on two real-kernel VMs, served by the built-in target (issue 5).

One lab for the module: ``aoeprov lab up`` converged server2 (LVM + built-in target)
and server1 (aoe, partition, ext3, fstab, mount). The reboot test runs last because
it is the slowest and leaves the same state behind.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import pytest

from aoeprov.lab.up import run_plan
from tests.vm.conftest import TutorialLab, measure_dd

pytestmark = pytest.mark.vm
LOG = logging.getLogger(__name__)

# Writes 4 KiB records for DURATION seconds, each fsync'ed before it is logged as
# acknowledged (in a file on the guest's local disk), and reports the slowest write.
WRITER = r"""
import os, sys, time
path, acks, duration = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
slowest, i, end = 0.0, 0, time.monotonic() + duration
with open(acks, "w") as log:
    while time.monotonic() < end:
        start = time.monotonic()
        os.pwrite(fd, f"record {i:06d} ".encode().ljust(4096, b"."), i * 4096)
        os.fsync(fd)
        slowest = max(slowest, time.monotonic() - start)
        log.write(f"{i}\n"); log.flush(); os.fsync(log.fileno())
        i += 1
print(i, round(slowest, 3))
"""

CHECKER = r"""
import sys
path, acks = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
bad = [i for i in map(int, open(acks).read().split())
       if data[i * 4096:(i + 1) * 4096] != f"record {i:06d} ".encode().ljust(4096, b".")]
print(len(bad), bad[:5])
"""


def assert_tutorial_view(lab: TutorialLab, payload: int) -> None:
    view = lab.report.views[lab.initiator]
    aoe_stat = [line.split() for line in view.splitlines() if line.strip().startswith("e0.1 ")]
    assert aoe_stat, view
    assert aoe_stat[0][2:5] == ["eth0", str(payload), "up"], view
    assert "Disklabel type: dos" in view
    assert any(line.startswith("/dev/etherd/e0.1p1") and line.split()[-1] == "Linux"
               and " 83 " in line for line in view.splitlines()), view
    assert "/dev/etherd/e0.1p1 on /storage type ext3" in view
    df = [line.split() for line in view.splitlines() if line.startswith("/dev/etherd/e0.1p1 ")
          and line.rstrip().endswith("/storage")]
    assert df, view


def test_tutorial_converges(tutorial_builtin: TutorialLab) -> None:
    lab = tutorial_builtin
    assert_tutorial_view(lab, payload=1024)
    lvs = lab.run(lab.target, "lvs", "--noheadings", "-o", "lv_name,vg_name,lv_size",
                  "--units", "g")
    assert lvs.split() == ["storage1", "vg0", "1.00g"]
    assert lab.run(lab.target, "systemctl", "is-active", "aoeprov-target.service").strip() \
        == "active"
    # the data path works both ways through ext3 on the AoE partition
    token = uuid.uuid4().hex
    lab.run(lab.initiator, "sh", "-c", f"echo {token} > /storage/token && sync")
    assert lab.run(lab.initiator, "cat", "/storage/token").strip() == token


def test_dd_builtin_target_and_vblade_side_by_side(
        tutorial_builtin: TutorialLab, record_property: Callable[[str, object], None]) -> None:
    """Same VMs, same LV, same initiator: the built-in target, then vblade in its place."""
    lab = tutorial_builtin
    builtin = measure_dd(lab)
    lab.run(lab.target, "systemctl", "stop", "aoeprov-target.service")
    try:
        lab.run(lab.target, "systemd-run", "--unit=lab-vblade", "vblade", "0", "1", "eth0",
                "/dev/vg0/storage1")
        vblade = measure_dd(lab)
    finally:
        lab.run(lab.target, "systemctl", "stop", "lab-vblade.service", ok_codes=(0, 5))
        lab.run(lab.target, "systemctl", "start", "aoeprov-target.service")
    for name, run in (("builtin", builtin), ("vblade", vblade)):
        record_property(f"{name}_read_mb_s", round(run.read_mb_s, 1))
        record_property(f"{name}_write_mb_s", round(run.write_mb_s, 1))
    LOG.info("dd side by side (MB/s): builtin read %.1f write %.1f; vblade read %.1f write %.1f",
             builtin.read_mb_s, builtin.write_mb_s, vblade.read_mb_s, vblade.write_mb_s)
    builtin.check()   # every byte asked for was copied, and what was written reads back
    vblade.check()


def test_second_apply_changes_nothing(tutorial_builtin: TutorialLab) -> None:
    for host in (tutorial_builtin.target, tutorial_builtin.initiator):
        rc, output = run_plan(tutorial_builtin.lab, host)
        assert rc == 0, output


def test_target_restart_during_writes(tutorial_builtin: TutorialLab) -> None:
    lab = tutorial_builtin
    result: dict[str, str] = {}

    def write() -> None:
        result["out"] = lab.run(lab.initiator, "python3", "-c", WRITER, "/storage/restart.bin",
                                "/var/tmp/restart.acks", "25", timeout=400)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # the writer runs for 25 s (after ~2-5 s of Python start-up): take the target
        # away for a few seconds in the middle of it
        lab.run(lab.target, "sleep", "8")
        lab.run(lab.target, "systemctl", "stop", "aoeprov-target.service")
        lab.run(lab.target, "sleep", "3")
        lab.run(lab.target, "systemctl", "start", "aoeprov-target.service")
    finally:
        writer.join(timeout=500)
    records, slowest = result["out"].split()
    assert int(records) > 20
    assert float(slowest) >= 1.0, "no write waited for the target: the restart missed the writer"
    # read back from the target, not from the page cache
    lab.run(lab.initiator, "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches")
    bad = lab.run(lab.initiator, "python3", "-c", CHECKER, "/storage/restart.bin",
                  "/var/tmp/restart.acks")
    assert bad.startswith("0 "), f"acknowledged records lost: {bad}"


def test_initiator_reboot_remounts_storage(tutorial_builtin: TutorialLab) -> None:
    lab = tutorial_builtin
    token = uuid.uuid4().hex * 64
    lab.run(lab.initiator, "sh", "-c", "cat > /storage/reboot.txt && sync", stdin=token)
    lab.lab.reboot(lab.initiator)
    # how long boot waited for the AoE disk: the initiator unit's start to /storage mounted
    times = lab.run(lab.initiator, "systemctl", "show", "-P", "ExecMainStartTimestampMonotonic",
                    "aoeprov-initiator.service")
    mounted = lab.run(lab.initiator, "systemctl", "show", "-P", "ActiveEnterTimestampMonotonic",
                      "storage.mount")
    LOG.info("boot: initiator unit start to /storage mounted: %.2fs",
             (int(mounted) - int(times)) / 1e6)
    assert lab.run(lab.initiator, "findmnt", "-n", "-o", "SOURCE,FSTYPE", "/storage").split() \
        == ["/dev/etherd/e0.1p1", "ext3"]
    assert lab.run(lab.initiator, "cat", "/storage/reboot.txt") == token
    assert lab.run(lab.initiator, "test", "-e", "/etc/rc.local", ok_codes=(1,)) == ""
