"""Opening an export: what vblade leaves to chance gets a clear message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.export import Export


def open_export(path: Path, **kw: object) -> Export:
    return Export(ExportConfig(4, 1, str(path), ("eth0",), **kw),  # type: ignore[arg-type]
                  hostname="h")


def test_a_read_only_file_needs_dash_r(tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(4096))
    path.chmod(0o444)
    # as root open(O_RDWR) would succeed: the mode bits decide, not access()
    with pytest.raises(TargetError) as err:
        open_export(path)
    assert str(err.value) == (f"export e4.1: {path} is read-only (mode 0444): use -r to "
                              f"export it read-only")
    exp = open_export(path, read_only=True)
    assert exp.sectors == 8
    exp.close()


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.img"
    path.write_bytes(b"")
    with pytest.raises(TargetError) as err:
        open_export(path)
    assert str(err.value) == (f"export e4.1: {path} is empty (0 bytes): there is nothing "
                              f"to export")


def test_less_than_a_sector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.img"
    path.write_bytes(bytes(100))
    with pytest.raises(TargetError, match="is 100 bytes, less than one 512-byte sector"):
        open_export(path)


def test_bytes_past_the_last_sector_are_reported(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(1000))
    with caplog.at_level(logging.WARNING):
        exp = open_export(path)
    assert exp.sectors == 1
    assert (f"export e4.1: {path} is 1000 bytes, not a whole number of 512-byte sectors: "
            f"its last 488 bytes are not exported") in caplog.text
    exp.close()


def test_a_missing_file_is_reported_by_open(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"cannot open .*No such file"):
        open_export(tmp_path / "missing.img")
