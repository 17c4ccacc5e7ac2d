"""Every file in bad/ is an invalid spec whose header lists the exact errors.

Header lines read ``# expect: LINE:COL: FIELD: MESSAGE``; the loader must
report exactly those issues (line, column, field and message equal), and
nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aoeprov.errors import SpecError
from aoeprov.spec import load_spec

BAD = Path(__file__).parent / "bad"
EXPECT = re.compile(r"^# expect: (?P<line>\d+):(?P<col>\d+): (?P<field>\S+): (?P<message>.+)$")
CASES = sorted(BAD.glob("*.yaml"))


def expectations(path: Path) -> list[tuple[int, int, str, str]]:
    found = []
    for line in path.read_text().splitlines():
        match = EXPECT.match(line)
        if match:
            found.append((int(match["line"]), int(match["col"]), match["field"],
                          match["message"]))
    return found


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_spec_reports_exact_position_and_field(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' header"
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    got = caught.value.issues
    assert [(i.line, i.col, i.field) for i in got] == [e[:3] for e in expected]
    for issue, (_, _, _, message) in zip(got, expected, strict=True):
        assert issue.message == message
        assert issue.file == str(path)
