"""Whole-batch arithmetic for uniform batches: every frame a READ EXT (or every frame
a WRITE EXT) for one export.

Bulk transfers arrive that way, window after window, and for them the per-frame
Python of ``BatchServer`` is most of the target's CPU. Here a batch of ``n``
request headers (36 bytes each, laid end to end) is handled with a few operations
on Python integers that hold one 64-bit lane per frame, each of which runs in C
over the whole batch:

- the fixed fields of every header (destination MAC, ethertype, version, shelf,
  slot, command, flags, opcode) are compared with one mask and one ``==``;
- LBAs and sector counts are gathered into lanes with strided slices, and range
  checks become "add a bias, look at bit 63 of every lane" (no lane can carry
  into the next: LBAs are 48 bits, counts 8);
- the replies' headers come from the requests' with one shift (source MAC into
  the destination), two masks and one OR.

Anything not uniform, or any frame failing a check, returns None and the batch
goes through the per-frame path, which gives every frame its own answer.
``tests/unit/targetd/test_uniform.py`` checks each function against the per-frame
formulas on generated headers.
"""

from __future__ import annotations

import array
import functools
import sys
from dataclasses import dataclass

from aoeprov.aoe import ata
from aoeprov.aoe.wire import ATA_OVERHEAD, ETH_P_AOE, FLAG_RESPONSE

HEADER = ATA_OVERHEAD  # Ethernet 14 + AoE 10 + ATA 12
LANE = 8               # bytes per lane
TOP = 1 << 63
VERSION_BITS = 0x10
READ_AFLAGS = ata.AFLAG_LBA48
WRITE_AFLAGS = ata.AFLAG_LBA48 | ata.AFLAG_WRITE

# byte offsets in a request header (see engine.ATA_REQUEST)
SRC, ETHERTYPE, VERFL, ERR, SHELF, SLOT, CMD = 6, 12, 14, 15, 16, 18, 19
AFLAGS, FEATURE, COUNT, OPCODE, LBA, LBA_BYTES = 24, 25, 26, 27, 28, 6


def _record(fields: dict[int, bytes]) -> bytes:
    """One 36-byte header with ``fields`` (offset → bytes) set and zeros elsewhere."""
    record = bytearray(HEADER)
    for offset, value in fields.items():
        record[offset:offset + len(value)] = value
    return bytes(record)


def _ones(size: int) -> bytes:
    return b"\xff" * size


# what must match in every request, and what the replies keep of the requests
CHECKED = _record({0: _ones(6), ETHERTYPE: _ones(2), VERFL: _ones(1), SHELF: _ones(2),
                   SLOT: _ones(1), CMD: _ones(1), AFLAGS: _ones(1), OPCODE: _ones(1)})
KEPT = _record({ETHERTYPE: _ones(2), VERFL: _ones(1), SHELF: _ones(2), SLOT: _ones(1),
                CMD: _ones(1), 20: _ones(4), AFLAGS: _ones(1), LBA: _ones(LBA_BYTES)})
DESTINATION = _record({0: _ones(6)})


@dataclass(frozen=True)
class Lanes:
    """Constants for batches of ``n`` frames (cached: a target sees few distinct ``n``)."""

    n: int
    ones: int        # 1 in every lane
    top: int         # bit 63 of every lane
    all_but_last: int  # every bit of lanes 0..n-2

    def rep(self, value: int) -> int:
        """``value`` (< 2**64) in every lane."""
        return value * self.ones


@functools.lru_cache(maxsize=512)
def lanes(n: int) -> Lanes:
    ones = int.from_bytes((b"\x01" + bytes(LANE - 1)) * n, "little")
    return Lanes(n, ones, ones << 63, (1 << (64 * (n - 1))) - 1)


@functools.lru_cache(maxsize=64)
def _header_masks(n: int) -> tuple[int, int, int]:
    """(checked, kept, destination) masks over ``n`` records, as big-endian integers."""
    return (int.from_bytes(CHECKED * n, "big"), int.from_bytes(KEPT * n, "big"),
            int.from_bytes(DESTINATION * n, "big"))


@functools.lru_cache(maxsize=256)
def expected_headers(n: int, mac: bytes, shelf: int, slot: int, write: bool) -> int:
    """The checked fields of ``n`` requests that are all READ EXT (WRITE EXT) for shelf.slot."""
    record = _record({0: mac, ETHERTYPE: ETH_P_AOE.to_bytes(2, "big"),
                      VERFL: bytes([VERSION_BITS]), SHELF: shelf.to_bytes(2, "big"),
                      SLOT: bytes([slot]), CMD: b"\x00",
                      AFLAGS: bytes([WRITE_AFLAGS if write else READ_AFLAGS]),
                      OPCODE: bytes([ata.ATA_WRITE_EXT if write else ata.ATA_READ_EXT])})
    return int.from_bytes(record * n, "big")


@functools.lru_cache(maxsize=256)
def _reply_constant(n: int, mac: bytes, status: int, error: int) -> int:
    record = _record({SRC: mac, VERFL: bytes([FLAG_RESPONSE]), FEATURE: bytes([error]),
                      OPCODE: bytes([status])})
    return int.from_bytes(record * n, "big")


def matches(headers: bytes, n: int, mac: bytes, shelf: int, slot: int, write: bool) -> bool:
    """Every one of the ``n`` headers is a READ EXT (WRITE EXT) to ``mac`` for shelf.slot."""
    checked, _kept, _dst = _header_masks(n)
    value = int.from_bytes(headers, "big")
    return value & checked == expected_headers(n, mac, shelf, slot, write)


def gather(headers: bytes, n: int, offset: int, size: int) -> int:
    """The ``size``-byte little-endian field at ``offset`` of every header, one per lane."""
    packed = bytearray(LANE * n)
    for k in range(size):
        packed[k::LANE] = headers[offset + k::HEADER]
    return int.from_bytes(packed, "little")


def all_at_most(values: int, limit: int, lane: Lanes) -> bool:
    """Every lane of ``values`` (each < 2**63) is <= ``limit`` (< 2**63)."""
    return (values + lane.rep(TOP - 1 - limit)) & lane.top == 0


def all_at_least(values: int, floor: int, lane: Lanes) -> bool:
    """Every lane of ``values`` (each < 2**63) is >= ``floor`` (>= 1)."""
    return (values + lane.rep(TOP - floor)) & lane.top == lane.top


def all_fit(needs: int, sizes: int, lane: Lanes) -> bool:
    """Every lane of ``needs`` is <= the same lane of ``sizes`` (both < 2**63)."""
    return (sizes + lane.top - needs) & lane.top == lane.top


def from_list(values: list[int]) -> int:
    """Lanes holding ``values`` (each < 2**64), lane i = values[i]."""
    words = array.array("Q", values)
    if sys.byteorder != "little":
        words.byteswap()
    return int.from_bytes(words.tobytes(), "little")


def contiguous(starts: int, sizes: int, lane: Lanes) -> bool:
    """Lane i+1 of ``starts`` is lane i of ``starts + sizes``, for every i."""
    return (starts + sizes) & lane.all_but_last == starts >> 64


def to_words(values: int, n: int) -> bytes:
    """The lanes as ``n`` native 64-bit words (iovec fields)."""
    return values.to_bytes(LANE * n, "little")


def replies(headers: bytes, n: int, mac: bytes, status: int = ata.STATUS_DRDY,
            error: int = 0) -> bytes:
    """The reply headers: addresses swapped, response flag, ``status``/``error``, count 0.

    The same bytes ``BatchServer`` packs one by one (``ATA_REQUEST.pack_into``).
    """
    _checked, kept, destination = _header_masks(n)
    value = int.from_bytes(headers, "big")
    # the source MAC is 6 bytes after the destination: shifting the big-endian
    # number 48 bits up moves every record's source into its destination
    reply = ((value << 48) & destination) | (value & kept) | _reply_constant(n, mac, status,
                                                                             error)
    return reply.to_bytes(HEADER * n, "big")
