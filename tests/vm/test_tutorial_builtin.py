"""The tutorial end to end on two real-kernel VMs, served by the built-in target (issue 5),
then its day 2 (issue 10).

One lab for the module (a boot and the tutorial's convergence cost minutes under
emulation): ``aoeprov lab up`` converged server2 (LVM + built-in target) and server1
(aoe, partition, ext3, fstab, mount). The tests run in file order: the reboot test
leaves the tutorial's state behind, and the day-2 test, last, grows and then removes
everything.

Day 2: the LV behind the export grows in the spec: apply on the target grows it and
reloads the built-in target, apply on the initiator re-identifies the device, grows
partition 1 in place and the mounted ext3 online; the data reads back and the mount
never went away. Then the export leaves the spec, and the initiator with it (a host
decommissioned by deleting it): a plan without --prune changes nothing (exit 0, "-"
lines), apply --prune on both hosts unmounts, removes the fstab line and the initiator
unit, stops the target; the LV is still there.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from aoeprov.lab.up import GUEST_SPEC, apply_host, guest_aoeprov, run_plan
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

# Bytes the initiator sends before the target is taken away: each record is a 4 KiB write
# and a journal commit, so this is some 20 records in.
WRITTEN_BEFORE_RESTART = 256 << 10

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

    before = lab.sent_bytes(lab.initiator)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        # the writer runs for 25 s once its Python has started (2-5 s, more on a busy
        # machine): take the target away once it has written a while (watched from this
        # machine: the initiator's control channel is the writer's until it ends)
        deadline = time.monotonic() + 120
        while lab.sent_bytes(lab.initiator) - before < WRITTEN_BEFORE_RESTART:
            assert writer.is_alive() and time.monotonic() < deadline, result
            time.sleep(0.5)
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


# -- day 2: runs last, it removes what the tutorial built ---------------------------------

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
