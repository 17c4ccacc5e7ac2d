"""ATA opcodes, status bits and the IDENTIFY DEVICE data block.

Only what AoE initiators send: the Linux driver uses IDENTIFY, READ/WRITE SECTORS
and their EXT forms; FLUSH CACHE and CHECK POWER MODE come from other tools.
IDENTIFY data is 256 little-endian words; ATA strings store two characters per
word with the first character in the high byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aoeprov.errors import ProtocolError

ATA_READ = 0x20
ATA_READ_EXT = 0x24
ATA_WRITE = 0x30
ATA_WRITE_EXT = 0x34
ATA_IDENTIFY = 0xEC
ATA_FLUSH = 0xE7
ATA_FLUSH_EXT = 0xEA
ATA_CHECK_POWER = 0xE5

STATUS_DRDY = 0x40
STATUS_ERR = 0x01
# status bits the Linux driver treats as failure (BSY | DF | DRQ | ERR)
STATUS_FAILURE_MASK = 0xA9
ERR_ABRT = 0x04
ERR_IDNF = 0x10

AFLAG_LBA48 = 0x40
AFLAG_DEVICE = 0x10
AFLAG_ASYNC = 0x02
AFLAG_WRITE = 0x01

LBA28_MASK = 0x0FFFFFFF
LBA48_MAX = (1 << 48) - 1
# CHECK POWER MODE sector count answer: active or idle
POWER_ACTIVE = 0xFF

IDENTIFY_WORDS = struct.Struct("<256H")
IDENTIFY_SIZE = IDENTIFY_WORDS.size  # 512

SERIAL_WORDS = (10, 20)
FIRMWARE_WORDS = (23, 27)
MODEL_WORDS = (27, 47)


@dataclass(frozen=True)
class Identity:
    """What an initiator learns from IDENTIFY DEVICE."""

    sectors: int
    lba48: bool
    serial: str
    model: str
    firmware: str


def _put_string(words: list[int], span: tuple[int, int], text: str) -> None:
    start, end = span
    width = (end - start) * 2
    raw = text.encode("ascii", "replace")[:width].ljust(width, b" ")
    for i in range(start, end):
        hi, lo = raw[(i - start) * 2], raw[(i - start) * 2 + 1]
        words[i] = (hi << 8) | lo


def _get_string(words: tuple[int, ...], span: tuple[int, int]) -> str:
    raw = b"".join(bytes((w >> 8, w & 0xFF)) for w in words[span[0]:span[1]])
    return raw.decode("ascii", "replace").strip(" \x00")


def build_identify(sectors: int, serial: str, model: str, firmware: str) -> bytes:
    """IDENTIFY DEVICE data for a disk of ``sectors`` 512-byte sectors.

    Advertises LBA and LBA48 (word 83/86 bit 10), FLUSH CACHE and FLUSH CACHE
    EXT (bits 12/13); capacity in words 100-103, and words 60-61 clamped to the
    LBA28 limit as ATA requires. CHS words are filled like vblade's, for old
    initiators that still read them.
    """
    if not 0 <= sectors <= LBA48_MAX:
        raise ProtocolError(f"{sectors} sectors cannot be addressed with LBA48")
    words = [0] * 256
    heads, per_track = 16, 63
    cylinders = min(sectors // (heads * per_track), 16383)
    words[0] = 0x0040          # fixed device
    words[1] = cylinders
    words[3] = heads
    words[6] = per_track
    _put_string(words, SERIAL_WORDS, serial)
    _put_string(words, FIRMWARE_WORDS, firmware)
    _put_string(words, MODEL_WORDS, model)
    words[47] = 0x8000         # READ/WRITE MULTIPLE: none
    words[49] = 0x0200         # LBA supported
    words[50] = 0x4000
    words[53] = 0x0001         # words 54-58 valid
    words[54] = cylinders
    words[55] = heads
    words[56] = per_track
    chs = cylinders * heads * per_track
    words[57] = chs & 0xFFFF
    words[58] = chs >> 16
    lba28 = min(sectors, LBA28_MASK)
    words[60] = lba28 & 0xFFFF
    words[61] = lba28 >> 16
    words[80] = 0x00F0         # ATA/ATAPI-4 to -7
    words[82] = 0x4000
    words[83] = 0x4000 | 0x2000 | 0x1000 | 0x0400  # valid, FLUSH EXT, FLUSH, LBA48
    words[84] = 0x4000
    words[85] = 0x4000
    words[86] = 0x2000 | 0x1000 | 0x0400           # the same features enabled
    words[87] = 0x4000
    words[93] = 0x400B
    for i in range(4):
        words[100 + i] = (sectors >> (16 * i)) & 0xFFFF
    return IDENTIFY_WORDS.pack(*words)


def parse_identify(data: bytes | memoryview) -> Identity:
    """Decode IDENTIFY data as the Linux driver does (``ataid_complete``)."""
    if len(data) < IDENTIFY_SIZE:
        raise ProtocolError(f"IDENTIFY data needs {IDENTIFY_SIZE} bytes, got {len(data)}")
    words = IDENTIFY_WORDS.unpack_from(data)
    lba48 = bool((words[83] | words[86]) & 0x0400)
    if lba48:
        sectors = words[100] | words[101] << 16 | words[102] << 32 | words[103] << 48
    else:
        sectors = words[60] | words[61] << 16
    return Identity(sectors=sectors, lba48=lba48, serial=_get_string(words, SERIAL_WORDS),
                    model=_get_string(words, MODEL_WORDS),
                    firmware=_get_string(words, FIRMWARE_WORDS))
