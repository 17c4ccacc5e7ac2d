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


def run_site_locally(tmp_path: Path, *extra: str) -> tuple[int, str]:
    """site.yml against localhost (local connection, no become), run in ``tmp_path``; the
    host's paths point into ``tmp_path`` so that a task that went too far shows there."""
    require_tools("ansible-playbook")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[aoe_targets]\nlocalhost ansible_connection=local "
                         "ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n"
                         "[aoe_initiators]\n")
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(PLAYBOOKS / "site.yml"),
         "-e", f"aoeprov_venv={tmp_path / 'venv'}",
         "-e", f"aoeprov_wheelhouse_dest={tmp_path / 'unpacked'}",
         "-e", f"aoeprov_spec={tmp_path / 'spec.yaml'}", *extra],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
             "ANSIBLE_RETRY_FILES_ENABLED": "false"})
    return done.returncode, done.stdout + done.stderr


def assert_no_host_changed(tmp_path: Path) -> None:
    assert not any((tmp_path / name).exists() for name in ("venv", "unpacked", "spec.yaml"))


def test_a_missing_wheelhouse_is_named_before_any_host_changes(tmp_path: Path) -> None:
    # the play must stop at the controller-side check, before the first task that changes
    # anything (the spec is the playbook's default, examples/tutorial.yaml)
    missing = tmp_path / "nowhere" / "aoeprov-wheelhouse.tar.gz"
    rc, output = run_site_locally(tmp_path, "-e", f"aoeprov_wheelhouse={missing}")
    assert rc != 0, output
    assert f"aoeprov_wheelhouse={missing}: no such file on the controller" in output, output
    assert "pipe" not in output, output
    assert_no_host_changed(tmp_path)


@pytest.mark.parametrize("missing", ["aoeprov_spec_src", "aoeprov_wheelhouse"])
def test_relative_controller_paths_are_taken_from_the_working_directory(
        tmp_path: Path, missing: str) -> None:
    # What the README's fleet example does: paths relative to where the user runs
    # ansible-playbook, not to playbooks/. The one that exists passes its check (it does
    # not exist under playbooks/); the missing one is named with the path it resolved to.
    (tmp_path / "fleet").mkdir()
    names = {"aoeprov_spec_src": "spec.yaml", "aoeprov_wheelhouse": "wheelhouse.tar.gz"}
    for variable, name in names.items():
        if variable != missing:
            (tmp_path / "fleet" / name).write_text("present\n")
    rc, output = run_site_locally(
        tmp_path, *(arg for variable, name in names.items()
                    for arg in ("-e", f"{variable}=fleet/{name}")))
    assert rc != 0, output
    assert (f"{missing}=fleet/{names[missing]}: no such file on the controller "
            f"({tmp_path / 'fleet' / names[missing]}; a relative path is taken from the "
            "directory ansible-playbook runs in") in output, output
    assert_no_host_changed(tmp_path)
