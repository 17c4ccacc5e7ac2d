"""The benchmarks' round-by-round ratios (tests/bench/pairs.py): pure arithmetic."""

from __future__ import annotations

import pytest

from tests.bench.pairs import by_round, describe, round_ratios


def test_rows_are_grouped_by_case_and_server_in_round_order() -> None:
    rows = [("seq", "builtin", 400.0), ("seq", "vblade", 200.0), ("rand", "builtin", 9.0),
            ("seq", "vblade", 300.0), ("seq", "builtin", 150.0)]
    assert by_round(rows) == {"seq": {"builtin": [400.0, 150.0], "vblade": [200.0, 300.0]},
                              "rand": {"builtin": [9.0]}}


def test_each_round_is_its_own_ratio_not_the_ratio_of_medians() -> None:
    # a fast round and a slow one: the medians' ratio (275/250 = 1.1) hides that the
    # built-in target lost one round by half and won the other by 2x
    ours, theirs = [400.0, 150.0], [200.0, 300.0]
    assert round_ratios(ours, theirs) == [2.0, 0.5]
    assert describe(round_ratios(ours, theirs)) == "median 1.25, range 0.50-2.00 (2.00 0.50)"


def test_unequal_rounds_are_refused_and_nothing_gives_a_dash() -> None:
    with pytest.raises(ValueError, match="2 rounds against 1"):
        round_ratios([1.0, 2.0], [1.0])
    assert describe([]) == "-"
