"""AoE v1 wire format: ``struct.Struct`` layouts plus frozen records.

Layouts follow AoEr11 as the Linux driver, vblade and ggaoed implement it: all
multi-byte fields big-endian except the ATA LBA, which is six little-endian
bytes. Decoding is strict about what it needs (short or inconsistent input
raises ``ProtocolError`` with the reason) and lenient about what it does not:
Ethernet padding and trailing bytes after a complete argument are ignored,
because the kernel pads config queries to 60 bytes and ``aoe-sancheck`` pads
IDENTIFY probes with junk.

The hot path of the target unpacks the ``*_HDR`` structs directly; the records
here are for everything else (config, masks, reserve lists, tests, the client).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from aoeprov.errors import ProtocolError

ETH_P_AOE = 0x88A2
BROADCAST_MAC = b"\xff" * 6
BROADCAST_SHELF = 0xFFFF
BROADCAST_SLOT = 0xFF
FLAG_RESPONSE = 0x08
FLAG_ERROR = 0x04
SECTOR_SIZE = 512
AOE_VERSION = 1
# byte 14 of a frame is ver<<4|flags: the version bits of every v1 frame (a request's
# whole byte), the mask that selects them, and a plain response's byte
VERSION_BITS = AOE_VERSION << 4
VERSION_MASK = 0xF0
RESPONSE_VERFL = VERSION_BITS | FLAG_RESPONSE
VENDOR_COMMAND_MIN = 0xF0
# tags with bit 31 set are userland's: the Linux driver drops answers carrying them, so
# a kernel initiator on the same host never mistakes a tool's answers for its own
USER_TAG_BIT = 0x8000_0000
MAX_CONFIG_STRING = 1024

# The headers of an ATA frame, field by field: Ethernet, AoE (every frame has these
# two), then the Issue ATA Command argument, whose LBA is six little-endian bytes
# kept raw. Every struct and byte offset of them below is computed from these
# tables: the layout is written here once.
AOE_FIELDS = (("dst", "6s"), ("src", "6s"), ("ethertype", "H"), ("verfl", "B"), ("error", "B"),
              ("shelf", "H"), ("slot", "B"), ("command", "B"), ("tag", "I"))
ATA_FIELDS = (("aflags", "B"), ("err_feature", "B"), ("sector_count", "B"),
              ("cmd_status", "B"), ("lba", "6s"), ("reserved", "2x"))


def _layout(fields: tuple[tuple[str, str], ...], start: int = 0) -> dict[str, tuple[int, int]]:
    """name -> (byte offset, size) of each field, the first at ``start`` (no padding: "!")."""
    spans, at = {}, start
    for name, code in fields:
        size = struct.calcsize("!" + code)
        spans[name] = (at, size)
        at += size
    return spans


AOE_HDR = struct.Struct("!" + "".join(code for _name, code in AOE_FIELDS))
ATA_HDR = struct.Struct("!" + "".join(code for _name, code in ATA_FIELDS))
# both at once, the shape of every ATA request and answer: one unpack on the hot paths
ATA_FRAME = struct.Struct(AOE_HDR.format + ATA_HDR.format[1:])
# name -> (offset, size) in a whole frame, for code that works on the bytes themselves
ATA_FRAME_FIELDS = _layout(AOE_FIELDS) | _layout(ATA_FIELDS, AOE_HDR.size)
DST_OFFSET = ATA_FRAME_FIELDS["dst"][0]
SRC_OFFSET = ATA_FRAME_FIELDS["src"][0]
ETHERTYPE_OFFSET = ATA_FRAME_FIELDS["ethertype"][0]
VERFL_OFFSET = ATA_FRAME_FIELDS["verfl"][0]
ERROR_OFFSET = ATA_FRAME_FIELDS["error"][0]
SHELF_OFFSET = ATA_FRAME_FIELDS["shelf"][0]
SLOT_OFFSET = ATA_FRAME_FIELDS["slot"][0]
COMMAND_OFFSET = ATA_FRAME_FIELDS["command"][0]
TAG_OFFSET = ATA_FRAME_FIELDS["tag"][0]
AFLAGS_OFFSET = ATA_FRAME_FIELDS["aflags"][0]
ERR_FEATURE_OFFSET = ATA_FRAME_FIELDS["err_feature"][0]
SECTOR_COUNT_OFFSET = ATA_FRAME_FIELDS["sector_count"][0]
CMD_STATUS_OFFSET = ATA_FRAME_FIELDS["cmd_status"][0]
LBA_OFFSET, LBA_BYTES = ATA_FRAME_FIELDS["lba"]
LBA_MASK = (1 << 8 * LBA_BYTES) - 1
# What an ATA frame costs besides sector data (Ethernet 14 + AoE 10 + ATA 12); the
# Linux driver sizes its payload as (MTU - 36) // 512 sectors.
ATA_OVERHEAD = ATA_FRAME.size

# buffer count, firmware version, sectors per frame, ver<<4|ccmd, config string length
CONFIG_HDR = struct.Struct("!HHBBH")
# reserved, mcmd, merror, directive count
MASK_HDR = struct.Struct("!BBBB")
# reserved, dcmd, mac
MASK_DIR = struct.Struct("!BB6s")
# rcmd, number of macs
RESERVE_HDR = struct.Struct("!BB")


class Command(IntEnum):
    ATA = 0
    CONFIG = 1
    MAC_MASK = 2
    RESERVE = 3


class AoeErrorCode(IntEnum):
    BAD_COMMAND = 1
    BAD_ARGUMENT = 2
    DEVICE_UNAVAILABLE = 3
    CONFIG_STRING_PRESENT = 4
    UNSUPPORTED_VERSION = 5
    RESERVED = 6


class ConfigCommand(IntEnum):
    READ = 0
    TEST = 1
    TEST_PREFIX = 2
    SET = 3
    FORCE_SET = 4


class MaskCommand(IntEnum):
    READ = 0
    EDIT = 1


class MaskDirectiveCommand(IntEnum):
    NOOP = 0
    ADD = 1
    DELETE = 2


class MaskError(IntEnum):
    NONE = 0
    UNSPECIFIED = 1
    BAD_DIRECTIVE = 2
    LIST_FULL = 3


class ReserveCommand(IntEnum):
    READ = 0
    SET = 1
    FORCE_SET = 2


def mac_to_bytes(mac: str) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or ``-`` separated, or 12 hex digits) to 6 bytes."""
    text = mac.strip().replace("-", ":")
    parts = text.split(":") if ":" in text else [text[i:i + 2] for i in range(0, len(text), 2)]
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ProtocolError(f"invalid MAC address {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ProtocolError(f"invalid MAC address {mac!r}") from None


def mac_to_str(mac: bytes) -> str:
    if len(mac) != 6:
        raise ProtocolError(f"a MAC address has 6 bytes, got {len(mac)}")
    return ":".join(f"{b:02x}" for b in mac)


def lba_bytes(lba: int) -> bytes:
    """An LBA as the six little-endian bytes of the ATA argument (bits above 48 dropped)."""
    return (lba & LBA_MASK).to_bytes(LBA_BYTES, "little")


def _need(buf: bytes | memoryview, size: int, what: str) -> None:
    if len(buf) < size:
        raise ProtocolError(f"{what} needs {size} bytes, got {len(buf)}")


@dataclass(frozen=True)
class AoeHeader:
    """Ethernet header and AoE header: the first 24 bytes of every frame."""

    dst: bytes
    src: bytes
    shelf: int
    slot: int
    command: int
    tag: int
    flags: int = 0
    error: int = 0
    version: int = AOE_VERSION

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @property
    def is_broadcast(self) -> bool:
        return self.shelf == BROADCAST_SHELF or self.slot == BROADCAST_SLOT

    def pack(self) -> bytes:
        verfl = (self.version << 4) | (self.flags & 0x0F)
        return AOE_HDR.pack(self.dst, self.src, ETH_P_AOE, verfl, self.error,
                            self.shelf, self.slot, self.command, self.tag)

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> Self:
        _need(buf, AOE_HDR.size, "AoE header")
        dst, src, ethertype, verfl, error, shelf, slot, command, tag = AOE_HDR.unpack_from(buf)
        if ethertype != ETH_P_AOE:
            raise ProtocolError(f"ethertype 0x{ethertype:04x} is not AoE (0x{ETH_P_AOE:04x})")
        return cls(dst=dst, src=src, shelf=shelf, slot=slot, command=command, tag=tag,
                   flags=verfl & 0x0F, error=error, version=verfl >> 4)

    def reply(self, src: bytes, *, shelf: int | None = None, slot: int | None = None,
              error: int = 0) -> AoeHeader:
        """The header of the response to this request, sent from ``src``."""
        flags = FLAG_RESPONSE | (FLAG_ERROR if error else 0)
        return AoeHeader(dst=self.src, src=src,
                         shelf=self.shelf if shelf is None else shelf,
                         slot=self.slot if slot is None else slot,
                         command=self.command, tag=self.tag, flags=flags, error=error)


@dataclass(frozen=True)
class AtaArg:
    """Issue ATA Command argument: 12-byte header plus sector data.

    In a request, ``data`` is exactly ``sector_count * 512`` bytes when the write
    flag is set and empty otherwise (padding is dropped). In a response it is
    every byte after the header (read data).
    """

    aflags: int
    err_feature: int
    sector_count: int
    cmd_status: int
    lba: int
    data: bytes = b""

    def pack(self) -> bytes:
        return ATA_HDR.pack(self.aflags, self.err_feature, self.sector_count, self.cmd_status,
                            lba_bytes(self.lba)) + self.data

    @classmethod
    def unpack(cls, buf: bytes | memoryview, *, response: bool = False) -> Self:
        _need(buf, ATA_HDR.size, "ATA argument")
        aflags, feature, count, cmd, lba = ATA_HDR.unpack_from(buf)
        rest = buf[ATA_HDR.size:]
        if response:
            data = bytes(rest)
        elif aflags & 0x01:  # write: data follows, exactly count sectors
            size = count * SECTOR_SIZE
            if len(rest) < size:
                raise ProtocolError(
                    f"ATA write of {count} sectors carries {len(rest)} data bytes, needs {size}")
            data = bytes(rest[:size])
        else:
            data = b""
        return cls(aflags=aflags, err_feature=feature, sector_count=count, cmd_status=cmd,
                   lba=int.from_bytes(lba, "little"), data=data)


@dataclass(frozen=True)
class ConfigArg:
    """Query Config Information argument: 8-byte header plus config string."""

    buffer_count: int
    firmware: int
    sectors_per_frame: int
    ccmd: int
    config: bytes = b""
    aoe_version: int = AOE_VERSION

    def pack(self) -> bytes:
        if len(self.config) > MAX_CONFIG_STRING:
            raise ProtocolError(f"config string of {len(self.config)} bytes exceeds "
                                f"{MAX_CONFIG_STRING}")
        return CONFIG_HDR.pack(self.buffer_count, self.firmware, self.sectors_per_frame,
                               (self.aoe_version << 4) | (self.ccmd & 0x0F),
                               len(self.config)) + self.config

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> Self:
        _need(buf, CONFIG_HDR.size, "config argument")
        bufcnt, firmware, scnt, vercmd, length = CONFIG_HDR.unpack_from(buf)
        if length > MAX_CONFIG_STRING:
            raise ProtocolError(f"config string length {length} exceeds {MAX_CONFIG_STRING}")
        end = CONFIG_HDR.size + length
        if len(buf) < end:
            raise ProtocolError(f"config string of {length} bytes is truncated to "
                                f"{len(buf) - CONFIG_HDR.size}")
        return cls(buffer_count=bufcnt, firmware=firmware, sectors_per_frame=scnt,
                   ccmd=vercmd & 0x0F, config=bytes(buf[CONFIG_HDR.size:end]),
                   aoe_version=vercmd >> 4)


@dataclass(frozen=True)
class MacDirective:
    dcmd: int
    mac: bytes

    def pack(self) -> bytes:
        return MASK_DIR.pack(0, self.dcmd, self.mac)


@dataclass(frozen=True)
class MacMaskArg:
    """Mac Mask List argument: 4-byte header plus 8-byte directives.

    When ``merror`` is set (a response to a failed edit) the count byte is the
    index of the directive that failed, not a count, and no directives follow.
    """

    mcmd: int
    merror: int
    directives: tuple[MacDirective, ...] = ()
    failed_index: int = 0

    def pack(self) -> bytes:
        if self.merror:
            return MASK_HDR.pack(0, self.mcmd, self.merror, self.failed_index)
        return MASK_HDR.pack(0, self.mcmd, self.merror, len(self.directives)) + b"".join(
            d.pack() for d in self.directives)

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> Self:
        _need(buf, MASK_HDR.size, "mac mask argument")
        _reserved, mcmd, merror, count = MASK_HDR.unpack_from(buf)
        if merror:
            return cls(mcmd=mcmd, merror=merror, failed_index=count)
        _need(buf, MASK_HDR.size + count * MASK_DIR.size, f"mac mask list of {count} directives")
        dirs = tuple(MacDirective(dcmd, mac) for _r, dcmd, mac in (
            MASK_DIR.unpack_from(buf, MASK_HDR.size + i * MASK_DIR.size) for i in range(count)))
        return cls(mcmd=mcmd, merror=merror, directives=dirs)


@dataclass(frozen=True)
class ReserveArg:
    """Reserve/Release argument: command, count, then 6-byte MACs."""

    rcmd: int
    macs: tuple[bytes, ...] = ()

    def pack(self) -> bytes:
        return RESERVE_HDR.pack(self.rcmd, len(self.macs)) + b"".join(self.macs)

    @classmethod
    def unpack(cls, buf: bytes | memoryview) -> Self:
        _need(buf, RESERVE_HDR.size, "reserve argument")
        rcmd, count = RESERVE_HDR.unpack_from(buf)
        start = RESERVE_HDR.size
        _need(buf, start + count * 6, f"reserve list of {count} MACs")
        macs = tuple(bytes(buf[start + i * 6:start + i * 6 + 6]) for i in range(count))
        return cls(rcmd=rcmd, macs=macs)


Arg = AtaArg | ConfigArg | MacMaskArg | ReserveArg | bytes


@dataclass(frozen=True)
class Frame:
    header: AoeHeader
    arg: Arg

    def pack(self) -> bytes:
        arg = self.arg if isinstance(self.arg, bytes) else self.arg.pack()
        return self.header.pack() + arg


def decode_arg(header: AoeHeader, body: bytes | memoryview) -> Arg:
    """Decode the argument that follows ``header``; ``body`` starts at byte 24."""
    if header.command >= VENDOR_COMMAND_MIN:
        return bytes(body)
    if header.command == Command.ATA:
        return AtaArg.unpack(body, response=header.is_response)
    if header.command == Command.CONFIG:
        return ConfigArg.unpack(body)
    if header.command == Command.MAC_MASK:
        return MacMaskArg.unpack(body)
    if header.command == Command.RESERVE:
        return ReserveArg.unpack(body)
    raise ProtocolError(f"unknown AoE command {header.command}")


def decode_frame(buf: bytes | memoryview) -> Frame:
    """Decode a whole Ethernet frame; raises ``ProtocolError`` if it is not valid AoE."""
    header = AoeHeader.unpack(buf)
    if header.is_response and header.is_error:
        # an error response's argument is whatever the peer echoed: keep it raw
        return Frame(header, bytes(buf[AOE_HDR.size:]))
    return Frame(header, decode_arg(header, memoryview(buf)[AOE_HDR.size:]))
