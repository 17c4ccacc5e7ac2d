"""Shared test plumbing.

Tiers are pytest markers: unmarked tests are pure unit tests; ``net`` needs root
and network namespaces, ``storage`` root and loop devices, ``vm`` qemu and a real
Debian kernel. A tier test that cannot run fails with the reason: it never skips
silently (``make test`` installs everything every tier needs).
"""

from __future__ import annotations

import os
import shutil

import pytest

TIER_MARKERS = ("net", "storage", "vm")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (run `make test` as root)", pytrace=False)


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run `make setup` (installs the Debian packages)",
                    pytrace=False)


@pytest.fixture(autouse=True)
def _tier_needs_root(request: pytest.FixtureRequest) -> None:
    for marker in TIER_MARKERS:
        if request.node.get_closest_marker(marker):
            require_root(f"the {marker} tier")
