from __future__ import annotations

import json
from pathlib import Path

import pytest

from aoeprov.cli import main
from aoeprov.spec.schema import load_schema

ROOT = Path(__file__).parents[3]
TUTORIAL = str(ROOT / "examples" / "tutorial.yaml")
BAD = Path(__file__).parent / "bad"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", TUTORIAL]) == 0
    assert capsys.readouterr().out.startswith(f"{TUTORIAL}: valid")


def test_validate_prints_every_error_of_every_file(capsys: pytest.CaptureFixture[str]) -> None:
    first = BAD / "several-errors-sorted.yaml"
    second = BAD / "shelf-broadcast.yaml"
    assert main(["validate", str(first), TUTORIAL, str(second)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{first}:10:48: exports[0].slot: 256 is out of range 0-254",
        f"{first}:12:13: exports[1].target: unknown target 'nope' (known: data)",
        f"{first}:16:16: exports[1].read_only: expected boolean, got string 'perhaps'",
        f"{second}:10:12: exports[0].shelf: 65535 (0xffff) is the AoE broadcast shelf address; "
        "use 0-65534",
        f"{TUTORIAL}: valid (2 hosts, 1 targets, 1 exports, 1 disks, 1 mounts)",
    ]


def test_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "slot-broadcast.yaml"
    assert main(["validate", "--json", str(path), TUTORIAL]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["files"] == [{"file": str(path), "valid": False},
                               {"file": TUTORIAL, "valid": True}]
    (error,) = report["errors"]
    assert error == {"file": str(path), "line": 11, "col": 11, "field": "exports[0].slot",
                     "message": "255 (0xff) is the AoE broadcast slot address; use 0-254"}


def test_validate_broken_yaml_exits_1_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(b"version: 1\nhosts:\n\t- x\n")
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{path}:3:1: <document>: YAML syntax error: a tab")
    assert "Traceback" not in captured.err


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == load_schema()
