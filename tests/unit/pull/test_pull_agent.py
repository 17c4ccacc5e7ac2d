"""``aoeprov pull`` against real git repos, converging a sandboxed host (--root).

The spec is the image-file example: its target host converges with files only
(a sparse image, the target's config and unit), so every run is a real apply.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aoeprov.cli import main
from aoeprov.host import Host
from aoeprov.pull.agent import PullOptions, pull
from aoeprov.reconciler.lock import LOCK_PATH, ApplyLock
from aoeprov.runner import Result, ShRunner
from tests.unit.pull.repo import IMAGE_SPEC, ConfigRepo

pytestmark = pytest.mark.tools   # runs real programs (see tests/conftest.py)

SPEC = "fleet/aoeprov.yaml"
CONFIG = "etc/aoeprov/target.json"


def pull_cli(capsys: pytest.CaptureFixture[str], root: Path, repo: Path,
             *extra: str) -> tuple[int, str, str]:
    rc = main(["pull", str(repo), "--root", str(root), "--spec", SPEC, "--host", "server2",
               *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def status(capsys: pytest.CaptureFixture[str], root: Path) -> dict[str, Any]:
    assert main(["pull", "--status", "--json", "--root", str(root)]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return ConfigRepo(tmp_path / "config")


def test_first_run_applies_then_only_records_the_check(
        tmp_path: Path, repo: ConfigRepo, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = repo.commit({SPEC: IMAGE_SPEC}, "fleet spec")
    rc, out, err = pull_cli(capsys, root, repo.path)
    assert rc == 0, err
    assert "+ export /etc/aoeprov/target.json" in out
    assert (root / "storage/storage1.img").stat().st_size == 20 << 30
    st = status(capsys, root)
    assert (st["result"], st["applied_commit"], st["good_commit"], st["seen_commit"],
            st["pending"], st["last_error"]) == ("applied", first, first, first, 0, None)
    mtime = (root / CONFIG).stat().st_mtime_ns
    rc, out, _ = pull_cli(capsys, root, repo.path)
    assert rc == 0 and out.startswith("converged:")
    assert (root / CONFIG).stat().st_mtime_ns == mtime
    again = status(capsys, root)
    assert again["result"] == "converged" and again["last_run"] > st["last_run"]
    assert again["runs"] == {"applied": 1, "converged": 1}
    # the checked-out spec is where `current` points, and nothing else is left around
    state = root / "var/lib/aoeprov/pull"
    assert os.readlink(state / "current") == f"trees/{first}"
    assert sorted(p.name for p in (state / "trees").iterdir()) == [first]
    assert (state / "current" / SPEC).read_text() == IMAGE_SPEC


def test_invalid_spec_is_refused_and_the_next_good_commit_taken(
        tmp_path: Path, repo: ConfigRepo, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    good = repo.commit({SPEC: IMAGE_SPEC}, "fleet spec")
    assert pull_cli(capsys, root, repo.path)[0] == 0
    config = (root / CONFIG).read_text()
    bad = repo.commit({SPEC: IMAGE_SPEC.replace("slot: 1", "slot: many")}, "typo")
    rc, _, err = pull_cli(capsys, root, repo.path)
    assert rc == 1
    st = status(capsys, root)
    assert (st["result"], st["seen_commit"], st["good_commit"], st["applied_commit"]) == \
        ("refused", bad, good, good)
    assert st["last_error"]["commit"] == bad
    # the message names the file, line and field, as `aoeprov validate` does
    assert f"trees/{bad}/{SPEC}:35:" in st["last_error"]["message"]
    assert "exports[0].slot" in st["last_error"]["message"]
    assert "exports[0].slot" in err
    assert (root / CONFIG).read_text() == config
    assert os.readlink(root / "var/lib/aoeprov/pull/current") == f"trees/{good}"
    # a commit planning fails for (this host is not in it) is refused the same way
    no_host = repo.commit({SPEC: IMAGE_SPEC.replace("name: server2", "name: nas9")
                           .replace("host: server2", "host: nas9")
                           .replace("target_host: server2", "target_host: nas9")}, "rename")
    assert pull_cli(capsys, root, repo.path)[0] == 1
    st = status(capsys, root)
    assert st["result"] == "refused" and st["last_error"]["commit"] == no_host
    assert "the spec has no host 'server2'" in st["last_error"]["message"]
    fixed = repo.commit({SPEC: IMAGE_SPEC.replace("size: 20G", "size: 30G")}, "grow")
    rc, _, err = pull_cli(capsys, root, repo.path)
    assert rc == 0, err
    st = status(capsys, root)
    assert (st["result"], st["applied_commit"]) == ("applied", fixed)
    assert st["last_error"]["commit"] == no_host   # the last error stays on record


def test_a_missing_spec_or_repo_changes_nothing(
        tmp_path: Path, repo: ConfigRepo, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    repo.commit({"README": "no spec yet\n"}, "empty")
    rc, _, err = pull_cli(capsys, root, repo.path)
    assert rc == 1 and f"has no spec file {SPEC}" in err
    assert status(capsys, root)["result"] == "refused"
    rc, _, err = pull_cli(capsys, root, tmp_path / "nowhere")
    assert rc == 1 and "git fetch" in err
    st = status(capsys, root)
    assert st["result"] == "failed" and st["last_error"]["commit"] == ""
    assert not (root / "etc").exists()


def test_plan_mode_reports_drift_and_changes_nothing(
        tmp_path: Path, repo: ConfigRepo, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    repo.commit({SPEC: IMAGE_SPEC}, "fleet spec")
    assert pull_cli(capsys, root, repo.path)[0] == 0
    (root / CONFIG).write_text("{}\n")     # changed by hand
    rc, out, _ = pull_cli(capsys, root, repo.path, "--mode", "plan", "--detailed-exitcode")
    assert rc == 2 and out.startswith("pending:")
    assert (root / CONFIG).read_text() == "{}\n"
    st = status(capsys, root)
    assert (st["result"], st["pending"]) == ("pending", 1)
    assert pull_cli(capsys, root, repo.path)[0] == 0       # apply mode puts it back
    assert status(capsys, root)["pending"] == 0
    assert (root / CONFIG).read_text() != "{}\n"


def test_one_run_at_a_time(tmp_path: Path, repo: ConfigRepo,
                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    repo.commit({SPEC: IMAGE_SPEC}, "fleet spec")
    with ApplyLock(Host(root=root).path(LOCK_PATH)):
        rc, _, err = pull_cli(capsys, root, repo.path)
    assert rc == 1 and "another aoeprov apply is running" in err
    assert not (root / "var/lib/aoeprov/pull/state.json").exists()


class Interrupted(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even an except clause of ours."""


class DyingRunner:
    """The real runner, but the ``at``-th command (or the moment after it) never returns."""

    def __init__(self, at: int, after: bool) -> None:
        self.at = at
        self.after = after
        self.count = 0
        self.real = ShRunner()

    def run(self, argv: Any, **kw: Any) -> Result:
        self.count += 1
        if self.count == self.at and not self.after:
            raise Interrupted(argv)
        result = self.real.run(argv, **kw)
        if self.count == self.at:
            raise Interrupted(argv)
        return result


def test_a_run_killed_anywhere_leaves_a_state_the_next_run_completes(
        tmp_path: Path, repo: ConfigRepo) -> None:
    first = repo.commit({SPEC: IMAGE_SPEC}, "fleet spec")
    second_spec = IMAGE_SPEC.replace("size: 20G", "size: 30G")
    opts = PullOptions(repo=str(repo.path), spec=SPEC, host_name="server2")
    second = repo.commit({SPEC: second_spec}, "grow")

    def converged_on_first(name: str) -> Path:
        root = _fresh(tmp_path / name)
        repo.git("update-ref", "refs/heads/main", first)
        assert pull(Host(root=root), opts).result == "applied"
        repo.git("update-ref", "refs/heads/main", second)
        return root

    # count the commands of a run taking the new commit, then kill one run at each of them
    probe = DyingRunner(at=0, after=False)
    pull(Host(root=converged_on_first("probe"), runner=probe), opts)
    commands = probe.count
    assert commands >= 3
    for at in range(1, commands + 1):
        for after in (False, True):
            root = converged_on_first(f"r{at}{after}")
            host = Host(root=root)
            with pytest.raises(Interrupted):
                pull(Host(root=root, runner=DyingRunner(at, after)), opts)
            done = pull(host, opts)
            assert done.result in ("applied", "converged"), (at, after, done.last_error)
            assert done.applied_commit == second
            assert (root / "storage/storage1.img").stat().st_size == 30 << 30
            again = pull(host, opts)
            assert again.result == "converged"


def _fresh(root: Path) -> Path:
    root.mkdir(parents=True)
    return root


def test_a_symlink_out_of_the_tree_is_refused(tmp_path: Path, repo: ConfigRepo) -> None:
    (repo.path / "fleet").mkdir()
    os.symlink("../../../etc/shadow", repo.path / "fleet" / "aoeprov.yaml")
    repo.git("add", "fleet/aoeprov.yaml")
    repo.commit({}, "a link out")
    root = _fresh(tmp_path / "root")
    rec = pull(Host(root=root), PullOptions(repo=str(repo.path), spec=SPEC, host_name="server2"))
    assert rec.result == "refused" and rec.last_error is not None
    assert "points out of the tree" in rec.last_error.message
    assert not (root / "var/lib/aoeprov/pull/trees").exists() or \
        not any((root / "var/lib/aoeprov/pull/trees").iterdir())
