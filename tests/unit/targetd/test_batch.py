"""The batched fast path answers exactly as the frame-by-frame engine does.

Each case runs the same frames through ``TargetProtocol.handle_batch`` and through
``BatchServer.serve_batch`` (frames as views of one receive buffer, a reply
buffer of few slots so that it fills mid-batch), each over its own copy of the
backing file, and compares replies, file contents, counters and export state.

``zero_copy`` pairs give the fast side a real ``MmsgReplyBuffer`` on a Unix
socket pair, so reads are answered from the export's mapping by ``sendmmsg``
(and a file shrunk under the mapping takes the EFAULT path for real).

``disk`` pairs serve the fast side's export as one on a disk (``Export.on_disk``),
through a real ``DiskIO`` (io_uring or worker threads): pages not cached, writes
and syncs become disk jobs, answered once ``drain`` has seen them done.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aoeprov.aoe import ata
from aoeprov.aoe.wire import ATA_HDR, decode_frame, lba_bytes
from aoeprov.link.batch import ReplyBuffer
from aoeprov.link.mmsg import MmsgReplyBuffer
from aoeprov.targetd import uring
from aoeprov.targetd.batch import UNIFORM_MIN_DISK, BatchServer
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.diskio import DiskIO, ThreadedIO
from aoeprov.targetd.export import Export, open_miss_reader
from aoeprov.targetd.protocol import TargetProtocol
from aoeprov.targetd.uring import UringIO
from tests.conftest import require_mmsg

from .frames import LENGTH, OFFSET, SHELF, SLOT, FakeLink, ata_request, make_backing, request
from .test_protocol_fuzz import frames as random_frames


@dataclass
class Side:
    path: Path
    engine: TargetProtocol
    sent: list[bytes] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        exp = self.engine.exports[0]
        return {"file": self.path.read_bytes(), "engine": self.engine.counters.to_json(),
                "export": {**exp.counters.to_json(), "disk_queued": 0,  # say which path
                           "disk_direct": 0},
                "config": exp.config_string,
                "masks": list(exp.masks), "reserve": list(exp.reserve)}


MARKER = b"end of batch"


class SocketSink:
    """The receiving end of a Unix datagram pair, read by a thread into ``side.sent``."""

    def __init__(self, side: Side) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.side = side
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            frame = self.theirs.recv(65536)
            if frame == MARKER:
                self.done.set()
            elif not frame:
                return
            else:
                self.side.sent.append(frame)

    def sync(self) -> None:
        """Wait until every datagram sent so far has been read."""
        self.done.clear()
        self.ours.send(MARKER)
        assert self.done.wait(10)

    def close(self) -> None:
        self.ours.send(b"")
        self.thread.join(10)
        self.ours.close()
        self.theirs.close()


@dataclass
class Pair:
    slow: Side
    fast: Side
    batcher: BatchServer
    out: ReplyBuffer
    link: FakeLink
    sink: SocketSink | None = None

    def run(self, batch: list[bytes], *, ordered: bool = True) -> list[bytes]:
        slow = [bytes(r) for r in self.slow.engine.handle_batch(batch, self.link)]
        received = bytearray(b"".join(batch))  # views of one buffer, as recvmmsg gives
        views, at = [], 0
        for frame in batch:
            views.append(memoryview(received)[at:at + len(frame)])
            at += len(frame)
        self.fast.sent.clear()
        self.batcher.serve_batch(views, self.link, self.out)
        if isinstance(self.batcher.disk, UringIO):  # the server sleeps in poll next
            assert not self.batcher.disk.unsubmitted, "serve_batch left jobs unsubmitted"
        self.batcher.drain()
        if self.sink is not None:
            self.sink.sync()
        fast = self.fast.sent
        assert not self.out.lengths
        if ordered and not self.batcher.disk:
            assert fast == slow
        else:  # sync replies leave after the commit: same set, maybe another order
            assert sorted(fast) == sorted(slow)
        assert self.fast.state() == self.slow.state()
        return fast


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    engines: list[TargetProtocol] = []
    sinks: list[SocketSink] = []
    disks: dict[str, DiskIO] = {}

    def make(slots: int = 3, mtu: int = 1500, zero_copy: bool = False,
             disk: str | None = None, **options: object) -> Pair:
        sides = []
        for name in ("slow", "fast"):
            path = make_backing(tmp_path / f"{name}-{len(engines)}.img")
            config = ExportConfig(**{  # type: ignore[arg-type]
                "shelf": SHELF, "slot": SLOT, "path": str(path), "interfaces": ("eth0",),
                "offset": OFFSET, "length": LENGTH, "write_mode": "writeback", **options})
            engine = TargetProtocol([Export(config, hostname="testhost")])
            engines.append(engine)
            sides.append(Side(path, engine))
        slow, fast = sides
        io = None
        if disk is not None:  # one of each kind for the whole test, as a server has one
            io = disks.setdefault(disk, UringIO() if disk == "uring" else ThreadedIO())
            exp = fast.engine.exports[0]
            exp.on_disk = True  # whatever the filesystem of tmp_path; random misses O_DIRECT
            exp.miss_fd, exp.miss_align = open_miss_reader(exp.config)
        batcher = BatchServer(fast.engine, io)
        if zero_copy:
            sink = SocketSink(fast)
            sinks.append(sink)
            out: ReplyBuffer = MmsgReplyBuffer(sink.ours, slots, mtu + 64)
            return Pair(slow, fast, batcher, out, FakeLink(mtu=mtu), sink)
        out = ReplyBuffer(slots, mtu + 64, lambda f: fast.sent.append(bytes(f)))
        return Pair(slow, fast, batcher, out, FakeLink(mtu=mtu))

    yield make
    for io in disks.values():
        io.close()
    for sink in sinks:
        sink.close()
    for engine in engines:
        for exp in engine.exports:
            exp.close()


def io(write: bool, lba: int, count: int, lba48: bool = True) -> bytes:
    aflags = (0x40 if lba48 else 0) | (1 if write else 0)
    opcode = (ata.ATA_WRITE_EXT if write else ata.ATA_READ_EXT) if lba48 else (
        ata.ATA_WRITE if write else ata.ATA_READ)
    data = bytes([lba & 0xFF]) * (count * 512) if write else b""
    return request(0, ATA_HDR.pack(aflags, 0, count, opcode, lba_bytes(lba)) + data)


@st.composite
def runs(draw: st.DrawFn) -> list[bytes]:
    """Reads and writes at adjacent sectors, so that the fast path merges them."""
    batch: list[bytes] = []
    lba = draw(st.integers(0, LENGTH - 1))
    for _ in range(draw(st.integers(1, 8))):
        write = draw(st.booleans())
        count = draw(st.integers(1, 2))
        if lba + count > LENGTH:
            lba = 0
        batch.append(io(write, lba, count, draw(st.booleans())))
        lba += count if draw(st.integers(0, 3)) else 3
    return batch


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(batch=st.lists(st.one_of(random_frames(), runs().map(lambda b: b[0])), min_size=1,
                      max_size=8),
       extra=runs(), mtu=st.sampled_from([1500, 9000]), sync=st.booleans(),
       slots=st.integers(1, 4), zero_copy=st.booleans())
def test_fast_path_equals_slow_path(make_pair: Callable[..., Pair], batch: list[bytes],
                                    extra: list[bytes], mtu: int, sync: bool,
                                    slots: int, zero_copy: bool) -> None:
    pair = make_pair(slots=slots, mtu=mtu, write_mode="sync" if sync else "writeback",
                     zero_copy=zero_copy and require_mmsg())
    pair.run(batch + extra, ordered=not sync)
    pair.run(extra + batch, ordered=not sync)
    for frame in pair.fast.sent:
        assert decode_frame(frame).header.is_response


DISKS = ["threads", *(["uring"] if uring.available() else [])]


@SETTINGS
@given(batch=st.lists(st.one_of(random_frames(), runs().map(lambda b: b[0])), min_size=1,
                      max_size=8),
       extra=runs(), mtu=st.sampled_from([1500, 9000]), sync=st.booleans(),
       slots=st.integers(1, 4), zero_copy=st.booleans(), disk=st.sampled_from(DISKS))
def test_disk_path_equals_slow_path(make_pair: Callable[..., Pair], batch: list[bytes],
                                    extra: list[bytes], mtu: int, sync: bool,
                                    slots: int, zero_copy: bool, disk: str) -> None:
    """Served as an export on a disk: the same answers (in some order), file and counters."""
    pair = make_pair(slots=slots, mtu=mtu, write_mode="sync" if sync else "writeback",
                     zero_copy=zero_copy and require_mmsg(), disk=disk)
    pair.run(batch + extra, ordered=False)
    pair.run(extra + batch, ordered=False)


def test_adjacent_reads_are_one_preadv(make_pair: Callable[..., Pair],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(slots=8)
    calls: list[int] = []
    real = os.preadv

    def counting(fd: int, buffers: list[memoryview], pos: int) -> int:
        calls.append(len(buffers))
        return real(fd, buffers, pos)

    monkeypatch.setattr(os, "preadv", counting)
    pair.run([io(False, lba, 2) for lba in (0, 2, 4, 6)] + [io(False, 20, 1)])
    assert calls[-2:] == [4, 1]  # the slow side reads frame by frame before
    writes = [io(True, lba, 1) for lba in range(6)]
    pair.run(writes)
    assert pair.fast.engine.exports[0].counters.writes == 6


def failing(real: Callable[..., int], bad_pos: int) -> Callable[..., int]:
    """``real`` (preadv/pwritev/pwrite) failing with EIO when it touches ``bad_pos``."""

    def call(fd: int, data: object, pos: int) -> int:
        sizes = [len(b) for b in data] if isinstance(data, list) else [len(data)]  # type: ignore[arg-type]
        if pos <= bad_pos < pos + sum(sizes):
            raise OSError(errno.EIO, "injected")
        return real(fd, data, pos)

    return call


@pytest.mark.parametrize("disk", [None, "threads"])  # errors injected into os.* calls
@pytest.mark.parametrize("zero_copy", [False, True])
@pytest.mark.parametrize("write_mode", ["writeback", "sync"])
def test_an_io_error_fails_only_its_own_frame(make_pair: Callable[..., Pair],
                                              monkeypatch: pytest.MonkeyPatch, zero_copy: bool,
                                              write_mode: str, disk: str | None) -> None:
    pair = make_pair(slots=8, zero_copy=zero_copy and require_mmsg(), write_mode=write_mode,
                     disk=disk)
    bad = (OFFSET + 3) * 512
    for name in ("preadv", "pwritev", "pwrite"):
        monkeypatch.setattr(os, name, failing(getattr(os, name), bad))
    ordered = write_mode == "writeback"
    if not zero_copy:  # a mapped read does not go through preadv
        replies = pair.run([io(False, lba, 1) for lba in range(6)])
        args = [decode_frame(r).arg for r in replies]
        statuses = {a.lba: a.cmd_status for a in args}  # type: ignore[union-attr]
        assert statuses == {0: 0x40, 1: 0x40, 2: 0x40, 3: 0x41, 4: 0x40, 5: 0x40}
    # a read answered from the mapping first: the writes' answers must still wait for them
    replies = pair.run([io(False, 9, 1)] + [io(True, lba, 1) for lba in range(6)],
                       ordered=ordered)
    statuses = sorted(decode_frame(r).arg.cmd_status for r in replies)  # type: ignore[union-attr]
    assert statuses == [0x40] * 6 + [0x41]


@pytest.mark.parametrize("disk", [None, *DISKS])
@pytest.mark.parametrize("zero_copy", [False, True])
def test_a_failed_sync_fails_the_sync_writes(make_pair: Callable[..., Pair],
                                             monkeypatch: pytest.MonkeyPatch,
                                             zero_copy: bool, disk: str | None) -> None:
    pair = make_pair(slots=16, write_mode="sync", zero_copy=zero_copy and require_mmsg(),
                     disk="threads" if disk == "uring" else disk)  # fdatasync is os's

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "fdatasync", broken)
    replies = pair.run([io(True, 0, 1), io(True, 1, 1), io(False, 2, 1)], ordered=False)
    statuses = sorted(decode_frame(r).arg.cmd_status for r in replies)  # type: ignore[union-attr]
    assert statuses == [0x40, 0x41, 0x41]
    # a whole uniform batch of sync writes: every reply an error, counters as frame by frame
    replies = pair.run([io(True, lba, 1) for lba in range(4, 14)], ordered=False)
    assert {decode_frame(r).arg.cmd_status for r in replies} == {0x41}  # type: ignore[union-attr]


@pytest.mark.parametrize("zero_copy", [False, True])
def test_a_shrunken_file_reads_as_zeros_not_stale_data(make_pair: Callable[..., Pair],
                                                       zero_copy: bool) -> None:
    # zero-copy: sendmmsg meets EFAULT past the new end and the reply is refilled
    pair = make_pair(slots=4, zero_copy=zero_copy)
    pair.run([io(True, lba, 2) for lba in (LENGTH - 4, LENGTH - 2)])
    pair.run([io(False, LENGTH - 4, 2), io(False, LENGTH - 2, 2)])  # slots now hold data
    for side in (pair.slow, pair.fast):
        os.truncate(side.path, (OFFSET + LENGTH - 3) * 512)
    replies = pair.run([io(False, LENGTH - 4, 2), io(False, LENGTH - 2, 2)])
    assert decode_frame(replies[1]).arg.data == bytes(1024)  # type: ignore[union-attr]


def test_frames_of_other_kinds_keep_their_place(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(slots=2)
    flush = ata_request(ata.ATA_FLUSH_EXT)
    identify = ata_request(ata.ATA_IDENTIFY)
    pair.run([io(True, 0, 1), flush, io(True, 1, 1), identify, io(False, 0, 2)])



@pytest.mark.usefixtures("mmsg")
def test_reads_past_a_page_aligned_shrink_are_refilled(make_pair: Callable[..., Pair]) -> None:
    """Mapped pages beyond the new end fault (EFAULT in sendmmsg): those replies are read
    again with preadv, giving the surviving bytes and zeros, exactly as the slow side."""
    pair = make_pair(slots=8, zero_copy=True)
    pair.run([io(True, lba, 2) for lba in range(20, 32, 2)])
    end = 4096 * ((OFFSET + 24) * 512 // 4096)  # a page boundary inside the export
    first_gone = end // 512 - OFFSET
    for side in (pair.slow, pair.fast):
        os.truncate(side.path, end)
    replies = pair.run([io(False, first_gone - 2, 2), io(False, first_gone - 1, 2),
                        io(False, first_gone, 2), io(False, LENGTH - 2, 2)])
    data = [decode_frame(r).arg.data for r in replies]  # type: ignore[union-attr]
    assert data[0] == bytes([(first_gone - 2) & 0xFE]) * 1024
    assert data[1] == bytes([(first_gone - 1) & 0xFE]) * 512 + bytes(512)
    assert data[2] == data[3] == bytes(1024)


@st.composite
def uniform_batches(draw: st.DrawFn) -> list[bytes]:
    """8-12 reads (or writes), adjacent or scattered, sometimes with one odd frame."""
    write = draw(st.booleans())
    adjacent = draw(st.booleans())
    batch, lba = [], draw(st.integers(0, LENGTH - 1))
    for _ in range(draw(st.integers(8, 12))):
        count = draw(st.integers(1, 2))
        if not adjacent:
            lba = draw(st.integers(0, LENGTH - 1))
        if lba + count > LENGTH:
            lba = 0
        batch.append(io(write, lba, count))
        lba += count
    defect = draw(st.sampled_from(["none", "none", "range", "zero", "short", "lba28"]))
    at = draw(st.integers(0, len(batch) - 1))
    frame = bytearray(batch[at])
    if defect == "range":
        frame[28:34] = (LENGTH - 1).to_bytes(6, "little")
        frame[26] = 2
    elif defect == "zero":
        frame[26] = 0
    elif defect == "short" and write:
        del frame[-1]
    elif defect == "lba28":
        frame[24] &= ~ata.AFLAG_LBA48
    batch[at] = bytes(frame)
    return batch


@pytest.mark.usefixtures("mmsg")
@SETTINGS
@given(batch=uniform_batches(), sync=st.booleans(), mtu=st.sampled_from([1500, 9000]),
       disk=st.sampled_from([None, *DISKS]))
def test_uniform_batches_equal_the_slow_path(make_pair: Callable[..., Pair], batch: list[bytes],
                                             sync: bool, mtu: int, disk: str | None) -> None:
    """Also as an export on a disk: sync writes written inline, replies held for a sync job."""
    pair = make_pair(slots=16, mtu=mtu, zero_copy=True,
                     write_mode="sync" if sync else "writeback", disk=disk)
    pair.run(batch, ordered=not sync and disk is None)
    pair.run(batch[::-1], ordered=not sync and disk is None)


@pytest.fixture
def uniform_taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each batch was served whole (``BatchServer._serve_uniform``'s answers)."""
    taken: list[bool] = []
    real = BatchServer._serve_uniform

    def spy(self: BatchServer, *args: object) -> bool:
        taken.append(real(self, *args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(BatchServer, "_serve_uniform", spy)
    return taken


@pytest.mark.usefixtures("mmsg")
def test_uniform_batches_are_served_whole(make_pair: Callable[..., Pair],
                                          uniform_taken: list[bool]) -> None:
    pair = make_pair(slots=16, zero_copy=True)
    writes = [io(True, lba, 2) for lba in range(0, 20, 2)]
    pair.run(writes)
    pair.run([io(False, lba, 2) for lba in (6, 0, 30, 12, 2, 8, 4, 10)])  # scattered reads
    pair.run([*writes[:4], io(False, 0, 1), *writes[4:]])  # mixed: frame by frame
    scattered_writes = [io(True, lba, 1) for lba in (5, 1, 9, 3, 7, 11, 0, 2)]
    pair.run(scattered_writes)  # one pwrite each, in arrival order, replies together
    pair.run([*scattered_writes, io(True, 5, 1)])  # the same sectors twice: the last wins
    assert uniform_taken == [True, True, False, True, True]


@pytest.mark.usefixtures("mmsg")
def test_exports_that_cannot_be_mapped_read_through_preadv(
        make_pair: Callable[..., Pair], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aoeprov.targetd.export.map_readonly", lambda *_args: None)
    pair = make_pair(slots=16, zero_copy=True)
    assert pair.fast.engine.exports[0].address == 0
    pair.run([io(True, lba, 2) for lba in range(0, 16, 2)])
    pair.run([io(False, lba, 2) for lba in range(0, 16, 2)])  # uniform, but no mapping
    pair.run([io(False, 3, 1), io(True, 3, 1), io(False, 3, 1), io(False, 30, 2)])


@pytest.mark.usefixtures("mmsg")
def test_a_uniform_batch_past_a_page_aligned_shrink_is_refilled(
        make_pair: Callable[..., Pair], uniform_taken: list[bool]) -> None:
    """The whole-batch path meets EFAULT too: each faulting reply is refilled alone."""
    pair = make_pair(slots=16, zero_copy=True)
    pair.run([io(True, lba, 2) for lba in range(16, 32, 2)])
    end = 4096 * ((OFFSET + 24) * 512 // 4096)
    first_gone = end // 512 - OFFSET
    for side in (pair.slow, pair.fast):
        os.truncate(side.path, end)
    replies = pair.run([io(False, lba, 1) for lba in range(first_gone - 6, first_gone + 4)])
    assert uniform_taken == [True, True]
    data = [decode_frame(r).arg.data for r in replies]  # type: ignore[union-attr]
    assert data[5] == bytes([(first_gone - 2) & 0xFE]) * 512  # sector first_gone - 1
    assert data[6:] == [bytes(512)] * 4


@pytest.mark.parametrize("disk", DISKS)
def test_random_misses_bypass_the_cache_and_streams_do_not(make_pair: Callable[..., Pair],
                                                           disk: str) -> None:
    """Without zero-copy every read on a disk is a disk job: a read that does not continue
    the last one reads with O_DIRECT, one that does reads through the cache (readahead);
    both give the slow path's bytes, also past the end of a file that shrank."""
    pair = make_pair(slots=8, disk=disk)
    exp = pair.fast.engine.exports[0]
    assert exp.miss_fd >= 0, "the test's filesystem refuses O_DIRECT"
    pair.run([io(True, lba, 2) for lba in range(0, LENGTH, 2)])
    pair.run([io(False, 9, 2)])
    assert exp.counters.disk_direct == 1
    pair.run([io(False, 11, 2), io(False, 13, 2)])     # continues it: cached reads
    assert exp.counters.disk_direct == 1
    pair.run([io(False, 3, 1), io(False, 20, 2)])      # two random ones
    assert exp.counters.disk_direct == 3
    for side in (pair.slow, pair.fast):
        os.truncate(side.path, (OFFSET + LENGTH - 3) * 512)
    replies = pair.run([io(False, LENGTH - 4, 2), io(False, LENGTH - 2, 2)])
    assert exp.counters.disk_direct == 5               # adjacent: one O_DIRECT job of two
    assert decode_frame(replies[1]).arg.data == bytes(1024)  # type: ignore[union-attr]


@pytest.mark.usefixtures("mmsg")
def test_a_uniform_batch_of_sync_writes_on_a_disk_waits_for_one_sync_job(
        make_pair: Callable[..., Pair], uniform_taken: list[bool],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Written in the loop (into the page cache, one pwritev), answered after one
    fdatasync run as a disk job; a failed one turns every reply into an error."""
    pair = make_pair(slots=16, zero_copy=True, write_mode="sync", disk="threads")
    pair.run([io(True, lba, 1) for lba in range(LENGTH)])   # the pages are cached now
    uniform_taken.clear()
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    replies = pair.run([io(True, lba, 1) for lba in range(8, 16)], ordered=False)
    assert uniform_taken == [True] and len(synced) == 2   # the slow side syncs too
    assert {decode_frame(r).arg.cmd_status for r in replies} == {0x40}  # type: ignore[union-attr]

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "fdatasync", broken)
    replies = pair.run([io(True, lba, 1) for lba in range(16, 24)], ordered=False)
    assert {decode_frame(r).arg.cmd_status for r in replies} == {0x41}  # type: ignore[union-attr]


@pytest.mark.usefixtures("mmsg")
@pytest.mark.parametrize("disk", DISKS)
@pytest.mark.parametrize("sync", [False, True])
def test_scattered_whole_page_writes_on_a_disk_are_served_whole(
        make_pair: Callable[..., Pair], uniform_taken: list[bool], disk: str, sync: bool) -> None:
    """Random 4 KiB writes to an export on a disk: written in the loop one by one, in arrival
    order (a page written twice ends with the later bytes), answered together (``sync``:
    after one sync job); a batch that is not whole pages goes frame by frame."""
    pair = make_pair(slots=16, zero_copy=True, write_mode="sync" if sync else "writeback",
                     disk=disk)
    pages = [lba for lba in range(LENGTH) if (lba + OFFSET) % 8 == 0]
    assert len(pages) >= 3, "the export holds too few whole pages for this test"
    order = [pages[1], pages[0], pages[-1], pages[1], *pages[2:], pages[0], pages[-1]]

    def write(lba: int, count: int, fill: int) -> bytes:
        return request(0, ATA_HDR.pack(0x41, 0, count, ata.ATA_WRITE_EXT, lba_bytes(lba))
                       + bytes([fill]) * (count * 512))

    pair.run([write(lba, 8, 0x30 + i) for i, lba in enumerate(order)], ordered=not sync)
    fast = pair.fast.path.read_bytes()
    assert fast[(pages[1] + OFFSET) * 512] == 0x33  # written twice: the later bytes
    pair.run([write(lba + 1, 1, 0x60 + i) for i, lba in enumerate(order)],  # partial pages
             ordered=not sync)
    assert uniform_taken == [True, False]


@pytest.mark.usefixtures("mmsg")
@pytest.mark.parametrize("disk", [None, DISKS[-1]])
def test_short_batches_are_served_whole_where_the_link_serves_a_disk(
        make_pair: Callable[..., Pair], uniform_taken: list[bool], disk: str | None) -> None:
    """Frame by frame each read of an export on a disk asks ``mincore``; a whole batch asks
    once. So there batches from ``UNIFORM_MIN_DISK`` frames are tried whole, elsewhere from
    ``UNIFORM_MIN``; either way the answers are the slow path's."""
    pair = make_pair(slots=16, zero_copy=True, disk=disk)
    if disk is None:
        pair.fast.engine.exports[0].on_disk = False  # as on tmpfs, whatever tmp_path is on
    pair.run([io(True, lba, 2) for lba in range(0, 20, 2)])     # in the page cache
    pair.run([io(False, lba, 2) for lba in range(0, 2 * UNIFORM_MIN_DISK, 2)])
    pair.run([io(False, lba, 2) for lba in range(0, 2 * (UNIFORM_MIN_DISK - 1), 2)])
    assert uniform_taken == ([True, True] if disk else [True])
    if disk:
        assert pair.fast.engine.exports[0].counters.disk_queued == 0  # all sent from the mapping
