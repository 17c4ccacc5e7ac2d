"""The generic plan-case runner: ``tests/plan/<kind>/<case>.yaml`` files are data.

A case file holds::

    description: what it checks
    spec_file: examples/tutorial.yaml   # relative to the repository, or
    spec: |                             # the spec inline
      version: 1 ...
    host: server1
    context: {sandboxed: false, allow_destroy: false, systemd: false, device_map: {},
              prune: false}
    state:                               # optional: what earlier planners predicted
      devices: {/dev/etherd/e0.1p1: {exists: true, predicted: true}}
      files: {}
      pending: []
    facts: {...}                         # the kind's facts record (gather's return type)
    actions:                             # every action, in order; keys are checked against
      - {type: WriteFile, op: create, target: /etc/fstab}    # Action.to_json() (a subset)
    noops: [{target: /storage, reason: ...}]
    error: {type: HostError, match: "regex"}   # instead of actions: planning must fail so

Extra checks on an action: ``content_has: [substring, ...]`` and ``summary_has``.
Every case says ``actions:`` (an empty list means "none") or ``error:``, never both;
``noops`` left out are not checked. A key the runner does not know is an error (a
misspelt ``action:`` would otherwise check nothing).
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

import aoeprov.errors
from aoeprov.reconciler.actions import Action, Noop
from aoeprov.reconciler.data import from_data
from aoeprov.reconciler.engine import RESOURCE_MODULES, load_resource
from aoeprov.reconciler.resource import PlanContext
from aoeprov.reconciler.state import BlockDeviceState, State
from aoeprov.spec import load_spec, load_spec_text
from aoeprov.spec.model import Spec

REPO = Path(__file__).resolve().parents[3]
PLAN_DIR = REPO / "tests" / "plan"
_EXTRA = ("content_has", "summary_has")
CASE_KEYS = frozenset({"description", "spec_file", "spec", "host", "context", "state", "facts",
                       "actions", "noops", "error", "state_after"})


def case_files(kinds: typing.Iterable[str] | None = None) -> list[Path]:
    wanted = set(kinds) if kinds is not None else set(RESOURCE_MODULES)
    return sorted(p for p in PLAN_DIR.glob("*/*.yaml") if p.parent.name in wanted)


def case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load_case_spec(case: dict[str, Any]) -> Spec:
    if "spec_file" in case:
        return load_spec(REPO / case["spec_file"])
    return load_spec_text(case["spec"], "<case spec>")


def facts_type(mod: Any) -> Any:
    return typing.get_type_hints(mod.gather)["return"]


def build_state(host: str, data: dict[str, Any] | None) -> State:
    data = data or {}
    files = {k: None if v is None else from_data(bytes, v)
             for k, v in (data.get("files") or {}).items()}
    state = State(hostname=host, files=files,
                  pending=set(data.get("pending", [])))
    for path, dev in (data.get("devices") or {}).items():
        state.devices[path] = from_data(BlockDeviceState, {"path": path, **dev})
    return state


def check_subset(what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "content_has":
            for piece in value:
                assert piece in str(got.get("content")), f"{what}: content lacks {piece!r}"
        elif key == "summary_has":
            assert value in str(got.get("summary")), f"{what}: summary lacks {value!r}"
        else:
            assert key in got, f"{what}: no key {key!r} in {got}"
            assert got[key] == value, f"{what}: {key} is {got[key]!r}, expected {value!r}"


def check_list(what: str, got: list[Action] | list[Noop], want: list[dict[str, Any]]) -> None:
    got_json = [g.to_json() for g in got]
    assert len(got_json) == len(want), (
        f"{what}: got {len(got_json)}, expected {len(want)}:\n"
        + "\n".join(f"  {g}" for g in got_json))
    for i, (g, w) in enumerate(zip(got_json, want, strict=True)):
        check_subset(f"{what}[{i}]", g, w)


def check_case_shape(path: Path, case: Any) -> None:
    """A case that checks nothing is refused: it must say what planning gives."""
    where = case_id(path)
    if not isinstance(case, dict):
        pytest.fail(f"{where}: a case is a mapping", pytrace=False)
    unknown = sorted(set(case) - CASE_KEYS)
    if unknown:
        pytest.fail(f"{where}: unknown keys {unknown} (known: {sorted(CASE_KEYS)})",
                    pytrace=False)
    if ("actions" in case) == ("error" in case):
        pytest.fail(f"{where}: say `actions:` (an empty list for none) or `error:`, "
                    f"exactly one of them", pytrace=False)
    if ("spec" not in case and "spec_file" not in case) or "host" not in case:
        pytest.fail(f"{where}: needs `spec:` or `spec_file:`, and `host:`", pytrace=False)


def run_case(path: Path) -> State:
    case = yaml.safe_load(path.read_text())
    check_case_shape(path, case)
    kind = path.parent.name
    mod = load_resource(kind)
    spec = load_case_spec(case)
    me = spec.host(case["host"])
    ctx_data = case.get("context") or {}
    ctx = PlanContext(spec=spec, me=me, allow_destroy=ctx_data.get("allow_destroy", False),
                      sandboxed=ctx_data.get("sandboxed", False),
                      device_map=ctx_data.get("device_map", {}),
                      systemd=ctx_data.get("systemd", False),
                      prune=ctx_data.get("prune", False))
    facts = from_data(facts_type(mod), case.get("facts") or {})
    state = build_state(me.name, case.get("state"))
    if "error" in case:
        err = case["error"]
        exc_type = getattr(aoeprov.errors, err["type"])
        with pytest.raises(exc_type, match=err.get("match")):
            mod.plan(ctx, facts, state)
        return state
    result = mod.plan(ctx, facts, state)
    check_list("actions", list(result.actions), case["actions"] or [])
    if "noops" in case:
        check_list("noops", list(result.noops), case["noops"] or [])
    if "settled" in (case.get("state_after") or {}):
        assert sorted(state.settled) == sorted(case["state_after"]["settled"])
    for key, value in (case.get("state_after") or {}).get("files", {}).items():
        got = state.files.get(key)
        if isinstance(value, dict) and "has" in value:
            for piece in value["has"]:
                assert got is not None and from_data(bytes, piece) in got, \
                    f"state file {key} lacks {piece!r}"
        else:
            want = None if value is None else from_data(bytes, value)
            assert got == want, f"state file {key}: {got!r} != {want!r}"
    return state


def matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None
