"""Ratios of two servers round by round, beside the ratio of their medians.

On the development VM one phase's rate moves by up to 10x from one round to the next
(the host's cache of the virtual disk, its balloon, other guests: the same server read
sequentially at 45 and at 541 MB/s within minutes), so the ratio of two medians may set
a round that met a fast disk against one that met a slow one. Within a round the
servers run seconds apart: the ratio of each round, with the median and the range of
them, says how steady a verdict is.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def by_round(rows: Iterable[tuple[Key, str, float]]) -> dict[Key, dict[str, list[float]]]:
    """(case, server, rate) rows in the order they ran, as case -> server -> rates by
    round (every round runs every case once per server)."""
    grouped: dict[Key, dict[str, list[float]]] = {}
    for case, server, rate in rows:
        grouped.setdefault(case, {}).setdefault(server, []).append(rate)
    return grouped


def round_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """ours / theirs, round by round."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} rounds against {len(theirs)}")
    return [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]


def describe(ratios: Sequence[float]) -> str:
    """'median 0.85, range 0.25-1.81 (0.61 0.25 ...)': the rounds' ratios in order."""
    if not ratios:
        return "-"
    each = " ".join(f"{r:.2f}" for r in ratios)
    return (f"median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-"
            f"{max(ratios):.2f} ({each})")
