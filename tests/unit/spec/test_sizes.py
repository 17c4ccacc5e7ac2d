from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoeprov.spec.sizes import GIB, MIB, format_size, parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("20G", 20 * GIB),          # lvcreate -L20G
    ("20g", 20 * GIB),
    ("20GiB", 20 * GIB),
    ("20 GiB", 20 * GIB),
    ("512M", 512 * MIB),
    ("512MiB", 512 * MIB),
    ("1K", 1024),
    ("1T", 1024**4),
    ("10GB", 10 * 1000**3),     # decimal units are powers of 1000
    ("10MB", 10 * 1000**2),
    ("1.5G", 3 * GIB // 2),
    ("4096", 4096),
    ("4096B", 4096),
    (4096, 4096),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "reason"), [
    ("20X", "unknown unit 'X'"),
    ("G", "is not a size"),
    ("-1G", "is not a size"),
    ("0", "must be positive"),
    (0, "must be positive"),
    ("1.3B", "whole number of bytes"),
    ("rest", "is not a size"),
    (True, "is not a size"),
])
def test_parse_size_rejects(text: str | int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_size(text)


@pytest.mark.parametrize(("size", "text"), [
    (20 * GIB, "20G"), (MIB, "1M"), (1536 * MIB, "1536M"), (1000, "1000"), (2048, "2K"),
])
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=1, max_value=2**60))
def test_format_then_parse_is_identity(size: int) -> None:
    assert parse_size(format_size(size)) == size
