"""Hypothesis-generated hostile frames over the wire against the built-in target.

The export is a window (offset and length) in the middle of a bigger file; after
every generated frame the target must still be running, and at the end it must
still answer and the bytes outside the window must be exactly as before.

Mac Mask edits and Reserve sets are left out of the generated frames: an accepted
random one would (correctly) lock the checking client out of the export.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    AOE_HDR,
    ATA_HDR,
    BROADCAST_MAC,
    ETH_P_AOE,
    SECTOR_SIZE,
    lba_bytes,
    mac_to_bytes,
)
from tests.net import netlab

pytestmark = pytest.mark.net

FILE_SECTORS = 8192            # 4 MiB file
OFFSET, LENGTH = 2048, 2048    # the export is sectors 2048..4095 of it
EXAMPLES = 600

def mostly(value: int, other: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """``value`` about three times in four (one_of picks its branches evenly)."""
    return st.one_of(st.just(value), st.just(value), st.just(value), other)


LBAS = st.one_of(
    st.sampled_from([0, LENGTH - 2, LENGTH - 1, LENGTH, LENGTH + 1, OFFSET + LENGTH,
                     FILE_SECTORS - 1, FILE_SECTORS, (1 << 28) - 1, 1 << 28, (1 << 28) + 5,
                     (1 << 32) - 1, (1 << 48) - 2, (1 << 48) - 1]),
    st.integers(0, LENGTH + 4), st.integers(0, (1 << 48) - 1))
OPCODES = st.one_of(st.sampled_from([ata.ATA_READ, ata.ATA_READ_EXT, ata.ATA_WRITE,
                                     ata.ATA_WRITE_EXT, ata.ATA_IDENTIFY, ata.ATA_FLUSH,
                                     ata.ATA_FLUSH_EXT, ata.ATA_CHECK_POWER]),
                    st.integers(0, 255))
AFLAGS = st.one_of(st.sampled_from([0, ata.AFLAG_WRITE, ata.AFLAG_LBA48,
                                    ata.AFLAG_LBA48 | ata.AFLAG_WRITE]), st.integers(0, 255))
ADDRESSES = st.one_of(st.just((0, 1)), st.just((0, 1)), st.just((0, 1)),
                      st.tuples(st.sampled_from([0, 0xFFFF]), st.sampled_from([1, 0xFF])),
                      st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255)))
COUNTS = st.one_of(st.sampled_from([0, 1, 2, 3, 255]), st.integers(0, 255))


@st.composite
def ata_args(draw: st.DrawFn, room: int) -> bytes:
    """Mostly well-formed reads and writes near the export's edges, else anything."""
    lba = draw(LBAS)
    shape = draw(st.sampled_from(["write", "write", "read", "any"]))
    if shape == "any":
        count, aflags, opcode = draw(COUNTS), draw(AFLAGS), draw(OPCODES)
    else:
        count = draw(st.integers(0, (room - ATA_HDR.size) // SECTOR_SIZE + 1))  # one too many
        ext = draw(st.booleans())
        aflags = (ata.AFLAG_LBA48 if ext else 0) | (ata.AFLAG_WRITE if shape == "write" else 0)
        opcode = {("write", True): ata.ATA_WRITE_EXT, ("write", False): ata.ATA_WRITE,
                  ("read", True): ata.ATA_READ_EXT, ("read", False): ata.ATA_READ}[shape, ext]
    # the last two bytes are reserved: mostly zero, sometimes set (a target ignores them)
    reserved = draw(mostly(0, st.just(0xFFFF))).to_bytes(2, "little")
    head = ATA_HDR.pack(aflags, draw(mostly(0, st.integers(0, 255))), count, opcode,
                        lba_bytes(lba))[:-2] + reserved
    # data: exactly what the count says (clipped to the frame), nothing, or random
    fill = draw(st.integers(1, 255))
    data = draw(st.sampled_from([bytes([fill]) * (count * SECTOR_SIZE), b""]))
    data = draw(mostly(0, st.just(1)).flatmap(
        lambda k: st.just(data) if k == 0 else st.binary(max_size=room)))
    return (head + data)[:room]


@st.composite
def frames(draw: st.DrawFn, dst: bytes, src: bytes, mtu: int) -> bytes:
    room = mtu - (AOE_HDR.size - 14)
    command = draw(mostly(0, st.one_of(st.sampled_from([1, 2, 3]), st.integers(0, 255))))
    verfl = draw(mostly(0x10, st.integers(0, 255)))
    header = AOE_HDR.pack(draw(st.sampled_from([dst, BROADCAST_MAC])), src, ETH_P_AOE, verfl,
                          draw(st.one_of(st.just(0), st.integers(0, 255))),
                          *draw(ADDRESSES), command, draw(st.integers(0, (1 << 32) - 1)))
    if command == 0:
        body = draw(st.one_of(ata_args(room), st.binary(max_size=room)))
    else:
        body = draw(st.binary(max_size=min(room, 1100)))
    frame = header + body
    # drop what would legitimately lock the checker out (see the module docstring)
    if command == 2 and len(body) > 1 and body[1] == 1:
        frame = frame[:AOE_HDR.size]
    if command == 3 and body[:1] in (b"\x01", b"\x02"):
        frame = frame[:AOE_HDR.size]
    return frame


def outside(path: netlab.Path) -> tuple[str, str, int]:
    data = path.read_bytes()
    lo, hi = OFFSET * SECTOR_SIZE, (OFFSET + LENGTH) * SECTOR_SIZE
    return hashlib.sha256(data[:lo]).hexdigest(), hashlib.sha256(data[hi:]).hexdigest(), len(data)


def test_malformed_frames_never_crash_or_escape_the_export(make_lab, serve, connect, tmp_path,
                                                          mtu):
    lab = make_lab(mtu)
    image = netlab.make_image(tmp_path / "big.img", FILE_SECTORS * SECTOR_SIZE)
    before = outside(image)
    server = serve(lab, "builtin", netlab.Export(0, 1, image, offset=OFFSET, length=LENGTH))
    client = connect(lab, 0, 1)
    raw = client.transport
    dst = mac_to_bytes(lab.server_mac())
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(frame=frames(dst, raw.mac, lab.mtu))
    def send(frame: bytes) -> None:
        nonlocal sent
        raw.send(frame)
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.01)  # let the target keep up; this is not a flood test
        assert server.alive(), f"target died after frame {frame.hex()}:\n{server.logtext()}"

    send()
    time.sleep(0.3)
    assert server.alive(), server.logtext()
    assert "Traceback" not in server.logtext()
    # still serving, with the same geometry, to an ordinary client
    assert client.config().shelf == 0
    assert client.identify().sectors == LENGTH
    client.write(LENGTH - 1, b"\x42" * SECTOR_SIZE)
    assert client.read(LENGTH - 1, 1) == b"\x42" * SECTOR_SIZE
    server.stop()
    assert outside(image) == before
