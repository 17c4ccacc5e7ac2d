"""Claims on this host: a second holder of a shelf.slot learns who the first is."""

from __future__ import annotations

import os

from aoeprov.targetd.claims import LocalClaims


def test_a_second_claim_names_the_holder() -> None:
    first, second = LocalClaims(), LocalClaims()
    try:
        assert first.take(65001, 200) is None
        assert first.take(65001, 200) is None  # our own claim again: fine
        other = second.take(65001, 200)
        assert other is not None and (other.shelf, other.slot) == (65001, 200)
        assert str(other).startswith(f"e65001.200 is already served by pid {os.getpid()} "
                                     f"on this host")
        first.keep_only([])  # released: free for the next one
        assert second.take(65001, 200) is None
    finally:
        first.close()
        second.close()
