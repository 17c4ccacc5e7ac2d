"""Shared test plumbing.

Tiers are pytest markers: unmarked tests are pure unit tests; ``tools`` runs real
programs from the Debian packages ``make setup`` installs (sfdisk, mkfs, cpio,
systemd-analyze, git, ansible-playbook...; no root, no network); ``net`` needs root
and network namespaces, ``storage`` root and loop devices, ``vm`` qemu and a real
Debian kernel. A test that cannot run fails with the reason: it never skips
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


def require_mmsg() -> bool:
    """The target's batched path needs recvmmsg/sendmmsg from libc; True, or the test fails."""
    from aoeprov.link.mmsg import mmsg_available

    if not mmsg_available():
        pytest.fail("libc has no recvmmsg/sendmmsg here: the target's batched, zero-copy path "
                    "cannot be tested (glibc >= 2.12 has them)", pytrace=False)
    return True


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
