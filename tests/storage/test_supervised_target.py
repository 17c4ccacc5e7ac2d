"""The built-in target as a supervised background process (no systemd), in a network namespace.

The exports resource starts ``aoeprov target --config FILE`` under ``_supervise``
where systemd is not PID 1. Here the same commands run inside a test namespace:
the target answers probes, a SIGHUP through the supervisor adds an export without
restarting the target, a killed target is restarted, and stop leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aoeprov.resources import _supervise
from aoeprov.targetd.config import ExportConfig, render_config
from tests.net.netlab import Lab, lab_context

pytestmark = pytest.mark.net


def in_ns(lab: Lab, ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(("ip", "netns", "exec", ns, *argv), capture_output=True, text=True,
                          timeout=timeout)


def probe(lab: Lab) -> list[str]:
    done = in_ns(lab, lab.client_ns, sys.executable, "-m", "aoeprov", "probe", "-i",
                 lab.client_if, "--timeout", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    return sorted(r["device"] for r in json.loads(done.stdout)["responders"])


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s")
        time.sleep(0.05)


def test_supervised_target_serves_reloads_and_restarts(tmp_path: Path) -> None:
    images = []
    for name in ("a.img", "b.img"):
        path = tmp_path / name
        with path.open("wb") as fh:
            fh.truncate(1 << 20)
        images.append(path)
    config, pid_file = tmp_path / "target.json", tmp_path / "run/target.pid"
    with lab_context() as lab:
        first = ExportConfig(0, 1, str(images[0]), (lab.server_if,), name="a")
        config.write_text(render_config([first]))
        start = in_ns(lab, lab.server_ns, sys.executable, "-m", _supervise.MODULE, "start",
                      "--pid-file", str(pid_file), "--log", str(tmp_path / "run/target.log"),
                      "--", sys.executable, "-m", "aoeprov", "target", "--config", str(config))
        assert start.returncode == 0, start.stderr
        supervisor = int(pid_file.read_text())
        try:
            wait_until("e0.1 answers", lambda: probe(lab) == ["e0.1"])
            (target,) = children(supervisor)

            second = ExportConfig(0, 2, str(images[1]), (lab.server_if,), name="b")
            config.write_text(render_config([first, second]))
            assert _supervise.send(pid_file, 1)   # SIGHUP
            wait_until("e0.2 answers after the reload", lambda: probe(lab) == ["e0.1", "e0.2"])
            assert children(supervisor) == [target]   # reloaded, not restarted

            subprocess.run(["kill", "-9", str(target)], check=True)
            wait_until("the target is restarted",
                       lambda: children(supervisor) not in ([], [target]))
            wait_until("both answer again", lambda: probe(lab) == ["e0.1", "e0.2"])
        finally:
            _supervise.stop(pid_file)
        assert not pid_file.exists()
        assert not Path(f"/proc/{supervisor}/cmdline").exists() or \
            not Path(f"/proc/{supervisor}/cmdline").read_bytes()   # gone, or a zombie
