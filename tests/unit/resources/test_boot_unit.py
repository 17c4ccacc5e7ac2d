"""The initiator boot unit passes `systemd-analyze verify` (no systemd as PID 1 needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aoeprov.resources.boot import UNIT, render_initiator_unit
from aoeprov.spec import load_spec
from tests.conftest import require_tools
from tests.unit.reconciler.fakes import REPO, tutorial


def verify(unit_dir: Path, unit: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_dir / unit)],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.tools
def test_initiator_units_verify(tmp_path: Path) -> None:
    require_tools("systemd-analyze")
    specs = [(tutorial(), "server1"),
             (load_spec(REPO / "tests/plan/specs/initiator-options.yaml"), "client")]
    for i, (spec, host) in enumerate(specs):
        text = render_initiator_unit(spec, host, (sys.executable, "-m", "aoeprov"))
        assert text is not None
        unit_dir = tmp_path / str(i)
        unit_dir.mkdir()
        (unit_dir / UNIT).write_text(text)
        done = verify(unit_dir, UNIT)
        assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.tools
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check is real: a typo and a missing program fail it."""
    require_tools("systemd-analyze")
    (tmp_path / UNIT).write_text("[Service]\nType=oneshott\nExecStart=/nonexistent/aoeprov\n")
    done = verify(tmp_path, UNIT)
    assert done.returncode != 0 and "oneshott" in done.stderr


def test_no_unit_for_a_target() -> None:
    assert render_initiator_unit(tutorial(), "server2", ("/opt/aoeprov/bin/aoeprov",)) is None
