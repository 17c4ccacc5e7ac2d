"""The built-in target as a process: announce at start, SIGHUP reload, counters, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.aoe.wire import (
    BROADCAST_MAC,
    Command,
    ConfigArg,
    ConfigCommand,
    decode_frame,
    mac_to_str,
)
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError
from aoeprov.spec.model import DEFAULT_BUFFER_COUNT
from aoeprov.targetd.config import ExportConfig, render_config
from tests.net import netlab

pytestmark = pytest.mark.net


class TargetProcess:
    def __init__(self, lab: netlab.Lab, tmp_path: Path, exports: list[ExportConfig]) -> None:
        self.lab = lab
        self.config = tmp_path / "exports.json"
        self.stats = tmp_path / "stats.json"
        self.log = tmp_path / "target.log"
        self.write(exports)
        self.proc: subprocess.Popen[bytes] = lab.popen(
            lab.server_ns, [sys.executable, "-m", "aoeprov", "--log-level", "info", "target",
                            "--config", str(self.config), "--stats-file", str(self.stats),
                            "--state-dir", str(tmp_path / "state")],
            self.log)

    def write(self, exports: list[ExportConfig]) -> None:
        self.config.write_text(render_config(exports))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_target(lab: netlab.Lab, tmp_path: Path) -> Iterator[object]:
    started: list[TargetProcess] = []

    def start(exports: list[ExportConfig]) -> TargetProcess:
        started.append(TargetProcess(lab, tmp_path, exports))
        return started[-1]

    yield start
    for target in started:
        netlab.stop_process(target.proc)


def export(lab: netlab.Lab, image: Path, slot: int, **kw: object) -> ExportConfig:
    return ExportConfig(shelf=4, slot=slot, path=str(image), interfaces=(lab.server_if,),
                        **kw)  # type: ignore[arg-type]


def answers(client: AoeClient) -> bool:
    try:
        return client.config() is not None
    except AoeprovError:
        return False


def client_for(lab: netlab.Lab, transports: list, slot: int) -> AoeClient:  # type: ignore[type-arg]
    transports.append(netlab.open_transport(lab))
    return AoeClient(transports[-1], 4, slot, target_mac=lab.server_mac(), timeout=0.1,
                     retries=0)


def test_announces_itself_at_start(lab: netlab.Lab, image: Path, start_target) -> None:
    with netlab.open_transport(lab) as transport:
        start_target([export(lab, image, 1, allowed_macs=()), export(lab, image, 2)])
        seen = {}
        deadline = time.monotonic() + 15
        while len(seen) < 2 and time.monotonic() < deadline:
            raw = transport.recv(0.5)
            if raw is None:
                continue
            frame = decode_frame(raw)
            if frame.header.command == Command.CONFIG and frame.header.tag == 0:
                seen[frame.header.slot] = frame
        assert sorted(seen) == [1, 2]
        for frame in seen.values():
            assert frame.header.dst == BROADCAST_MAC and frame.header.shelf == 4
            assert mac_to_str(frame.header.src) == lab.server_mac()
            assert isinstance(frame.arg, ConfigArg)
            assert frame.arg.buffer_count == DEFAULT_BUFFER_COUNT


def test_sighup_reloads_keeping_unchanged_exports(lab: netlab.Lab, image: Path, tmp_path: Path,
                                                  start_target) -> None:
    second = netlab.make_image(tmp_path / "second.img", 1 << 20)
    target = start_target([export(lab, image, 1)])
    transports: list = []  # type: ignore[type-arg]
    try:
        one = client_for(lab, transports, 1)
        two = client_for(lab, transports, 2)
        netlab.wait_until(lambda: answers(one), 15, "e4.1 to answer")
        one.discover()
        one.config(ConfigCommand.SET, b"owner=test")
        one.write(8, b"\x11" * 4096)
        assert not answers(two)

        target.write([export(lab, image, 1), export(lab, second, 2, read_only=True)])
        target.signal(signal.SIGHUP)
        netlab.wait_until(lambda: answers(two), 10, "e4.2 to answer after SIGHUP")
        two.discover()
        assert two.identify().sectors == (1 << 20) // 512
        # e4.1 was not reopened: its config string (held in memory) survived
        info = one.config()
        assert info is not None and info.config == b"owner=test"
        assert one.read(8, 8) == b"\x11" * 4096

        target.write([export(lab, second, 2, read_only=True)])
        target.signal(signal.SIGHUP)
        netlab.wait_until(lambda: not answers(one), 10, "e4.1 to go away after SIGHUP")
        assert answers(two)

        # a broken list is refused and the exports stay as they were
        target.config.write_text("{broken")
        target.signal(signal.SIGHUP)
        netlab.wait_until(lambda: "reload failed" in target.logtext(), 10, "the reload error")
        assert answers(two) and target.proc.poll() is None
    finally:
        for transport in transports:
            transport.close()


def test_counters_on_sigusr1_and_at_sigterm(lab: netlab.Lab, image: Path, start_target) -> None:
    target = start_target([export(lab, image, 1, write_mode="sync")])
    transports: list = []  # type: ignore[type-arg]
    try:
        client = client_for(lab, transports, 1)
        netlab.wait_until(lambda: answers(client), 15, "e4.1 to answer")
        client.discover()
        client.write(0, b"\x22" * 8192)
        client.read(0, 16)
        target.signal(signal.SIGUSR1)
        netlab.wait_until(target.stats.exists, 10, "the stats file")
        (stats,) = json.loads(target.stats.read_text())["exports"]
        assert stats["writes"] == 8 and stats["bytes_written"] == 8192
        assert stats["reads"] == 8 and stats["write_mode"] == "sync"
    finally:
        for transport in transports:
            transport.close()
    target.stats.unlink()
    assert netlab.stop_process(target.proc) == 0
    # the stop itself: one summary line; the counters go to the stats file
    (stopped,) = [line for line in target.logtext().splitlines() if "stopped" in line]
    assert stopped.startswith("aoeprov target: stopped; served 1 exports for ")
    assert "8192 bytes written, 0 errors, 0 link errors" in stopped
    (stats,) = json.loads(target.stats.read_text())["exports"]
    assert stats["writes"] == 8 and stats["in_flight_max"] >= 1
    assert image.read_bytes()[:8192] == b"\x22" * 8192


def test_serves_the_exports_of_a_spec_host(lab: netlab.Lab, image: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
version: 1
hosts:
  - name: srv
    roles: [target]
    interfaces: [{lab.server_if}]
targets:
  - name: img
    host: srv
    file:
      path: {image}
      size: {image.stat().st_size}
exports:
  - name: img
    target: img
    shelf: 4
    slot: 7
    interfaces: [{lab.server_if}]
    read_only: true
""")
    log = tmp_path / "target.log"
    proc = lab.popen(lab.server_ns, [sys.executable, "-m", "aoeprov", "target", "--spec",
                                     str(spec), "--host", "srv", "--state-dir",
                                     str(tmp_path / "state")], log)
    transports: list = []  # type: ignore[type-arg]
    try:
        client = client_for(lab, transports, 7)
        netlab.wait_until(lambda: answers(client), 15, "e4.7 to answer")
        client.discover()
        assert client.identify().sectors == image.stat().st_size // 512
        with pytest.raises(AoeprovError):
            client.write(0, b"\x00" * 512)  # read-only in the spec
    finally:
        for transport in transports:
            transport.close()
        assert netlab.stop_process(proc) == 0, log.read_text()


def test_sighup_picks_up_an_mtu_change(lab: netlab.Lab, image: Path, start_target) -> None:
    target = start_target([export(lab, image, 1)])
    transports: list = []  # type: ignore[type-arg]
    try:
        client = client_for(lab, transports, 1)
        netlab.wait_until(lambda: answers(client), 15, "e4.1 to answer")
        info = client.config()
        assert info is not None and info.sectors_per_frame == 2
        for ns, ifname in ((lab.server_ns, lab.server_if), (lab.client_ns, lab.client_if)):
            subprocess.run(("ip", "-n", ns, "link", "set", ifname, "mtu", "9000"), check=True)
        target.signal(signal.SIGHUP)

        def jumbo() -> bool:
            info = client.config()
            return info is not None and info.sectors_per_frame == 17

        netlab.wait_until(jumbo, 10, "17 sectors per frame after SIGHUP")
    finally:
        for transport in transports:
            transport.close()
