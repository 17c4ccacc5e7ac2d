"""Every ``tests/facts/<module>/<case>.yaml``: command output in, facts out.

A case names the pure parser it feeds (a ``parse_*`` function, or ``probe_from_outputs``,
of ``aoeprov.resources.<module>``; ``blockdev`` is ``_blockdev``) and holds what the
command printed, captured on a real machine::

    description: what it shows
    command: sfdisk --json d.img        # what printed the output (util-linux 2.38.1)
    parser: parse_sfdisk_json
    output: |                           # the parser's one argument, or
      {...}
    output_file: tests/unit/resources/data/mountinfo-debian12   # a long capture, or
    args: [0, "TYPE=ext3\\n", null]      # every argument, in order
    facts: {...}                        # to_data(result), exactly, or
    facts_has: [...]                    # items (list) / keys (mapping) the result holds
    error: {type: ValueError, match: "regex"}   # instead: the output is refused so

A parser taking bytes gets the output encoded as UTF-8. Every parser has a case.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from aoeprov.reconciler.data import to_data

REPO = Path(__file__).resolve().parents[3]
FACTS_DIR = REPO / "tests" / "facts"
CASES = sorted(FACTS_DIR.glob("*/*.yaml"))
KEYS = frozenset({"description", "command", "parser", "output", "output_file", "args", "facts",
                  "facts_has", "error"})
PARSER = re.compile(r"^(parse_\w+|probe_from_outputs)$")


def module_of(directory: str) -> ModuleType:
    for name in (directory, f"_{directory}"):
        try:
            return importlib.import_module(f"aoeprov.resources.{name}")
        except ModuleNotFoundError:
            continue
    pytest.fail(f"tests/facts/{directory}: no module aoeprov.resources.{directory} "
                f"or _{directory}", pytrace=False)


def parsers() -> list[str]:
    """Every parser of every resource module, as module/function."""
    found = []
    for path in sorted((REPO / "aoeprov" / "resources").glob("*.py")):
        mod = importlib.import_module(f"aoeprov.resources.{path.stem}")
        found += [f"{path.stem.lstrip('_')}/{name}" for name, fn in vars(mod).items()
                  if PARSER.match(name) and inspect.isfunction(fn)
                  and fn.__module__ == mod.__name__]
    return found


def arguments(case: dict[str, Any], fn: Any, where: str) -> list[Any]:
    given = [k for k in ("output", "output_file", "args") if k in case]
    if len(given) != 1:
        pytest.fail(f"{where}: give exactly one of output, output_file, args (got {given})",
                    pytrace=False)
    if "args" in case:
        return list(case["args"])
    text = case["output"] if "output" in case else (REPO / case["output_file"]).read_text()
    first = next(iter(inspect.signature(fn).parameters))
    wants_bytes = typing.get_type_hints(fn).get(first) is bytes
    return [text.encode() if wants_bytes else text]


def run_case(path: Path) -> None:
    where = f"{path.parent.name}/{path.name}"
    case = yaml.safe_load(path.read_text())
    unknown = sorted(set(case) - KEYS)
    if unknown:
        pytest.fail(f"{where}: unknown keys {unknown}", pytrace=False)
    if sum(k in case for k in ("facts", "facts_has", "error")) != 1 or "command" not in case:
        pytest.fail(f"{where}: say `command:` and one of facts, facts_has, error", pytrace=False)
    if not PARSER.match(str(case.get("parser"))):
        pytest.fail(f"{where}: parser {case.get('parser')!r} is not a parse_* function",
                    pytrace=False)
    fn = getattr(module_of(path.parent.name), case["parser"])
    args = arguments(case, fn, where)
    if "error" in case:
        exc_type = getattr(builtins, case["error"]["type"])
        with pytest.raises(exc_type, match=case["error"].get("match")):
            fn(*args)
        return
    got = to_data(fn(*args))
    if "facts" in case:
        assert got == case["facts"]
        return
    want = case["facts_has"]
    if isinstance(want, dict):
        assert {k: got.get(k) for k in want} == want
    else:
        missing = [item for item in want if item not in got]
        assert not missing, f"{where}: not in the facts: {missing}"


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_fact_case(path: Path) -> None:
    run_case(path)


def test_every_parser_has_a_case() -> None:
    covered = set()
    for path in CASES:
        covered.add(f"{path.parent.name}/{yaml.safe_load(path.read_text()).get('parser')}")
    missing = [p for p in parsers() if p not in covered]
    assert not missing, f"parsers without a case in tests/facts/: {missing}"


@pytest.mark.parametrize(("case", "complaint"), [
    ("command: x\nparser: parse_fstab\noutput: ''\n", "one of facts, facts_has, error"),
    ("command: x\nparser: parse_fstab\noutput: ''\nfact: []\n", "unknown keys ['fact']"),
    ("command: x\nparser: gather\noutput: ''\nfacts: []\n", "is not a parse_* function"),
    ("command: x\nparser: parse_fstab\noutput: ''\nargs: []\nfacts: []\n", "exactly one of"),
])
def test_a_case_that_checks_nothing_is_refused(tmp_path: Path, case: str,
                                               complaint: str) -> None:
    path = tmp_path / "fstab" / "bad.yaml"
    path.parent.mkdir()
    path.write_text(case)
    with pytest.raises(pytest.fail.Exception, match=re.escape(complaint)):
        run_case(path)
