"""The fleet playbooks parse and pass ansible-playbook's syntax check; what they refuse on
the controller, before they change any host, they refuse with a message that names the input.
(Runs on real hosts: ``tests/vm/test_fleet.py``.)"""

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


def test_a_missing_wheelhouse_is_named_before_any_host_changes(tmp_path: Path) -> None:
    require_tools("ansible-playbook")
    # a host reached with the local connection whose root is never written: the play must
    # stop at the controller-side check, before the first task that changes anything
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[aoe_targets]\nlocalhost ansible_connection=local "
                         "ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n"
                         "[aoe_initiators]\n")
    missing = tmp_path / "nowhere" / "aoeprov-wheelhouse.tar.gz"
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(PLAYBOOKS / "site.yml"),
         "-e", f"aoeprov_wheelhouse={missing}", "-e", f"aoeprov_venv={venv}",
         "-e", f"aoeprov_wheelhouse_dest={tmp_path / 'unpacked'}",
         "-e", f"aoeprov_spec={tmp_path / 'spec.yaml'}"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
             "ANSIBLE_RETRY_FILES_ENABLED": "false"})
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"aoeprov_wheelhouse={missing}: no such file on the controller" in output, output
    assert "pipe" not in output, output
    assert not any(p.exists() for p in (venv, tmp_path / "unpacked", tmp_path / "spec.yaml"))
