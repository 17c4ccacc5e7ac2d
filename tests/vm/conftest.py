"""Fixtures of the vm tier: labs of real-kernel VMs, booted once per module.

A lab is expensive (a boot is ~25-50 s under emulation), so each test module boots
one and its tests share it; every test leaves the lab as the tutorial left it
(files it writes have names of their own). Labs live in their own state directory
and network namespace, so they never meet a lab a user started, and are always
torn down, even when a test fails. Console logs stay in pytest's tmp directory.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aoeprov.lab.lab import Lab
from aoeprov.lab.up import UpReport, up
from aoeprov.spec import Spec, load_spec
from tests.conftest import require_root, require_tools

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial.yaml"
LAB_TOOLS = ("qemu-system-x86_64", "ip", "mkfs.ext4", "apt-get", "dpkg-deb", "depmod")


@dataclass
class TutorialLab:
    lab: Lab
    report: UpReport
    spec: Spec
    target: str = "server2"
    initiator: str = "server1"

    def run(self, host: str, *argv: str, timeout: float = 300.0,
            ok_codes: tuple[int, ...] = (0,), stdin: str | None = None) -> str:
        return self.lab.run(host, argv, ok_codes=ok_codes, timeout=timeout, stdin=stdin).stdout

    def sent_bytes(self, host: str, nic: int = 0) -> int:
        """Bytes ``host``'s NIC ``nic`` has sent (its tap received), read on this machine:
        it needs no command in the guest, whose control channel runs one at a time."""
        v = self.lab.vm(host)
        out = self.lab.runner.run(("ip", "-n", self.lab.network.netns, "-s", "-j", "link",
                                   "show", "dev", v.taps[nic])).stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["bytes"])


def boot_tutorial(tmp: Path, *, mtu: int = 1500, server: str | None = None,
                  spec: Path = TUTORIAL, size: str = "1G") -> Iterator[TutorialLab]:
    require_root("the vm tier")
    require_tools(*LAB_TOOLS)
    lab = Lab(tmp / "lab", progress=lambda msg: LOG.info("%s", msg))
    # qemu daemonizes: a run stopped with SIGTERM (a CI timeout) must still tear the lab
    # down, so SIGTERM unwinds like Ctrl-C and pytest runs this fixture's teardown
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = up(lab, spec, mtu=mtu, sizes={"storage1": size}, export_server=server)
        yield TutorialLab(lab, report, load_spec(lab.state_dir / "spec.yaml"))
    finally:
        lab.down()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def tutorial_builtin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TutorialLab]:
    yield from boot_tutorial(tmp_path_factory.mktemp("lab-builtin"))


@pytest.fixture(scope="module")
def tutorial_vblade_jumbo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TutorialLab]:
    """The tutorial served by Debian's vblade, on a 9000-byte MTU network."""
    yield from boot_tutorial(tmp_path_factory.mktemp("lab-vblade"), mtu=9000, server="vblade")


@dataclass(frozen=True)
class DdRun:
    """One dd round on the initiator: correctness figures (asserted) and rates (logged)."""

    asked: int               # bytes each dd was asked to copy
    read: int                # bytes dd read from the raw AoE disk
    written: int             # bytes dd wrote to a file on /storage
    records: tuple[str, ...]  # dd's "N+M records in/out" lines: M partial records
    source_md5: str          # of the random data written
    read_back_md5: str       # of the file read back through AoE after dropping the caches
    read_mb_s: float
    write_mb_s: float

    def check(self) -> None:
        assert self.read == self.asked and self.written == self.asked, self
        whole = f"{self.asked >> 20}+0"
        assert all(r.startswith(whole) for r in self.records), self.records
        assert self.read_back_md5 == self.source_md5, self


def dd_copied(stderr: str) -> tuple[int, float, tuple[str, ...]]:
    """GNU dd's summary: (bytes copied, seconds, its records lines)."""
    lines = stderr.strip().splitlines()
    # "33554432 bytes (34 MB, 32 MiB) copied, 1.5 s, 22.4 MB/s"
    fields = lines[-1].split(",")
    copied = int(lines[-1].split()[0])
    return copied, float(fields[-2].split()[0]), tuple(lines[:-1])


def measure_dd(lab: TutorialLab, megabytes: int = 32) -> DdRun:
    """Initiator: read the raw AoE disk, write random data to a file on /storage, read it back.

    The rates are numbers for the report, never asserted (the emulated guest CPU is the
    bottleneck); ``DdRun.check`` asserts the sizes and the read-back data.
    """
    asked = megabytes << 20
    read = lab.lab.run(lab.initiator, ("dd", "if=/dev/etherd/e0.1", "of=/dev/null", "bs=1M",
                                       f"count={megabytes}", "iflag=direct"), timeout=300)
    source = "/var/tmp/dd-source.bin"
    source_md5 = lab.run(lab.initiator, "sh", "-c", f"head -c {asked} /dev/urandom > {source} "
                         f"&& md5sum < {source}").split()[0]
    write = lab.lab.run(lab.initiator, ("dd", f"if={source}", "of=/storage/dd.bin", "bs=1M",
                                        f"count={megabytes}", "oflag=direct", "conv=fsync"),
                        timeout=300)
    read_back = lab.run(lab.initiator, "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches "
                        "&& md5sum < /storage/dd.bin").split()[0]
    lab.run(lab.initiator, "rm", "/storage/dd.bin", source)
    (got, read_s, read_records), (put, write_s, write_records) = (
        dd_copied(read.stderr), dd_copied(write.stderr))
    result = DdRun(asked=asked, read=got, written=put, records=read_records + write_records,
                   source_md5=source_md5, read_back_md5=read_back,
                   read_mb_s=got / read_s / 1e6, write_mb_s=put / write_s / 1e6)
    LOG.info("dd on %s: read %.1f MB/s, write %.1f MB/s", lab.initiator, result.read_mb_s,
             result.write_mb_s)
    return result
