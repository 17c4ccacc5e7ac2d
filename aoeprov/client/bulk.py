"""Bulk READ/WRITE for ``AoeClient``: frames packed into the window's slots, no allocation
per frame.

Reads and writes of many frames are the client's hot path (the tests move whole
images, the benchmark measures targets through it). Each frame's request is packed
with one ``struct`` call straight into a slot of the window's send buffer (write
data copied there from the caller's buffer), and read data is copied once, from the
receive slot to the caller's buffer. Measured on the benchmark: a frame by frame
path spent most of its time in malloc and page faults (a fresh 9 KiB bytes object
per received frame, an 8 MiB join per call), and its speed swung 1.7x with the
state of the heap. The window, retransmission and answer checks are
``client.window``'s, as for every other exchange.
"""

from __future__ import annotations

from collections.abc import Sequence

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    ATA_FRAME,
    ATA_OVERHEAD,
    CMD_STATUS_OFFSET,
    ERR_FEATURE_OFFSET,
    ETH_P_AOE,
    SECTOR_SIZE,
    VERSION_BITS,
    Command,
)
from aoeprov.client.window import Frame, Peer
from aoeprov.errors import AtaError, ProtocolError
from aoeprov.link.batch import ReplyBuffer

# one frame's worth: (lba, sector count, offset in the caller's buffer, lba as 6 LE bytes)
Chunk = tuple[int, int, int, bytes]


def split(extents: Sequence[tuple[int, int]], per_frame: int) -> list[Chunk]:
    """Frames for ``extents`` laid end to end in one buffer, ``per_frame`` sectors at most."""
    chunks: list[Chunk] = []
    offset = 0
    for lba, count in extents:
        for at in range(lba, lba + count, per_frame):
            n = min(per_frame, lba + count - at)
            chunks.append((at, n, offset, at.to_bytes(6, "little")))
            offset += n * SECTOR_SIZE
    return chunks


class Transfer:
    """READ/WRITE (EXT) ``cmd`` for every chunk, as the window's ``Requests``: reads land
    in ``data``, writes come from it.

    ``accept`` raises ``AtaError`` for an ATA failure status and ``ProtocolError`` for an
    answer too short for its header or its read data.
    """

    command: int = Command.ATA.value

    def __init__(self, peer: Peer, cmd: int, aflags: int, chunks: Sequence[Chunk],
                 data: memoryview, what: str) -> None:
        self.peer = peer
        self.count = len(chunks)
        self.cmd = cmd
        self.aflags = aflags
        self.is_write = bool(aflags & ata.AFLAG_WRITE)
        self.chunks = chunks
        self.data = data
        self.what = what

    def put(self, index: int, tag: int, out: ReplyBuffer) -> None:
        off = len(out.lengths) * out.slot_size
        _lba, count, at, lba6 = self.chunks[index]
        peer = self.peer
        ATA_FRAME.pack_into(out.buffer, off, peer.dst, peer.src, ETH_P_AOE, VERSION_BITS, 0,
                            peer.shelf, peer.slot, Command.ATA, tag, self.aflags, 0, count,
                            self.cmd, lba6)
        if self.is_write:
            nbytes = count * SECTOR_SIZE
            start = off + ATA_OVERHEAD
            out.view[start:start + nbytes] = self.data[at:at + nbytes]
            out.lengths.append(ATA_OVERHEAD + nbytes)
        else:
            out.lengths.append(ATA_OVERHEAD)

    def accept(self, index: int, frame: Frame) -> None:
        if len(frame) < ATA_OVERHEAD:
            raise ProtocolError(f"{self.what}: ATA answer of {len(frame)} bytes from "
                                f"{self.peer.name}")
        status = frame[CMD_STATUS_OFFSET]
        if status & ata.STATUS_FAILURE_MASK:
            raise AtaError(f"{self.peer.name} {self.what}", status, frame[ERR_FEATURE_OFFSET])
        if not self.is_write:
            lba, count, at, _lba6 = self.chunks[index]
            nbytes = count * SECTOR_SIZE
            if len(frame) < ATA_OVERHEAD + nbytes:
                raise ProtocolError(f"read at LBA {lba}: {len(frame) - ATA_OVERHEAD} "
                                    f"data bytes for {count} sectors")
            self.data[at:at + nbytes] = memoryview(frame)[ATA_OVERHEAD:ATA_OVERHEAD + nbytes]
