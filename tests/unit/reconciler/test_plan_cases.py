"""Every ``tests/plan/<kind>/<case>.yaml``: facts in, actions and no-op reasons out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aoeprov.reconciler.kinds import RESOURCE_ORDER
from tests.unit.reconciler.plan_cases import (
    PLAN_DIR,
    case_files,
    case_id,
    check_case_shape,
    run_case,
)

CASES = case_files()
SHARED_SPECS = "specs"   # tests/plan/specs/: spec files cases name with spec_file:


@pytest.mark.parametrize("path", CASES, ids=[case_id(p) for p in CASES])
def test_plan_case(path: Path) -> None:
    run_case(path)


def test_every_kind_has_cases_and_every_case_dir_is_a_kind() -> None:
    kinds = {p.parent.name for p in CASES}
    assert kinds == set(RESOURCE_ORDER), f"kinds without cases: {set(RESOURCE_ORDER) - kinds}"
    dirs = {p.name for p in PLAN_DIR.iterdir() if p.is_dir()} - {SHARED_SPECS}
    assert dirs <= set(RESOURCE_ORDER), f"not a resource kind: {dirs - set(RESOURCE_ORDER)}"
    strays = sorted(str(p.relative_to(PLAN_DIR)) for p in PLAN_DIR.rglob("*")
                    if p.is_file() and p.suffix != ".yaml" and "__pycache__" not in p.parts)
    assert not strays, f"not read as plan cases (they end in .yaml): {strays}"


@pytest.mark.parametrize(("case", "complaint"), [
    ({"spec_file": "x", "host": "h", "facts": {}}, "say `actions:`"),
    ({"spec_file": "x", "host": "h", "actions": [], "error": {"type": "PlanError"}},
     "exactly one of them"),
    ({"spec_file": "x", "host": "h", "action": []}, "unknown keys ['action']"),
    ({"host": "h", "actions": []}, "needs `spec:` or `spec_file:`"),
])
def test_a_case_that_checks_nothing_is_refused(case: dict[str, Any], complaint: str) -> None:
    with pytest.raises(pytest.fail.Exception, match=re.escape(complaint)):
        check_case_shape(PLAN_DIR / "fstab" / "bad.yaml", case)
