"""The disk I/O layer: job ordering, and both ways of running jobs (io_uring, threads)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.targetd import uring
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.diskio import (
    READ,
    SYNC,
    WRITE,
    BufferPool,
    DiskIO,
    DiskJob,
    Ordering,
    ThreadedIO,
    open_disk_io,
)
from aoeprov.targetd.export import Export

KINDS = ["threads", *(["uring"] if uring.available() else [])]


def job(kind: int, pos: int, end: int, exp: Export | None = None) -> DiskJob:
    return DiskJob(kind, exp, pos, end, [])  # type: ignore[arg-type]


def test_overlapping_jobs_wait_in_arrival_order_when_one_writes() -> None:
    order = Ordering()
    read1, write, read2, other = (job(READ, 0, 4096), job(WRITE, 2048, 6144),
                                  job(READ, 4096, 8192), job(READ, 8192, 12288))
    for j in (read1, write, read2, other):
        order.add(j)
    assert (read1.blocked, write.blocked, read2.blocked, other.blocked) == (0, 1, 1, 0)
    assert order.write_overlaps(6000, 7000) and not order.write_overlaps(6144, 8192)
    assert order.remove(read1) == [write]
    assert order.remove(write) == [read2]
    assert order.remove(other) == [] and order.remove(read2) == []
    assert not order.jobs and not order.writes


def test_reads_never_wait_for_reads() -> None:
    order = Ordering()
    first, second = job(READ, 0, 4096), job(READ, 0, 4096)
    order.add(first)
    order.add(second)
    assert second.blocked == 0 and order.overlaps(0, 1) and not order.overlaps(4096, 8192)


@pytest.fixture(params=KINDS)
def disk(request: pytest.FixtureRequest) -> Iterator[DiskIO]:
    io: DiskIO = uring.UringIO() if request.param == "uring" else ThreadedIO()
    yield io
    io.close()


@pytest.fixture
def export(tmp_path: Path) -> Iterator[Export]:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    exp = Export(ExportConfig(0, 1, str(path), ("eth0",), write_mode="writeback"))
    yield exp
    exp.close()


def run(disk: DiskIO, *jobs: DiskJob) -> list[DiskJob]:
    for j in jobs:
        disk.submit(j)
    disk.push()
    done: list[DiskJob] = []
    while len(done) < len(jobs):
        disk.wait(5.0)
        done += disk.finished()
    assert disk.in_flight == 0
    return done


def test_reads_writes_and_syncs_run(disk: DiskIO, export: Export) -> None:
    pool = BufferPool()
    bufs = [pool.take(512), pool.take(512)]
    for buf in bufs:
        buf.nbytes = 512
    bufs[0].data[:] = b"\x01" * 512
    bufs[1].data[:] = b"\x02" * 512
    (done,) = run(disk, DiskJob(WRITE, export, 1024, 2048, bufs))
    assert done.error is None
    assert os.pread(export.fd, 1024, 1024) == b"\x01" * 512 + b"\x02" * 512
    (synced,) = run(disk, DiskJob(SYNC, export, 0, 0, []))
    assert synced.error is None
    back = [pool.take(512), pool.take(512)]
    for buf in back:
        buf.nbytes = 512
    (read,) = run(disk, DiskJob(READ, export, 512, 1536, back))
    assert read.error is None
    assert bytes(back[0].data) == bytes(range(256)) * 2
    assert bytes(back[1].data) == b"\x01" * 512


def test_a_read_past_the_end_of_a_shrunk_file_gives_zeros(disk: DiskIO, export: Export) -> None:
    os.ftruncate(export.fd, 1024 + 100)
    buf = BufferPool().take(1024)
    buf.nbytes = 1024
    buf.data[:] = b"\xff" * 1024
    (done,) = run(disk, DiskJob(READ, export, 1024, 2048, [buf]))
    assert done.error is None
    assert bytes(buf.data) == bytes(range(100)) + bytes(924)


def test_a_failing_call_sets_the_jobs_error(disk: DiskIO, tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(4096))
    exp = Export(ExportConfig(0, 1, str(path), ("eth0",), read_only=True))
    try:
        buf = BufferPool().take(512)
        buf.nbytes = 512
        (done,) = run(disk, DiskJob(WRITE, exp, 0, 512, [buf]))  # fd opened O_RDONLY
        assert isinstance(done.error, OSError) and done.error.errno == errno.EBADF
    finally:
        exp.close()


def test_io_uring_is_used_where_the_kernel_allows_it() -> None:
    io = open_disk_io()
    try:
        try:
            uring.UringIO().close()
        except OSError:
            assert isinstance(io, ThreadedIO)
        else:
            assert isinstance(io, uring.UringIO) == uring.available()
    finally:
        io.close()
