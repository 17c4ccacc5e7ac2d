"""Whole-batch arithmetic (``target.uniform``) against the per-frame formulas."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from aoeprov.aoe import ata
from aoeprov.aoe.wire import ATA_FRAME, LBA_OFFSET, RESPONSE_VERFL, SECTOR_COUNT_OFFSET
from aoeprov.targetd import uniform

from .frames import TARGET_MAC

LANE_VALUES = st.integers(0, (1 << 62) - 1)
SETTINGS = settings(max_examples=200, deadline=None)


def header(*, write: bool = False, lba: int = 0, count: int = 1, tag: int = 7,
           src: bytes = b"\x02\x00\x00\x00\x00\x09", dst: bytes = TARGET_MAC, shelf: int = 1,
           slot: int = 2, verfl: int = 0x10, aflags: int | None = None,
           opcode: int | None = None, err: int = 0, feature: int = 0) -> bytes:
    if aflags is None:
        aflags = uniform.WRITE_AFLAGS if write else uniform.READ_AFLAGS
    if opcode is None:
        opcode = ata.ATA_WRITE_EXT if write else ata.ATA_READ_EXT
    return ATA_FRAME.pack(dst, src, 0x88A2, verfl, err, shelf, slot, 0, tag, aflags, feature,
                          count, opcode, lba.to_bytes(6, "little"))


def lanes_of(values: list[int]) -> int:
    return uniform.from_list(values)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, (1 << 48) - 1), st.integers(0, 255)), min_size=1,
                max_size=64))
def test_gather_reads_each_frames_field(fields: list[tuple[int, int]]) -> None:
    headers = b"".join(header(lba=lba, count=count) for lba, count in fields)
    n = len(fields)
    assert uniform.gather(headers, n, LBA_OFFSET, 6) == lanes_of([f[0] for f in fields])
    assert uniform.gather(headers, n, SECTOR_COUNT_OFFSET, 1) == lanes_of([f[1] for f in fields])


@SETTINGS
@given(st.lists(LANE_VALUES, min_size=1, max_size=64), LANE_VALUES)
def test_lane_comparisons(values: list[int], limit: int) -> None:
    lane = uniform.lanes(len(values))
    packed = lanes_of(values)
    assert uniform.all_at_most(packed, limit, lane) == all(v <= limit for v in values)
    floor = max(limit, 1)
    assert uniform.all_at_least(packed, floor, lane) == all(v >= floor for v in values)
    sizes = lanes_of([limit] * len(values))
    assert uniform.all_fit(packed, sizes, lane) == all(v <= limit for v in values)


@SETTINGS
@given(st.integers(0, 1 << 40), st.lists(st.integers(1, 255), min_size=1, max_size=64),
       st.integers(-1, 63))
def test_contiguous_means_each_frame_starts_where_the_last_ended(
        start: int, counts: list[int], gap_at: int) -> None:
    starts, at = [], start
    for i, count in enumerate(counts):
        if i == gap_at and i > 0:
            at += 512  # one hole
        starts.append(at)
        at += count * 512
    lane = uniform.lanes(len(counts))
    sizes = lanes_of([c * 512 for c in counts])
    expected = not (0 < gap_at < len(counts))
    assert uniform.contiguous(lanes_of(starts), sizes, lane) == expected


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, (1 << 48) - 1), st.integers(0, 255),
                          st.integers(0, (1 << 32) - 1), st.binary(min_size=6, max_size=6),
                          st.booleans()), min_size=1, max_size=64),
       st.sampled_from([(ata.STATUS_DRDY, 0), (ata.STATUS_DRDY | ata.STATUS_ERR, ata.ERR_ABRT)]))
def test_replies_are_what_the_per_frame_path_packs(
        frames: list[tuple[int, int, int, bytes, bool]], outcome: tuple[int, int]) -> None:
    status, error = outcome
    headers = b"".join(header(lba=lba, count=count, tag=tag, src=src, write=write)
                       for lba, count, tag, src, write in frames)
    expected = b"".join(
        ATA_FRAME.pack(src, TARGET_MAC, 0x88A2, RESPONSE_VERFL, 0, 1, 2, 0, tag,
                       uniform.WRITE_AFLAGS if write else uniform.READ_AFLAGS, error, 0, status,
                       lba.to_bytes(6, "little"))
        for lba, count, tag, src, write in frames)
    assert uniform.replies(headers, len(frames), TARGET_MAC, status, error) == expected


def test_matches_looks_at_every_fixed_field_of_every_frame() -> None:
    good = [header(lba=i, tag=i) for i in range(9)]
    assert uniform.matches(b"".join(good), 9, TARGET_MAC, 1, 2, write=False)
    assert not uniform.matches(b"".join(good), 9, TARGET_MAC, 1, 2, write=True)
    writes = [header(write=True, lba=i) for i in range(9)]
    assert uniform.matches(b"".join(writes), 9, TARGET_MAC, 1, 2, write=True)
    # fields that may differ frame to frame, or that the per-frame path ignores
    free = [header(lba=5, count=9, tag=99, src=b"\x02" * 6, err=3, feature=4)]
    assert uniform.matches(b"".join(good[:8] + free), 9, TARGET_MAC, 1, 2, write=False)
    for odd in (header(dst=b"\xff" * 6), header(shelf=3), header(slot=1), header(verfl=0x18),
                header(aflags=0), header(aflags=0x42), header(opcode=ata.ATA_READ),
                header(opcode=ata.ATA_IDENTIFY)):
        for position in (0, 4, 8):
            batch = list(good)
            batch[position] = odd
            assert not uniform.matches(b"".join(batch), 9, TARGET_MAC, 1, 2, write=False)
    bad_type = bytearray(good[3])
    struct.pack_into("!H", bad_type, 12, 0x0800)
    assert not uniform.matches(b"".join([*good[:3], bytes(bad_type), *good[4:]]), 9,
                               TARGET_MAC, 1, 2, write=False)
