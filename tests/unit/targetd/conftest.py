"""Fixtures: a target engine over a backing file (see ``frames.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import TargetProtocol
from tests.conftest import require_mmsg

from .frames import LENGTH, OFFSET, SHELF, SLOT, Harness, make_backing


@pytest.fixture
def mmsg() -> None:
    """For tests of the batched path: fails with the reason where libc lacks *mmsg."""
    require_mmsg()


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    return make_backing(tmp_path / "disk.img")


@pytest.fixture
def make_target(backing: Path) -> Iterator[Callable[..., Harness]]:
    engines: list[TargetProtocol] = []

    def make(**options: object) -> Harness:
        config = ExportConfig(**{  # type: ignore[arg-type]
            "shelf": SHELF, "slot": SLOT, "path": str(backing), "interfaces": ("eth0",),
            "offset": OFFSET, "length": LENGTH, "write_mode": "writeback", **options})
        engine = TargetProtocol([Export(config, hostname="testhost")])
        engines.append(engine)
        return Harness(backing, engine)

    yield make
    for engine in engines:
        for exp in engine.exports:
            exp.close()


@pytest.fixture
def target(make_target: Callable[..., Harness]) -> Harness:
    return make_target()
