"""``aoeprov pull --install`` units and the metrics file, checked by real parsers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aoeprov.cli import main
from aoeprov.metrics import Metric, Sample, metric, render, write_textfile
from tests.conftest import require_tools
from tests.unit.pull.repo import IMAGE_SPEC, ConfigRepo


@pytest.mark.tools
def test_install_writes_units_that_verify(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    rc = main(["pull", "file:///srv/config.git", "--ref", "main", "--spec", "fleet/aoe.yaml",
               "--require-signed", "--gnupg-home", "/etc/aoeprov/gnupg", "--root", str(root),
               "--install", "--interval", "10min", "--randomized-delay", "2min"])
    assert rc == 0
    units = root / "etc/systemd/system"
    service = (units / "aoeprov-pull.service").read_text()
    timer = (units / "aoeprov-pull.timer").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").split()
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "aoeprov"
    assert argv[1:] == ["pull", "file:///srv/config.git", "--ref", "main", "--spec",
                        "fleet/aoe.yaml", "--mode", "apply", "--require-signed",
                        "--gnupg-home", "/etc/aoeprov/gnupg", "--root", str(root)]
    assert "Type=oneshot" in service
    assert "OnUnitInactiveSec=10min" in timer and "RandomizedDelaySec=2min" in timer
    assert "wrote /etc/systemd/system/aoeprov-pull.timer" in capsys.readouterr().out
    require_tools("systemd-analyze")
    assert Path(argv[0]) == Path(sys.executable).parent / "aoeprov"   # this venv's script
    for unit in ("aoeprov-pull.service", "aoeprov-pull.timer"):
        res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / unit)],
                             capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                             check=False)
        assert res.returncode == 0, res.stderr
        assert "aoeprov" not in res.stderr, res.stderr


def test_render_parses_back_with_prometheus_client() -> None:
    text = render([
        metric("aoeprov_x_seconds", "A help text with \\ and\na newline.", 1.5),
        Metric("aoeprov_y_total", "Counter.", "counter",
               (Sample(3, (("export", 'e0.1 "quoted"\\'),)), Sample(0, (("export", "e\n"),)))),
    ])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["aoeprov_x_seconds"].documentation == "A help text with \\ and\na newline."
    assert families["aoeprov_x_seconds"].samples[0].value == 1.5
    y = families["aoeprov_y"]
    assert y.type == "counter"
    assert [(s.name, s.labels, s.value) for s in y.samples] == [
        ("aoeprov_y_total", {"export": 'e0.1 "quoted"\\'}, 3.0),
        ("aoeprov_y_total", {"export": "e\n"}, 0.0)]


def test_textfile_only_as_prom(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only reads"):
        write_textfile(tmp_path / "x.txt", [])
    with pytest.raises(ValueError, match="must end in _total"):
        Metric("aoeprov_runs", "x", "counter")


@pytest.mark.tools
def test_pull_writes_its_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = ConfigRepo(tmp_path / "config")
    commit = repo.commit({"aoeprov.yaml": IMAGE_SPEC}, "spec")
    root = tmp_path / "root"
    root.mkdir()
    argv = ["pull", str(repo.path), "--root", str(root), "--host", "server2",
            "--metrics-dir", "/srv/metrics"]
    assert main(argv) == 0
    (root / "etc/aoeprov/target.json").write_text("{}\n")
    assert main([*argv, "--mode", "plan"]) == 0
    capsys.readouterr()
    files = os.listdir(root / "srv/metrics")
    assert files == ["aoeprov-pull.prom"]     # no temp file left behind
    families = {f.name: f for f in text_string_to_metric_families(
        (root / "srv/metrics/aoeprov-pull.prom").read_text())}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert values[("aoeprov_pull_pending_changes", ())] == 1
    assert values[("aoeprov_pull_result", (("result", "pending"),))] == 1
    assert values[("aoeprov_pull_result", (("result", "applied"),))] == 0
    assert values[("aoeprov_pull_success", ())] == 1
    assert values[("aoeprov_pull_runs_total", (("result", "applied"),))] == 1
    info = next(s for s in families["aoeprov_pull_commit_info"].samples)
    assert info.labels["applied"] == commit and info.labels["host"] == "server2"
    assert values[("aoeprov_pull_last_run_timestamp_seconds", ())] > 0
    require_tools("git")
