"""AoE wire format: layouts, round trips, and the ways decoding must refuse input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoeprov.aoe import ata, wire
from aoeprov.aoe.wire import (
    AOE_HDR,
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    ETH_P_AOE,
    AoeHeader,
    AtaArg,
    Command,
    ConfigArg,
    ConfigCommand,
    Frame,
    MacDirective,
    MacMaskArg,
    ReserveArg,
    decode_frame,
    mac_to_bytes,
    mac_to_str,
)
from aoeprov.errors import ProtocolError

SRC = bytes.fromhex("020000000002")
DST = bytes.fromhex("020000000001")


def header(command: int, **kw: int) -> AoeHeader:
    return AoeHeader(dst=DST, src=SRC, shelf=kw.pop("shelf", 3), slot=kw.pop("slot", 7),
                     command=command, tag=kw.pop("tag", 0x80000001), **kw)


def test_header_layout_matches_aoer11() -> None:
    raw = header(Command.CONFIG, tag=0x01020304, flags=0x08, error=0).pack()
    assert len(raw) == 24
    assert raw[12:14] == b"\x88\xa2"
    assert raw[14] == 0x18                 # version 1, response flag
    assert raw[16:18] == b"\x00\x03"       # shelf, big-endian
    assert raw[18] == 7 and raw[19] == 1
    assert raw[20:24] == b"\x01\x02\x03\x04"
    back = AoeHeader.unpack(raw)
    assert back.is_response and not back.is_error and back.version == 1


def test_derived_offsets_are_aoer11_byte_positions() -> None:
    """The offsets every module uses, computed from the field tables, against the spec."""
    assert (wire.DST_OFFSET, wire.SRC_OFFSET, wire.ETHERTYPE_OFFSET, wire.VERFL_OFFSET,
            wire.ERROR_OFFSET, wire.SHELF_OFFSET, wire.SLOT_OFFSET, wire.COMMAND_OFFSET,
            wire.TAG_OFFSET) == (0, 6, 12, 14, 15, 16, 18, 19, 20)
    assert (wire.AFLAGS_OFFSET, wire.ERR_FEATURE_OFFSET, wire.SECTOR_COUNT_OFFSET,
            wire.CMD_STATUS_OFFSET, wire.LBA_OFFSET, wire.LBA_BYTES) == (24, 25, 26, 27, 28, 6)
    assert (AOE_HDR.size, wire.ATA_HDR.size, wire.ATA_OVERHEAD) == (24, 12, 36)
    assert wire.ATA_FRAME.size == AOE_HDR.size + wire.ATA_HDR.size
    assert (wire.VERSION_BITS, wire.RESPONSE_VERFL) == (0x10, 0x18)
    frame = wire.ATA_FRAME.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 3, 7, 0, 9, 0x41, 2, 1, 0x34,
                                wire.lba_bytes(0x0605_0403_0201))
    assert frame == header(Command.ATA, tag=9).pack() + AtaArg(
        0x41, 2, 1, 0x34, 0x0605_0403_0201).pack()


def test_ata_lba_is_six_little_endian_bytes() -> None:
    raw = AtaArg(ata.AFLAG_LBA48, 0, 1, ata.ATA_READ_EXT, 0x0000_0605_0403_0201).pack()
    assert raw[4:10] == bytes([1, 2, 3, 4, 5, 6])
    assert AtaArg.unpack(raw).lba == 0x060504030201


def test_frame_round_trips() -> None:
    frames = [
        Frame(header(Command.ATA), AtaArg(ata.AFLAG_WRITE, 0, 2, ata.ATA_WRITE, 9, b"x" * 1024)),
        Frame(header(Command.ATA), AtaArg(0, 0, 1, ata.ATA_READ, 5)),
        Frame(header(Command.CONFIG), ConfigArg(16, 0x4019, 2, ConfigCommand.SET, b"hello")),
        Frame(header(Command.MAC_MASK), MacMaskArg(1, 0, (MacDirective(1, SRC),))),
        # a failed edit: the count byte is the index of the failing directive
        Frame(header(Command.MAC_MASK, flags=0x08), MacMaskArg(1, 2, failed_index=3)),
        Frame(header(Command.RESERVE), ReserveArg(1, (SRC, DST))),
        Frame(header(0xF3), b"vendor bytes"),
    ]
    for frame in frames:
        assert decode_frame(frame.pack()) == frame


def test_padding_and_trailing_bytes_are_tolerated() -> None:
    # the kernel's config query: all-zero argument (version nibble 0), padded to 60
    query = AoeHeader(BROADCAST_MAC, SRC, BROADCAST_SHELF, BROADCAST_SLOT, Command.CONFIG,
                      0).pack() + bytes(36)
    frame = decode_frame(query)
    assert isinstance(frame.arg, ConfigArg)
    assert frame.arg.aoe_version == 0 and frame.arg.ccmd == 0
    # an IDENTIFY padded with junk keeps no data
    ident = Frame(header(Command.ATA), AtaArg(0, 0, 1, ata.ATA_IDENTIFY, 0)).pack() + b"\xaa" * 40
    assert decode_frame(ident).arg == AtaArg(0, 0, 1, ata.ATA_IDENTIFY, 0)
    # a write keeps exactly count*512 bytes, not the trailer
    write = Frame(header(Command.ATA), AtaArg(1, 0, 1, ata.ATA_WRITE, 0, b"d" * 512)).pack()
    arg = decode_frame(write + b"trailer").arg
    assert isinstance(arg, AtaArg) and arg.data == b"d" * 512


@pytest.mark.parametrize("raw, reason", [
    (b"\x00" * 10, "AoE header needs 24"),
    (AOE_HDR.pack(DST, SRC, 0x0800, 0x10, 0, 0, 0, 0, 0), "ethertype 0x0800"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 0, 0) + b"\x00" * 5, "ATA argument"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 0, 0)
     + AtaArg(1, 0, 2, ata.ATA_WRITE, 0).pack() + b"z" * 600, "carries 600 data bytes"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 1, 0) + b"\x00" * 6 + b"\x00\x05ab",
     "truncated"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 1, 0) + b"\x00" * 6 + b"\x05\x00",
     "exceeds 1024"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 2, 0) + b"\x00\x01\x00\x02" + b"\x00" * 8,
     "2 directives"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 3, 0) + b"\x01\x02" + b"\x00" * 6,
     "2 MACs"),
    (AOE_HDR.pack(DST, SRC, ETH_P_AOE, 0x10, 0, 0, 0, 9, 0), "unknown AoE command 9"),
])
def test_malformed_frames_raise_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_frame(raw)


def test_response_keeps_read_data() -> None:
    hdr = header(Command.ATA, flags=0x08)
    raw = Frame(hdr, AtaArg(0, 0, 0, ata.STATUS_DRDY, 0, b"r" * 1024)).pack()
    arg = decode_frame(raw).arg
    assert isinstance(arg, AtaArg) and arg.data == b"r" * 1024


def test_reply_header_swaps_addresses() -> None:
    req = AoeHeader(BROADCAST_MAC, SRC, BROADCAST_SHELF, BROADCAST_SLOT, Command.CONFIG, 42)
    rsp = req.reply(DST, shelf=1, slot=2, error=4)
    assert (rsp.dst, rsp.src, rsp.shelf, rsp.slot, rsp.tag) == (SRC, DST, 1, 2, 42)
    assert rsp.is_response and rsp.is_error and rsp.error == 4


def test_mac_text_forms() -> None:
    assert mac_to_bytes("02:00:00:00:00:0A") == b"\x02\x00\x00\x00\x00\x0a"
    assert mac_to_bytes("020000000001") == DST
    assert mac_to_bytes("02-00-00-00-00-01") == DST
    assert mac_to_str(DST) == "02:00:00:00:00:01"
    for bad in ("02:00:00", "zz:00:00:00:00:00", ""):
        with pytest.raises(ProtocolError):
            mac_to_bytes(bad)


def test_identify_words() -> None:
    data = ata.build_identify(1 << 33, "0.1:host", "aoeprov built-in AoE target", "0.1.0")
    assert len(data) == 512
    words = ata.IDENTIFY_WORDS.unpack(data)
    assert words[83] & 0x0400 and words[86] & 0x0400          # LBA48 supported and enabled
    assert words[60] | words[61] << 16 == 0x0FFFFFFF          # clamped LBA28 capacity
    assert data[54:56] == b"oa"                               # "ao" byte-swapped in word 27
    ident = ata.parse_identify(data)
    assert ident == ata.Identity(1 << 33, True, "0.1:host", "aoeprov built-in AoE target", "0.1.0")


def test_identify_without_lba48_uses_words_60_61() -> None:
    words = list(ata.IDENTIFY_WORDS.unpack(ata.build_identify(5000, "s", "m", "f")))
    words[83] = words[86] = 0
    ident = ata.parse_identify(ata.IDENTIFY_WORDS.pack(*words))
    assert (ident.sectors, ident.lba48) == (5000, False)
    with pytest.raises(ProtocolError):
        ata.parse_identify(b"\x00" * 100)


@given(st.binary(max_size=300))
def test_decode_never_fails_other_than_protocol_error(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_frame(raw)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, (1 << 48) - 1), st.integers(0, 255))
def test_ata_frames_round_trip(shelf: int, slot: int, tag: int, lba: int, count: int) -> None:
    frame = Frame(AoeHeader(DST, SRC, shelf, slot, Command.ATA, tag),
                  AtaArg(ata.AFLAG_LBA48, 0, count, ata.ATA_READ_EXT, lba))
    assert decode_frame(frame.pack()) == frame
