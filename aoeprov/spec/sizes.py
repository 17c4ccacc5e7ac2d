"""Sizes as people write them in a spec, and back.

``20G`` means 20 GiB, as ``lvcreate -L20G`` does; ``K``/``M``/``G``/``T``/``P``
with or without ``iB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB``/``PB``
powers of 1000, and a plain integer is a count of bytes.
"""

from __future__ import annotations

import re

KIB = 1024
MIB = 1024**2
GIB = 1024**3
SECTOR = 512
# AoE carries ATA commands with 48-bit sector numbers: no disk beyond 2^48 sectors (128 PiB)
MAX_AOE_SIZE = 2**48 * SECTOR

_UNITS: dict[str, int] = {"": 1, "B": 1}
for _i, _letter in enumerate("KMGTP", start=1):
    _UNITS[_letter] = 1024**_i
    _UNITS[f"{_letter}IB"] = 1024**_i
    _UNITS[f"{_letter}B"] = 1000**_i

_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*$")

# Largest unit first, so format_size picks the shortest exact spelling.
_FORMAT_UNITS = (("P", 1024**5), ("T", 1024**4), ("G", GIB), ("M", MIB), ("K", KIB))


def parse_size(value: str | int) -> int:
    """Return ``value`` in bytes; raise ``ValueError`` with a readable reason.

    Fractions are allowed when they come out to whole bytes (``1.5G``).
    """
    if isinstance(value, bool):  # bool is an int subclass; ``size: yes`` is a mistake
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"size must be positive, not {value}")
        return value
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size (examples: 20G, 512MiB, 10GB, 1048576)")
    unit = match["unit"].upper()
    if unit not in _UNITS:
        raise ValueError(f"{value!r} has an unknown unit {match['unit']!r} "
                         "(use K, M, G, T, P with or without iB, or KB, MB, GB, TB, PB)")
    number = match["number"]
    whole, _, frac = number.partition(".")
    scale = _UNITS[unit]
    numerator = int(whole + frac) * scale
    denominator = 10 ** len(frac)
    if numerator % denominator:
        raise ValueError(f"{value!r} is not a whole number of bytes")
    size = numerator // denominator
    if size <= 0:
        raise ValueError(f"size must be positive, not {value!r}")
    return size


def format_size(size: int) -> str:
    """The shortest exact spelling of ``size`` bytes that ``parse_size`` reads back."""
    if size <= 0:
        raise ValueError(f"size must be positive, not {size}")
    for suffix, unit in _FORMAT_UNITS:
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
