"""Generated export units pass ``systemd-analyze verify``; the no-systemd supervisor works."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aoeprov.host import Host
from aoeprov.reconciler.resource import GatherContext
from aoeprov.resources import _supervise, export
from aoeprov.spec import load_spec
from tests.conftest import require_tools

REPO = Path(__file__).resolve().parents[3]


def verify(unit_file: Path) -> None:
    require_tools("systemd-analyze")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_file)],
                         capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    assert res.returncode == 0, res.stderr
    assert "aoeprov" not in res.stderr, res.stderr   # no warning about our units either


@pytest.mark.tools
@pytest.mark.parametrize("metrics_dir", [None, "/var/lib/prometheus/node-exporter"])
def test_target_unit_verifies(tmp_path: Path, metrics_dir: str | None) -> None:
    unit = tmp_path / export.TARGET_UNIT
    unit.write_text(export.target_unit((sys.executable, "-m", "aoeprov"), metrics_dir))
    verify(unit)


def test_a_hosts_metrics_dir_reaches_the_target_unit() -> None:
    spec = load_spec(REPO / "examples/gpt-multi.yaml")
    plain = export.wanted_files(spec, "nas1", ("/usr/bin/aoeprov",))
    assert "--metrics-dir" not in plain[f"{export.UNIT_DIR}/{export.TARGET_UNIT}"]
    hosts = tuple(dataclasses.replace(h, metrics_dir="/var/lib/prometheus/node-exporter")
                  if h.name == "nas1" else h for h in spec.hosts)
    files = export.wanted_files(dataclasses.replace(spec, hosts=hosts), "nas1",
                                ("/usr/bin/aoeprov",))
    assert ("ExecStart=/usr/bin/aoeprov target --config /etc/aoeprov/target.json "
            "--metrics-dir /var/lib/prometheus/node-exporter\n"
            in files[f"{export.UNIT_DIR}/{export.TARGET_UNIT}"])


@pytest.mark.tools
def test_vblade_instance_verifies(tmp_path: Path) -> None:
    require_tools("vblade")
    unit = tmp_path / "aoeprov-vblade@e1.2-eth0.service"
    unit.write_text(export.vblade_template())
    verify(unit)


def test_sandboxed_gather_writes_files_only(tmp_path: Path) -> None:
    spec = load_spec(REPO / "examples/gpt-multi.yaml")
    facts = export.gather(GatherContext(Host(root=tmp_path), spec, spec.host("nas1")))
    assert facts.live == "none"
    assert facts.files[export.CONFIG] is None
    assert facts.run_dir == str(tmp_path / "run/aoeprov")


SERVER = """
import os, signal, sys, time
out = sys.argv[1]
def hup(*_):
    with open(out, "a") as fh:
        fh.write("hup\\n")
signal.signal(signal.SIGHUP, hup)
with open(out, "a") as fh:
    fh.write(f"start {os.getpid()}\\n")
while True:
    time.sleep(1)
"""


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


@pytest.mark.tools
def test_supervisor_start_reload_restart_stop(tmp_path: Path) -> None:
    pid_file, log, out = tmp_path / "run/target.pid", tmp_path / "run/target.log", tmp_path / "out"
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    command = [sys.executable, str(script), str(out)]
    pid = _supervise.start(pid_file, log, command)
    try:
        assert _supervise.running_pid(pid_file) == pid
        assert _supervise.start(pid_file, log, command) == pid     # idempotent
        _wait_for(lambda: out.exists() and "start" in out.read_text())
        assert _supervise.send(pid_file, signal.SIGHUP)
        _wait_for(lambda: "hup" in out.read_text())                  # forwarded to the server
        first = int(out.read_text().split()[1])
        os.kill(first, signal.SIGKILL)                               # the server dies...
        _wait_for(lambda: out.read_text().count("start") == 2)       # ...and is restarted
    finally:
        _supervise.stop(pid_file)
    assert not pid_file.exists()
    assert _supervise.running_pid(pid_file) is None
    second = int(out.read_text().split("start")[2].split()[0])
    _wait_for(lambda: not Path(f"/proc/{second}").exists() or
              Path(f"/proc/{second}/stat").read_text().split()[2] == "Z")


def test_stale_pid_file_is_not_running(tmp_path: Path) -> None:
    pid_file = tmp_path / "target.pid"
    pid_file.write_text(f"{os.getpid()}\n")      # alive, but not a supervisor for this file
    assert _supervise.running_pid(pid_file) is None
    pid_file.write_text("999999999\n")
    assert _supervise.running_pid(pid_file) is None
    pid_file.write_text("garbage")
    assert _supervise.running_pid(pid_file) is None
    assert not _supervise.send(pid_file, signal.SIGHUP)


@pytest.mark.parametrize("cmdline,ok", [
    (b"/usr/bin/python3\0-m\0aoeprov.resources._supervise\0run\0--pid-file\0/run/x.pid\0", True),
    (b"/usr/bin/python3\0-m\0aoeprov.resources._supervise\0run\0--pid-file\0/run/y.pid\0", False),
    (b"sleep\0100\0", False),
])
def test_is_supervisor(cmdline: bytes, ok: bool) -> None:
    assert _supervise.is_supervisor(cmdline, Path("/run/x.pid")) is ok


def test_units_run_the_installed_command_and_a_gone_program_is_said(tmp_path: Path) -> None:
    """Units run the stable console script, not the interpreter that ran apply; a unit whose
    program is gone (venv removed or rebuilt) is rewritten, and the plan says why."""
    from aoeprov.install import aoeprov_command, missing_program, unit_program

    command = aoeprov_command()
    assert command[0].endswith("/aoeprov") and len(command) == 1   # the dev venv has it
    unit = export.target_unit(command)
    assert f"ExecStart={command[0]} target --config" in unit
    old = b"[Service]\nExecStart=/opt/old-venv/bin/python -m aoeprov target\n"
    assert unit_program(old) == "/opt/old-venv/bin/python"
    assert missing_program(old) == "/opt/old-venv/bin/python"
    assert missing_program(unit.encode()) is None


def test_foreign_vblade_cmdline() -> None:
    from aoeprov.resources._vbladeproc import parse_vblade_cmdline

    found = parse_vblade_cmdline(b"/usr/sbin/vblade\0-b\x0064\0-r\0000\0001\0eth0\0/dev/vg0/s\0", 7)
    assert found is not None and (found.shelf, found.slot, found.path) == (0, 1, "/dev/vg0/s")
    assert parse_vblade_cmdline(b"/bin/sh\0-c\0vblade 0 1 eth0 /x\0", 8) is None
    assert parse_vblade_cmdline(b"vblade\0--help\0", 9) is None
