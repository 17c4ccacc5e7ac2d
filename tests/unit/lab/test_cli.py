"""``aoeprov lab`` without a running lab: parsing, and the messages a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from aoeprov.cli import build_parser, main


def test_exec_takes_the_command_after_the_separator(tmp_path: Path) -> None:
    args = build_parser().parse_args(["lab", "--state-dir", str(tmp_path), "exec", "server1",
                                      "--", "df", "-h", "/storage"])
    assert (args.lab_command, args.name) == ("exec", "server1")
    assert args.argv == ["df", "-h", "/storage"]


def test_up_collects_size_overrides(tmp_path: Path) -> None:
    args = build_parser().parse_args(["lab", "up", "spec.yaml", "--mtu", "9000",
                                      "--size-override", "a=2G", "--size-override", "b=1G",
                                      "--export-server", "vblade"])
    assert (args.mtu, args.size_override, args.export_server) == (9000, ["a=2G", "b=1G"],
                                                                  "vblade")


def test_down_without_a_lab_is_a_no_op(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--state-dir", str(tmp_path), "down"]) == 0
    assert "no lab is running" in capsys.readouterr().out


def test_exec_without_a_lab_says_how_to_start_one(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "--state-dir", str(tmp_path), "exec", "server1", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "no lab is running" in err and "aoeprov lab up SPEC" in err


def test_up_refuses_an_oversized_tutorial_before_booting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tutorial = Path(__file__).resolve().parents[3] / "examples" / "tutorial.yaml"
    assert main(["lab", "--state-dir", str(tmp_path), "up", str(tutorial)]) == 1
    assert "--size-override storage1=2G" in capsys.readouterr().err
    assert not (tmp_path / "lab.json").exists()
