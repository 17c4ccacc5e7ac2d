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
from aoeprov.aoe.wire import (
    AFLAGS_OFFSET,
    ATA_FRAME_FIELDS,
    ATA_OVERHEAD,
    CMD_STATUS_OFFSET,
    COMMAND_OFFSET,
    DST_OFFSET,
    ERR_FEATURE_OFFSET,
    ETH_P_AOE,
    ETHERTYPE_OFFSET,
    FLAG_RESPONSE,
    SHELF_OFFSET,
    SLOT_OFFSET,
    SRC_OFFSET,
    VERFL_OFFSET,
    VERSION_BITS,
)

LANE = 8               # bytes per lane
TOP = 1 << 63
READ_AFLAGS = ata.AFLAG_LBA48
WRITE_AFLAGS = ata.AFLAG_LBA48 | ata.AFLAG_WRITE


def _record(fields: dict[int, bytes]) -> bytes:
    """One 36-byte header with ``fields`` (offset → bytes) set and zeros elsewhere."""
    record = bytearray(ATA_OVERHEAD)
    for offset, value in fields.items():
        record[offset:offset + len(value)] = value
    return bytes(record)


def _mask(*names: str) -> bytes:
    """One header with every bit of the fields ``names`` (``wire.ATA_FRAME_FIELDS``) set."""
    spans = (ATA_FRAME_FIELDS[name] for name in names)
    return _record({offset: b"\xff" * size for offset, size in spans})


# what must match in every request, and what the replies keep of the requests
CHECKED = _mask("dst", "ethertype", "verfl", "shelf", "slot", "command", "aflags", "cmd_status")
KEPT = _mask("ethertype", "verfl", "shelf", "slot", "command", "tag", "aflags", "lba")
DESTINATION = _mask("dst")


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
    record = _record({DST_OFFSET: mac, ETHERTYPE_OFFSET: ETH_P_AOE.to_bytes(2, "big"),
                      VERFL_OFFSET: bytes([VERSION_BITS]), SHELF_OFFSET: shelf.to_bytes(2, "big"),
                      SLOT_OFFSET: bytes([slot]), COMMAND_OFFSET: b"\x00",
                      AFLAGS_OFFSET: bytes([WRITE_AFLAGS if write else READ_AFLAGS]),
                      CMD_STATUS_OFFSET: bytes([ata.ATA_WRITE_EXT if write else ata.ATA_READ_EXT])})
    return int.from_bytes(record * n, "big")


@functools.lru_cache(maxsize=256)
def _reply_constant(n: int, mac: bytes, status: int, error: int) -> int:
    record = _record({SRC_OFFSET: mac, VERFL_OFFSET: bytes([FLAG_RESPONSE]),
                      ERR_FEATURE_OFFSET: bytes([error]), CMD_STATUS_OFFSET: bytes([status])})
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
        packed[k::LANE] = headers[offset + k::ATA_OVERHEAD]
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

    The same bytes ``BatchServer`` packs one by one (``ATA_FRAME.pack_into``).
    """
    _checked, kept, destination = _header_masks(n)
    value = int.from_bytes(headers, "big")
    # the source MAC is 6 bytes after the destination: shifting the big-endian
    # number 48 bits up moves every record's source into its destination
    reply = ((value << 48) & destination) | (value & kept) | _reply_constant(n, mac, status,
                                                                             error)
    return reply.to_bytes(ATA_OVERHEAD * n, "big")
