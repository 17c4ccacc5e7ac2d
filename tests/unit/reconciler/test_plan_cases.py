"""Every ``tests/plan/<kind>/<case>.yaml``: facts in, actions and no-op reasons out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.reconciler.plan_cases import case_files, case_id, run_case

CASES = case_files()


@pytest.mark.parametrize("path", CASES, ids=[case_id(p) for p in CASES])
def test_plan_case(path: Path) -> None:
    run_case(path)


def test_every_kind_i_own_has_cases() -> None:
    kinds = {p.parent.name for p in CASES}
    assert {"module", "fstab", "mount", "boot"} <= kinds
