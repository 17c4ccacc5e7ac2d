"""The ``aoeprov`` command finds its subcommands, and a run imports only its own."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import aoeprov.cli
from aoeprov.cli import _command_in, main

REPO = Path(__file__).resolve().parents[2]


def test_every_command_module_is_named_as_its_command() -> None:
    """What lets a run import its command's module alone."""
    for info in pkgutil.iter_modules(aoeprov.cli.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"aoeprov.cli.{info.name}")
            assert info.name == module.NAME


@pytest.mark.parametrize(("argv", "word"), [
    (["plan", "spec.yaml"], "plan"),
    (["--log-level", "debug", "apply", "spec.yaml"], "apply"),
    (["--log-level=info", "target", "0", "1"], "target"),
    (["--version"], None),
    ([], None),
])
def test_the_command_word(argv: list[str], word: str | None) -> None:
    assert _command_in(argv) == word


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("apply", "plan", "lab", "target", "pull", "validate"))


def test_a_mistyped_command_is_named_among_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["plann", "spec.yaml"])
    assert stop.value.code == 1
    assert "invalid choice: 'plann'" in capsys.readouterr().err


def test_validate_imports_neither_the_lab_nor_the_target() -> None:
    code = ("import sys; from aoeprov.cli import main; "
            f"rc = main(['validate', {str(REPO / 'examples' / 'tutorial.yaml')!r}]); "
            "print(rc, sorted(m for m in sys.modules "
            "if m.startswith(('aoeprov.lab', 'aoeprov.targetd'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
