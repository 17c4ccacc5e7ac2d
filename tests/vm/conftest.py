"""Fixtures of the vm tier: labs of real-kernel VMs, booted once per module.

A lab is expensive (a boot is ~25-50 s under emulation), so each test module boots
one and its tests share it; every test leaves the lab as the tutorial left it
(files it writes have names of their own). Labs live in their own state directory
and network namespace, so they never meet a lab a user started, and are always
torn down, even when a test fails. Console logs stay in pytest's tmp directory.
"""

from __future__ import annotations

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


def measure_dd(lab: TutorialLab, megabytes: int = 32) -> tuple[float, float]:
    """Initiator read (raw AoE disk) and write (file on /storage) throughput in MB/s, logged.

    Numbers for the report, never asserted: the emulated guest CPU is the bottleneck.
    """
    def rate(out: str) -> float:
        fields = out.strip().splitlines()[-1].split(",")  # "... copied, 1.5 s, 44.7 MB/s"
        seconds = float(fields[-2].split()[0])
        return megabytes * (1 << 20) / seconds / 1e6

    read = lab.lab.run(lab.initiator, ("dd", "if=/dev/etherd/e0.1", "of=/dev/null", "bs=1M",
                                       f"count={megabytes}", "iflag=direct"), timeout=300)
    write = lab.lab.run(lab.initiator, ("dd", "if=/dev/zero", "of=/storage/dd.bin", "bs=1M",
                                        f"count={megabytes}", "oflag=direct", "conv=fsync"),
                        timeout=300)
    lab.run(lab.initiator, "rm", "/storage/dd.bin")
    result = rate(read.stderr), rate(write.stderr)
    LOG.info("dd on %s: read %.1f MB/s, write %.1f MB/s", lab.initiator, *result)
    return result
