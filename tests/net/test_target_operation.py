"""The built-in target in long operation: state across kill -9, multipath against
conflicts, refusing a shelf.slot someone else serves, links that go down or change
MTU under it, and the command line's messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import Command, ConfigArg, ConfigCommand, decode_frame
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError, AtaError
from aoeprov.targetd.config import ExportConfig, render_config
from tests.net import netlab
from tests.net.conftest import wait_answering

pytestmark = pytest.mark.net

OTHER_MAC = "02:00:00:00:0a:0b"


def target_argv(lab: netlab.Lab, *args: str) -> list[str]:
    return [sys.executable, "-m", "aoeprov", "--log-level", "info", "target", "--state-dir",
            str(lab.state_dir), *args]


def run_target(lab: netlab.Lab, *args: str,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The target to completion (it refuses to start, in these cases)."""
    return subprocess.run(("ip", "netns", "exec", lab.server_ns, *target_argv(lab, *args)),
                          capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(netlab.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"})


def probe(lab: netlab.Lab) -> subprocess.CompletedProcess[str]:
    argv = ("ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "aoeprov", "probe",
            "-i", lab.client_if, "--timeout", "0.5", "--json")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(netlab.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"})


def ip(*args: str) -> None:
    subprocess.run(("ip", *args), check=True, capture_output=True, timeout=30)


def logtext(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# -- state that survives a restart ---------------------------------------------------

def test_config_string_mask_and_reserve_survive_kill_9(lab, serve, connect, image):
    server = serve(lab, "builtin", netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    me = lab.client_mac
    client.config(ConfigCommand.SET, b"owner=host1")
    assert client.mask_edit(add=[me, OTHER_MAC]) == (me, OTHER_MAC)
    assert client.reserve([me]) == (me,)

    server.kill()  # SIGKILL: nothing is written on the way out
    server.restart()
    wait_answering(lab, server)
    again = connect(lab, 0, 1)
    info = again.config()
    assert info is not None and info.config == b"owner=host1"
    assert again.mask_list() == (me, OTHER_MAC)
    assert again.reserve_list() == (me,)
    assert again.read(0, 1) == netlab.lba_sector(0)
    saved = json.loads((lab.state_dir / "e0.1.json").read_text())
    assert saved["config"] == "owner=host1" and saved["reserve"] == [me]


def test_a_corrupt_state_file_is_set_aside_and_the_export_served(lab, serve, connect, image):
    lab.state_dir.mkdir()
    (lab.state_dir / "e0.1.json").write_text("{half a file")
    server = serve(lab, "builtin", netlab.Export(0, 1, image))
    assert connect(lab, 0, 1).read(0, 1) == netlab.lba_sector(0)
    (aside,) = lab.state_dir.glob("e0.1.json.corrupt-*")
    assert aside.read_text() == "{half a file"
    assert "is unusable (not JSON" in server.logtext()
    assert "Traceback" not in server.logtext()


# -- multipath and conflicts ---------------------------------------------------------

def write_config(path: Path, image: Path, interfaces: tuple[str, ...]) -> Path:
    path.write_text(render_config([ExportConfig(4, 1, str(image), interfaces)]))
    return path


def start_config_target(lab: netlab.Lab, config: Path, log: Path,
                        *extra: str) -> subprocess.Popen[bytes]:
    return lab.popen(lab.server_ns, target_argv(lab, *extra, "--config", str(config)), log)


def wait_probe(lab: netlab.Lab, responders: int) -> dict:  # type: ignore[type-arg]
    found: dict = {}  # type: ignore[type-arg]

    def enough() -> bool:
        nonlocal found
        found = json.loads(probe(lab).stdout or "{}")
        return len(found.get("responders", [])) >= responders

    netlab.wait_until(enough, 20, f"{responders} responders to a probe")
    return found


def test_probe_tells_one_target_on_two_links_from_two_targets(make_lab, tmp_path):
    lab = make_lab(1500, ports=2, bridge=True)  # both server links in one broadcast domain
    small = netlab.make_image(tmp_path / "small.img", 1 << 20)
    large = netlab.make_image(tmp_path / "large.img", 2 << 20)
    both = write_config(tmp_path / "both.json", small, tuple(lab.server_ifs))
    one = start_config_target(lab, both, tmp_path / "one.log")
    found = wait_probe(lab, 2)
    done = probe(lab)
    assert done.returncode == 0, done.stderr
    macs = sorted([lab.server_mac(0), lab.server_mac(1)])
    assert found["conflicts"] == []
    (path,) = found["multipath"]
    assert (path["device"], path["macs"]) == ("e4.1", macs)
    assert path["serial"].startswith("4.1:")
    assert {r["serial"] for r in found["responders"]} == {path["serial"]}
    netlab.stop_process(one)

    # two targets: the second one forced past the start-up check
    first = write_config(tmp_path / "first.json", small, (lab.server_ifs[0],))
    second = write_config(tmp_path / "second.json", large, (lab.server_ifs[1],))
    start_config_target(lab, first, tmp_path / "first.log")
    netlab.wait_until(lambda: "serving e4.1" in logtext(tmp_path / "first.log"), 20,
                      "the first target")
    start_config_target(lab, second, tmp_path / "second.log", "--force")
    found = wait_probe(lab, 2)
    done = probe(lab)
    assert done.returncode == 1
    assert "CONFLICT e4.1 is answered by 2 MACs" in done.stderr
    assert found["multipath"] == []
    (conflict,) = found["conflicts"]
    assert (conflict["macs"], conflict["reason"]) == (macs, "different identities")
    assert "serving anyway (--force)" in logtext(tmp_path / "second.log")


# -- one shelf.slot, one target ------------------------------------------------------

def test_a_second_target_for_a_served_shelf_slot_refuses_to_start(lab, serve, image, tmp_path):
    first = serve(lab, "builtin", netlab.Export(0, 1, image))
    other = netlab.make_image(tmp_path / "other.img", 1 << 20)
    done = run_target(lab, "0", "1", lab.server_if, str(other))
    assert done.returncode == 1
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("aoeprov: error:")]
    assert line.startswith(f"aoeprov: error: e0.1 is already served by pid {first.pid} on "
                           f"this host (")
    assert line.endswith("): refusing to serve it (--force serves anyway)")
    assert "Traceback" not in done.stderr
    assert first.alive()


def test_a_responder_on_the_link_is_named_and_refused_unless_forced(make_lab, serve,
                                                                    tmp_path):
    lab = make_lab(1500, ports=2, bridge=True)
    image = netlab.make_image(tmp_path / "v.img", 1 << 20)
    serve(lab, "vblade", netlab.Export(0, 1, image), port=1)
    mine = netlab.make_image(tmp_path / "mine.img", 1 << 20)
    done = run_target(lab, "0", "1", lab.server_ifs[0], str(mine))
    assert done.returncode == 1
    assert (f"aoeprov: error: e0.1 is already served by {lab.server_mac(1)} on "
            f"{lab.server_ifs[0]} (it answered a config query): refusing to serve it "
            f"(--force serves anyway)") in done.stderr
    # --force: the operator says it is fine
    log = tmp_path / "forced.log"
    forced = lab.popen(lab.server_ns, target_argv(lab, "--force", "0", "1",
                                                  lab.server_ifs[0], str(mine)), log)
    netlab.wait_until(lambda: "serving anyway (--force)" in logtext(log), 20, "the forced start")
    assert forced.poll() is None


def test_sighup_leaves_out_a_new_export_someone_else_serves(lab, serve, image, tmp_path):
    other = serve(lab, "builtin", netlab.Export(0, 1, image))
    mine = netlab.make_image(tmp_path / "mine.img", 1 << 20)
    config = tmp_path / "exports.json"
    config.write_text(render_config([ExportConfig(0, 2, str(mine), (lab.server_if,))]))
    log = tmp_path / "target.log"
    proc = start_config_target(lab, config, log)
    netlab.wait_until(lambda: "serving e0.2" in logtext(log), 20, "e0.2 served")
    config.write_text(render_config([ExportConfig(0, 2, str(mine), (lab.server_if,)),
                                     ExportConfig(0, 1, str(mine), (lab.server_if,))]))
    proc.send_signal(signal.SIGHUP)
    netlab.wait_until(lambda: "not serving it" in logtext(log), 20, "the refusal")
    assert (f"e0.1 is already served by pid {other.pid} on this host") in logtext(log)
    assert proc.poll() is None and other.alive()
    assert "reloaded: 1 exports, 0 new, 0 removed" in logtext(log)


# -- links that change ----------------------------------------------------------------

def patient_client(lab: netlab.Lab, transports: list, shelf: int, slot: int,  # type: ignore[type-arg]
                   port: int = 0) -> AoeClient:
    transports.append(netlab.open_transport(lab))
    return AoeClient(transports[-1], shelf, slot, target_mac=lab.server_mac(port),
                     timeout=0.1, max_timeout=0.5, retries=40)


class Reader(threading.Thread):
    """Reads the export over and over, checking every sector, until stopped."""

    def __init__(self, client: AoeClient, sectors: int) -> None:
        super().__init__(daemon=True)
        self.client, self.sectors = client, sectors
        self.stop = threading.Event()
        self.done = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        lba = 0
        while not self.stop.is_set():
            try:
                data = self.client.read(lba, 8)
                assert data == netlab.sector_pattern(lba, 8), f"wrong data at LBA {lba}"
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)
                return
            self.done += 1
            lba = (lba + 8) % (self.sectors - 8)

    def progress(self, more: int, timeout: float) -> None:
        start = self.done
        netlab.wait_until(lambda: self.done >= start + more or self.errors, timeout,
                          f"{more} more reads")
        assert not self.errors, self.errors


def test_reads_keep_completing_across_link_down_and_up(make_lab, image, tmp_path):
    # a bridge between, as a switch would be: the client's own link stays up
    lab = make_lab(1500, ports=2, bridge=True)
    log = tmp_path / "target.log"
    lab.popen(lab.server_ns, target_argv(lab, "0", "1", lab.server_if, str(image)), log)
    transports: list = []  # type: ignore[type-arg]
    try:
        client = patient_client(lab, transports, 0, 1)
        netlab.wait_until(lambda: _answers(client), 20, "the target")
        client.discover()
        reader = Reader(client, image.stat().st_size // 512)
        reader.start()
        reader.progress(20, 20)
        ip("-n", lab.server_ns, "link", "set", lab.server_if, "down")
        netlab.wait_until(lambda: "is down" in logtext(log), 10, "the target to see it")
        time.sleep(0.5)
        ip("-n", lab.server_ns, "link", "set", lab.server_if, "up")
        reader.progress(50, 30)  # within the client's retransmissions
        reader.stop.set()
        reader.join(10)
        assert not reader.errors, reader.errors
    finally:
        for transport in transports:
            transport.close()
    text = logtext(log)
    assert text.count(f"link {lab.server_if} is down") == 1
    assert f"link {lab.server_if} is up: serving it, exports announced" in text
    assert "Traceback" not in text and "SIGHUP" not in text


def test_a_link_down_at_start_is_waited_for(lab, image, tmp_path):
    ip("-n", lab.server_ns, "link", "set", lab.server_if, "down")
    log = tmp_path / "target.log"
    proc = lab.popen(lab.server_ns, target_argv(lab, "0", "1", lab.server_if, str(image)), log)
    netlab.wait_until(lambda: "is down" in logtext(log), 20, "the target to wait")
    assert proc.poll() is None
    with netlab.open_transport(lab) as transport:
        ip("-n", lab.server_ns, "link", "set", lab.server_if, "up")
        # the unsolicited announcement once the link is up: no discover needed
        deadline = time.monotonic() + 15
        announced = False
        while not announced and time.monotonic() < deadline:
            raw = transport.recv(0.5)
            if raw is not None:
                frame = decode_frame(raw)
                announced = frame.header.command == Command.CONFIG and frame.header.tag == 0
        assert announced
    text = logtext(log)
    assert text.count(f"link {lab.server_if} is down: waiting for it to come up, serving the "
                      f"other links meanwhile") == 1
    assert "Traceback" not in text and "Network is down" not in text


def test_an_mtu_change_mid_stream_is_announced_and_big_requests_get_an_error(make_lab, tmp_path):
    lab = make_lab(9000)
    image = netlab.make_image(tmp_path / "disk.img", 8 << 20)
    log = tmp_path / "target.log"
    lab.popen(lab.server_ns, target_argv(lab, "0", "1", lab.server_if, str(image)), log)
    transports: list = []  # type: ignore[type-arg]
    try:
        client = patient_client(lab, transports, 0, 1)
        netlab.wait_until(lambda: _answers(client), 20, "the target")
        info = client.discover()
        assert info.sectors_per_frame == 17
        listener = netlab.open_transport(lab)
        transports.append(listener)
        small = patient_client(lab, transports, 0, 1)
        small.discover()
        small.sectors_per_frame = 2  # frames that fit both MTUs
        reader = Reader(small, image.stat().st_size // 512)
        reader.start()
        reader.progress(20, 20)
        for ns, ifname in ((lab.server_ns, lab.server_if), (lab.client_ns, lab.client_if)):
            ip("-n", ns, "link", "set", ifname, "mtu", "1500")
        # announced again with the new size, without a SIGHUP
        deadline = time.monotonic() + 15
        spf = None
        while spf != 2 and time.monotonic() < deadline:
            raw = listener.recv(0.5)
            if raw is not None:
                frame = decode_frame(raw)
                if frame.header.tag == 0 and isinstance(frame.arg, ConfigArg):
                    spf = frame.arg.sectors_per_frame
        assert spf == 2
        reader.progress(50, 30)  # the small reads never stopped
        # a request the link no longer carries: an ATA error at once, not a stall
        started = time.monotonic()
        with pytest.raises(AtaError):
            client.ata(ata.ATA_READ_EXT, lba=0, count=17, aflags=ata.AFLAG_LBA48)
        assert time.monotonic() - started < 5
        reader.progress(10, 20)
        reader.stop.set()
        reader.join(10)
        assert not reader.errors, reader.errors
    finally:
        for transport in transports:
            transport.close()
    text = logtext(log)
    assert f"link {lab.server_if}: MTU 9000 -> 1500" in text
    assert "now 2 sectors per frame, announced again" in text
    assert "Traceback" not in text


def _answers(client: AoeClient) -> bool:
    try:
        return client.config() is not None
    except AoeprovError:
        return False


# -- the command line ---------------------------------------------------------------

def test_a_read_only_file_needs_dash_r(lab, tmp_path):
    image = netlab.make_image(tmp_path / "ro.img", 1 << 20)
    image.chmod(0o444)
    done = run_target(lab, "0", "1", lab.server_if, str(image))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"aoeprov: error: export e0.1: {image} is read-only (mode 0444): use -r to export it "
        f"read-only")


def test_a_file_on_a_read_only_mount_needs_dash_r(lab, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)), check=True,
                   timeout=30)
    try:
        netlab.make_image(mnt / "disk.img", 1 << 20)
        subprocess.run(("mount", "-o", "remount,ro", str(mnt)), check=True, timeout=30)
        done = run_target(lab, "0", "1", lab.server_if, str(mnt / "disk.img"))
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == (
            f"aoeprov: error: export e0.1: {mnt / 'disk.img'} is read-only (on a read-only "
            f"mount): use -r to export it read-only")
    finally:
        subprocess.run(("umount", str(mnt)), check=True, timeout=30)


def test_an_empty_file_is_refused(lab, tmp_path):
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    done = run_target(lab, "0", "1", lab.server_if, str(empty))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"aoeprov: error: export e0.1: {empty} is empty (0 bytes): there is nothing to export")


def test_bytes_past_the_last_sector_are_reported(lab, serve, connect, tmp_path):
    odd = tmp_path / "odd.img"
    odd.write_bytes(netlab.sector_pattern(0, 2) + b"\x01" * 100)
    server = serve(lab, "builtin", netlab.Export(0, 1, odd))
    assert connect(lab, 0, 1).identify().sectors == 2
    assert (f"export e0.1: {odd} is 1124 bytes, not a whole number of 512-byte sectors: its "
            f"last 100 bytes are not exported") in server.logtext()
