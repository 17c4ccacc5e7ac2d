"""Fixtures of the storage tier (helpers in ``storagelab``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.storage.storagelab import TOOLS, Sandbox, cleanup, loops_under, make_image, mounts_under


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    require_tools(*TOOLS)
    root = tmp_path / "root"
    root.mkdir()
    box = Sandbox(root=root, image=make_image(tmp_path / "e0.1.img"), dir=tmp_path)
    try:
        yield box
    finally:
        cleanup(tmp_path, root)
        assert not mounts_under(root), "mounts left behind"
        assert not loops_under(tmp_path, pending_autoclear=False), "loop devices left behind"
