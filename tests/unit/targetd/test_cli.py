"""``aoeprov target`` argument handling (the serving itself is tested in tests/net)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aoeprov.cli import build_parser
from aoeprov.cli.target import export_source, stats_reporter
from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig, render_config


def source(*argv: str) -> list[ExportConfig]:
    args = build_parser().parse_args(["target", *argv])
    return list(export_source(args)())


def test_vblade_arguments_mean_what_they_mean_for_vblade() -> None:
    assert source("0", "1", "eth0", "/dev/vg0/storage1") == [
        ExportConfig(0, 1, "/dev/vg0/storage1", ("eth0",), write_mode="writeback",
                     buffer_count=16)]  # vblade's -b default, not the spec's
    assert source("-r", "-s", "-b", "32", "-m", "02:00:00:00:00:0A,02:00:00:00:00:0b",
                  "-o", "0x10", "-l", "2048", "7", "3", "veth1", "/srv/img") == [
        ExportConfig(7, 3, "/srv/img", ("veth1",), read_only=True, offset=16, length=2048,
                     allowed_macs=("02:00:00:00:00:0a", "02:00:00:00:00:0b"),
                     write_mode="sync", buffer_count=32)]
    (direct,) = source("-d", "0", "1", "eth0", "/a")
    assert direct.direct and direct.write_mode == "writeback"  # vblade's -d: O_DIRECT only
    (both,) = source("-d", "-s", "0", "1", "eth0", "/a")
    assert both.direct and both.write_mode == "sync"


def test_config_file_source_is_reread_each_time(tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    path.write_text(render_config([ExportConfig(0, 1, "/a", ("eth0",))]))
    args = build_parser().parse_args(["target", "--config", str(path)])
    read = export_source(args)
    assert [e.slot for e in read()] == [1]
    path.write_text(render_config([ExportConfig(0, 2, "/a", ("eth0",))]))
    assert [e.slot for e in read()] == [2]
    path.unlink()
    with pytest.raises(TargetError, match="cannot read"):
        read()


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one of"),
    (["0", "1", "eth0"], "all of SHELF SLOT NETIF PATH"),
    (["--config", "x.json", "0", "1", "eth0", "/a"], "exactly one of"),
    (["--config", "x.json", "-r"], "apply to SHELF SLOT NETIF PATH only"),
    (["--spec", "s.yaml"], "--host"),
    (["-o", "-1", "0", "1", "eth0", "/a"], ">= 0"),
])
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(TargetError, match=message):
        source(*argv)


def test_stats_reporter_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stats.json"
    stats_reporter(path)({"frames_in": 3, "exports": []})
    assert json.loads(path.read_text()) == {"frames_in": 3, "exports": []}
    assert '"frames_in": 3' in capsys.readouterr().err


def test_state_dir_and_force(tmp_path: Path) -> None:
    args = build_parser().parse_args(["target", "0", "1", "eth0", "/a"])
    assert (str(args.state_dir), args.force) == ("/var/lib/aoeprov/target", False)
    args = build_parser().parse_args(["target", "--state-dir", str(tmp_path), "--force",
                                      "0", "1", "eth0", "/a"])
    assert (args.state_dir, args.force) == (tmp_path, True)
