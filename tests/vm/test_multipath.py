"""Multipath with the kernel initiator: one built-in target on two NICs, an initiator
with two NICs and ``aoe_iflist`` naming both (issue 12).

The lab puts each host's eth0 on one bridge and eth1 on another, so there are two
independent paths. Pulling the cable of one (``ip link set down`` on the target's
eth1 tap) must cost writes nothing but the retransmission delay, and the initiator
must use both paths again once it is back.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from aoeprov.lab.up import guest_aoeprov
from tests.vm.conftest import REPO, TutorialLab, boot_tutorial
from tests.vm.test_tutorial_builtin import CHECKER, WRITER

pytestmark = pytest.mark.vm
LOG = logging.getLogger(__name__)

MULTIPATH = REPO / "examples" / "multipath.yaml"


@pytest.fixture(scope="module")
def multipath(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TutorialLab]:
    # a small disk: mkfs under emulation is most of a converge's time
    yield from boot_tutorial(tmp_path_factory.mktemp("lab-multipath"), spec=MULTIPATH,
                             size="256M")


def aoe_stat_row(lab: TutorialLab) -> list[str]:
    out = lab.run(lab.initiator, "aoe-stat")
    (row,) = [line.split() for line in out.splitlines() if line.split()[:1] == ["e0.1"]]
    return row


def read_through_both_paths(lab: TutorialLab, megabytes: int = 16) -> tuple[int, int]:
    """Bytes each of the target's two paths carried during a direct read of the disk."""
    before = [lab.sent_bytes(lab.target, nic) for nic in (0, 1)]
    lab.run(lab.initiator, "dd", "if=/dev/etherd/e0.1", "of=/dev/null", "bs=1M",
            f"count={megabytes}", "iflag=direct")
    after = [lab.sent_bytes(lab.target, nic) for nic in (0, 1)]
    return after[0] - before[0], after[1] - before[1]


def test_the_initiator_sees_two_paths(multipath: TutorialLab) -> None:
    lab = multipath
    row = aoe_stat_row(lab)
    # the driver lists a device's interfaces in the order it found paths on them
    assert sorted(row[2].split(",")) == ["eth0", "eth1"] and row[-1] == "up", row
    netif = lab.run(lab.initiator, "cat", "/sys/block/etherd!e0.1/netif").strip()
    assert sorted(netif.split(",")) == ["eth0", "eth1"], netif
    # the driver's own table: one aoetgt per target MAC, each with its interface
    lab.run(lab.initiator, "sh", "-c", "mountpoint -q /sys/kernel/debug || "
            "mount -t debugfs debugfs /sys/kernel/debug")
    table = lab.run(lab.initiator, "cat", "/sys/kernel/debug/aoe/e0.1")
    target = lab.lab.vm(lab.target)
    for nic in (0, 1):
        assert target.nic_mac(nic).replace(":", "") in table, table
    # both target NICs answer for e0.1, with the same identity: multipath, not a conflict
    probe = json.loads(lab.run(lab.initiator, *probe_argv()))
    assert probe["conflicts"] == [] and len(probe["multipath"]) == 1
    assert sorted(probe["multipath"][0]["macs"]) == [
        lab.lab.vm(lab.target).nic_mac(0), lab.lab.vm(lab.target).nic_mac(1)]
    first, second = read_through_both_paths(lab)
    LOG.info("a 16 MiB read: %d bytes through eth0, %d through eth1", first, second)
    assert first > 1 << 20 and second > 1 << 20


def probe_argv() -> tuple[str, ...]:
    return (sys.executable, "-m", "aoeprov", "probe", "-i", "eth0", "-i", "eth1", "--json",
            "--timeout", "1")


def test_writes_survive_a_pulled_link_and_both_paths_come_back(multipath: TutorialLab) -> None:
    lab = multipath
    result: dict[str, str] = {}

    def write() -> None:
        result["out"] = lab.run(lab.initiator, "python3", "-c", WRITER, "/storage/paths.bin",
                                "/var/tmp/paths.acks", "20", timeout=400)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        lab.run(lab.target, "sleep", "6")
        lab.lab.set_link(lab.target, 1, up=False)  # the cable of the target's eth1
        lab.run(lab.target, "sleep", "6")
        lab.lab.set_link(lab.target, 1, up=True)
    finally:
        lab.lab.set_link(lab.target, 1, up=True)
        writer.join(timeout=500)
    records, slowest = result["out"].split()
    LOG.info("%s acknowledged writes across the pulled link, slowest %ss", records, slowest)
    assert int(records) > 20
    lab.run(lab.initiator, "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches")
    bad = lab.run(lab.initiator, "python3", "-c", CHECKER, "/storage/paths.bin",
                  "/var/tmp/paths.acks")
    assert bad.startswith("0 "), f"acknowledged records lost: {bad}"
    # both paths again
    assert sorted(aoe_stat_row(lab)[2].split(",")) == ["eth0", "eth1"]
    first, second = read_through_both_paths(lab)
    LOG.info("after the link came back, a 16 MiB read: %d bytes through eth0, %d through eth1",
             first, second)
    # The path that came back carries frames again, but not yet its share: each timeout
    # while it was down set its window (maxout) to 1 and halved its ssthresh, and the
    # driver grows it back as TCP does, past ssthresh by one frame per window of answers
    # (calc_rttavg), so the first 16 MiB mostly go the other way (CI saw 320120 bytes
    # on the path that came back, 17057520 on the other). Equal shares are checked by
    # test_the_initiator_sees_two_paths.
    assert first > 1 << 20 and second >= 64 << 10, (first, second)


def test_a_second_target_for_e0_1_fails_its_unit(multipath: TutorialLab) -> None:
    """Under systemd a refused start is a failed unit, with the reason in the journal."""
    lab = multipath
    lab.run(lab.target, "truncate", "-s", "1M", "/var/tmp/dup.img")
    lab.run(lab.target, "systemd-run", "--unit=dup-target", "--wait", "--quiet",
            *guest_aoeprov("target", "--state-dir", "/var/tmp/dup-state", "0", "1", "eth0",
                           "/var/tmp/dup.img"), ok_codes=(1,))
    assert lab.run(lab.target, "systemctl", "is-failed", "dup-target.service",
                   ok_codes=(0,)).strip() == "failed"
    journal = lab.run(lab.target, "journalctl", "-u", "dup-target.service", "-o", "cat")
    pid = lab.run(lab.target, "systemctl", "show", "-P", "MainPID",
                  "aoeprov-target.service").strip()
    assert f"e0.1 is already served by pid {pid} on this host" in journal, journal
    assert "refusing to serve it (--force serves anyway)" in journal
    lab.run(lab.target, "systemctl", "reset-failed", "dup-target.service")
