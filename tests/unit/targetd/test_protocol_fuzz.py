"""Random and malformed frames: the target never crashes, never writes outside the export,
and everything it sends is a well-formed AoE response from its own MAC."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    AOE_HDR,
    ATA_HDR,
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    ETH_P_AOE,
    decode_frame,
    lba_bytes,
)

from .frames import CLIENT_MAC, LENGTH, OTHER_MAC, SHELF, SLOT, TARGET_MAC, FakeLink, Harness

OPCODES = [ata.ATA_READ, ata.ATA_READ_EXT, ata.ATA_WRITE, ata.ATA_WRITE_EXT, ata.ATA_IDENTIFY,
           ata.ATA_FLUSH, ata.ATA_FLUSH_EXT, ata.ATA_CHECK_POWER]


@st.composite
def io_args(draw: st.DrawFn) -> bytes:
    """A valid read or write (in range, exact data): the frames that reach the disk."""
    write = draw(st.booleans())
    count = draw(st.integers(0, 2))
    lba = draw(st.integers(0, LENGTH - count))
    opcode = draw(st.sampled_from([ata.ATA_WRITE, ata.ATA_WRITE_EXT] if write
                                  else [ata.ATA_READ, ata.ATA_READ_EXT]))
    aflags = 0x40 | (1 if write else 0)
    return ATA_HDR.pack(aflags, 0, count, opcode, lba_bytes(lba)) + (
        b"\xab" * (count * 512) if write else b"")


@st.composite
def ata_args(draw: st.DrawFn) -> bytes:
    lba = draw(st.one_of(st.integers(0, LENGTH + 4), st.integers(0, (1 << 48) - 1),
                         st.integers(LENGTH - 3, LENGTH + 3).map(lambda v: v | 0xE0 << 24)))
    count = draw(st.one_of(st.integers(0, 4), st.integers(0, 255)))
    aflags = draw(st.one_of(st.sampled_from([0x40, 0x41, 0x00, 0x01]), st.integers(0, 255)))
    opcode = draw(st.one_of(st.sampled_from(OPCODES), st.integers(0, 255)))
    # the last two bytes are reserved: anything there must be ignored
    header = ATA_HDR.pack(aflags, draw(st.integers(0, 255)), count, opcode,
                          lba_bytes(lba))[:-2] + draw(st.integers(0, 0xFFFF)).to_bytes(2, "little")
    size = draw(st.sampled_from(["exact", "short", "long", "random"]))
    if size == "exact":
        return header + b"\xab" * (count * 512)
    if size == "short":
        return header + b"\xab" * max(0, count * 512 - draw(st.integers(1, 600)))
    if size == "long":
        return header + b"\xab" * (count * 512) + draw(st.binary(min_size=1, max_size=64))
    return header + draw(st.binary(max_size=1100))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A well-addressed request with a random (often valid) argument."""
    command = draw(st.sampled_from([0, 1, 2, 3]))
    header = AOE_HDR.pack(TARGET_MAC, CLIENT_MAC, ETH_P_AOE, 0x10, 0, SHELF, SLOT, command,
                          draw(st.integers(0, 0xFFFFFFFF)))
    if command == 0:
        return header + draw(st.one_of(io_args(), ata_args()))
    return header + draw(st.binary(max_size=300))


@st.composite
def any_frames(draw: st.DrawFn) -> bytes:
    """Anything: other addresses, wildcards, responses, other versions and commands."""
    header = AOE_HDR.pack(draw(st.sampled_from([TARGET_MAC, BROADCAST_MAC, OTHER_MAC])),
                          draw(st.sampled_from([CLIENT_MAC, OTHER_MAC])),
                          draw(st.sampled_from([ETH_P_AOE, 0x0800])), draw(st.integers(0, 255)),
                          draw(st.integers(0, 255)),
                          draw(st.sampled_from([SHELF, BROADCAST_SHELF, SHELF + 1])),
                          draw(st.sampled_from([SLOT, BROADCAST_SLOT, 0])),
                          draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFFFFFF)))
    return header + draw(st.one_of(ata_args(), st.binary(max_size=300)))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    raw = draw(st.one_of(requests(), any_frames()))
    mutation = draw(st.sampled_from(["none", "none", "flip", "truncate"]))
    if mutation == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    elif mutation == "truncate":
        raw = raw[:draw(st.integers(0, len(raw)))]
    return raw


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames(), min_size=1, max_size=6), mtu=st.sampled_from([1500, 9000]),
       sync=st.booleans())
def test_random_frames(make_target: Callable[..., Harness], batch: list[bytes], mtu: int,
                       sync: bool) -> None:
    target = make_target(write_mode="sync" if sync else "writeback")
    target.link = FakeLink(mtu=mtu)
    before = target.outside()
    replies = target.send_raw(*batch)
    assert target.engine.counters.internal_errors == 0
    assert target.outside() == before
    for raw in replies:
        assert len(raw) <= mtu + 14
        reply = decode_frame(raw)
        assert reply.header.is_response and reply.header.src == TARGET_MAC
        assert (reply.header.shelf, reply.header.slot) == (SHELF, SLOT)
    for exp in target.engine.exports:
        STATS.append(exp.counters.to_json())
        exp.close()


STATS: list[dict[str, int]] = []


def test_the_fuzzer_reaches_reads_writes_and_errors() -> None:
    # runs after test_random_frames in file order: the examples must have covered
    # successful writes and reads, ATA errors and AoE errors, or the test proves little
    totals = {k: sum(s[k] for s in STATS) for k in ("writes", "reads", "ata_errors",
                                                     "aoe_errors", "frames_out")}
    assert all(totals.values()), totals
