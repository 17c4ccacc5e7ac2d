"""The fleet playbooks parse and pass ansible-playbook's syntax check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tools

pytestmark = pytest.mark.tools   # runs real programs (see tests/conftest.py)

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


def test_site_playbook_syntax(tmp_path: Path) -> None:
    require_tools("ansible-playbook")
    inventory = PLAYBOOKS / "inventory.example.ini"
    done = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", str(inventory), str(PLAYBOOKS / "site.yml")],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                             "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
        check=False)
    assert done.returncode == 0, done.stdout + done.stderr
