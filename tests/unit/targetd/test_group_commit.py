"""Group commit on a disk: when the fast path starts an export's fdatasync.

A ``DiskIO`` that finishes jobs only when the test says so shows the rule as a
sequence of events: the sync waits for the writes that were in flight when the
first of its writes was done, and for no write that arrived later.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import decode_frame
from aoeprov.link.batch import ReplyBuffer
from aoeprov.targetd.batch import STATUS_FAILED, BatchServer
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.diskio import SYNC, WRITE, DiskJob
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import TargetProtocol

from .frames import (
    CLIENT_MAC,
    LENGTH,
    OFFSET,
    SHELF,
    SLOT,
    FakeLink,
    ata_request,
    make_backing,
)


class ManualIO:
    """Jobs are done when ``finish`` says so (a failed one with ``error``)."""

    def __init__(self) -> None:
        self.submitted: list[DiskJob] = []
        self._done: list[DiskJob] = []
        self.in_flight = 0

    def fileno(self) -> int:
        return -1

    def submit(self, job: DiskJob) -> None:
        self.in_flight += 1
        self.submitted.append(job)

    def push(self) -> None:
        pass

    def finish(self, job: DiskJob, error: OSError | None = None) -> None:
        job.error = error
        self._done.append(job)

    def finished(self) -> list[DiskJob]:
        done, self._done = self._done, []
        self.in_flight -= len(done)
        return done

    def wait(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def of_kind(self, kind: int) -> list[DiskJob]:
        return [j for j in self.submitted if j.kind == kind]


class Target:
    def __init__(self, path: Path, buffer_count: int = 64) -> None:
        config = ExportConfig(SHELF, SLOT, str(make_backing(path)), ("eth0",), offset=OFFSET,
                              length=LENGTH, write_mode="sync", buffer_count=buffer_count)
        self.export = Export(config, hostname="testhost")
        self.export.on_disk = True
        self.io = ManualIO()
        self.batcher = BatchServer(TargetProtocol([self.export]), self.io)
        self.sent: list[bytes] = []
        self.out = ReplyBuffer(8, 1600, lambda f: self.sent.append(bytes(f)))

    def write(self, *lbas: int, src: bytes = CLIENT_MAC) -> None:
        """One batch from ``src``: a one-sector write at each LBA (apart, so one disk job
        each)."""
        frames = [ata_request(ata.ATA_WRITE_EXT, lba, 1, bytes([lba]) * 512, src=src)
                  for lba in lbas]
        self.batcher.serve_batch(frames, FakeLink(), self.out)

    def finish(self, *jobs: DiskJob, error: OSError | None = None) -> None:
        for job in jobs:
            self.io.finish(job, error)
        self.batcher.complete()

    def replies(self) -> list[tuple[int, int]]:
        """(LBA, ATA status) of the replies sent so far."""
        frames = [decode_frame(f) for f in self.sent]
        return [(f.arg.lba, f.arg.cmd_status) for f in frames]  # type: ignore[union-attr]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    t = Target(tmp_path / "disk.img")
    yield t
    t.export.close()


def test_the_sync_waits_for_the_writes_in_flight_and_covers_them_all(target: Target) -> None:
    target.write(0, 4, 8)
    first, second, third = target.io.of_kind(WRITE)
    target.finish(first)
    assert target.io.of_kind(SYNC) == []          # the other two are still being written
    target.finish(third)
    assert target.io.of_kind(SYNC) == []
    target.finish(second)
    (sync,) = target.io.of_kind(SYNC)
    assert len(sync.bufs) == 3 and target.sent == []   # no reply before the sync is done
    target.finish(sync)
    assert sorted(target.replies()) == [(0, ata.STATUS_DRDY), (4, ata.STATUS_DRDY),
                                        (8, ata.STATUS_DRDY)]


def test_writes_that_arrive_later_wait_for_the_next_sync(target: Target) -> None:
    target.write(0)
    (first,) = target.io.of_kind(WRITE)
    target.finish(first)
    (sync,) = target.io.of_kind(SYNC)              # nothing else in flight: it starts
    target.write(4)
    (second,) = target.io.of_kind(WRITE)[1:]
    target.finish(second)                          # held for the next sync, which is
    target.write(8)                                # not held back by a write that
    (third,) = target.io.of_kind(WRITE)[2:]        # arrived after (or it could wait
    target.finish(sync)                            # for ever under a steady stream)
    assert target.replies() == [(0, ata.STATUS_DRDY)]
    (_, again) = target.io.of_kind(SYNC)
    assert [b.nbytes for b in again.bufs] == [512]
    target.finish(third)
    assert len(target.io.of_kind(SYNC)) == 2       # one sync at a time per export
    target.finish(again)
    (_, _, last) = target.io.of_kind(SYNC)
    target.finish(last)
    assert [lba for lba, _ in target.replies()] == [0, 4, 8]


def test_a_failed_write_does_not_hold_the_sync_back(target: Target) -> None:
    target.write(0, 4)
    good, bad = target.io.of_kind(WRITE)
    target.finish(good)
    assert target.io.of_kind(SYNC) == []
    target.finish(bad, error=OSError(5, os.strerror(5)))
    assert target.replies() == [(4, STATUS_FAILED)]
    (sync,) = target.io.of_kind(SYNC)
    target.finish(sync)
    assert target.replies() == [(4, STATUS_FAILED), (0, ata.STATUS_DRDY)]


def test_a_failed_sync_fails_every_write_not_yet_acknowledged(target: Target) -> None:
    """The kernel reports a writeback error once, to the first sync that asks: the
    failed sync's error may have been that of a write held for the next one, which
    would then find nothing to report. So every write done or in flight when a sync
    fails gets an ATA error; a write that arrives afterwards is synced as usual."""
    target.write(0)
    (first,) = target.io.of_kind(WRITE)
    target.finish(first)
    (sync,) = target.io.of_kind(SYNC)
    target.write(4, 8)
    done, in_flight = target.io.of_kind(WRITE)[1:]
    target.finish(done)                            # held for the next sync
    target.finish(sync, error=OSError(5, os.strerror(5)))
    assert target.replies() == [(0, STATUS_FAILED), (4, STATUS_FAILED)]
    assert len(target.io.of_kind(SYNC)) == 1       # nothing left to sync
    target.finish(in_flight)                       # written fine, but the error may be its
    assert target.replies()[2:] == [(8, STATUS_FAILED)]
    assert len(target.io.of_kind(SYNC)) == 1
    target.write(12)
    (later,) = target.io.of_kind(WRITE)[3:]
    target.finish(later)
    (_, again) = target.io.of_kind(SYNC)
    target.finish(again)
    assert target.replies()[3:] == [(12, ata.STATUS_DRDY)]
    assert target.export.counters.ata_errors == 3
    assert target.export.outstanding == {}


def test_an_initiator_has_at_most_the_advertised_buffer_count_in_flight(tmp_path: Path) -> None:
    """Memory stays bounded: a request beyond the buffer count the export advertises is
    dropped and counted (the initiator sends it again); another initiator is not held
    back by it, and an answered request no longer counts."""
    target = Target(tmp_path / "disk.img", buffer_count=2)
    other = bytes.fromhex("020000000003")
    try:
        target.write(0, 4, 8)
        assert len(target.io.of_kind(WRITE)) == 2
        assert target.export.counters.overrun == 1
        target.write(12, src=other)
        assert len(target.io.of_kind(WRITE)) == 3
        target.finish(*target.io.of_kind(WRITE))
        (sync,) = target.io.of_kind(SYNC)
        target.finish(sync)
        assert sorted(lba for lba, _ in target.replies()) == [0, 4, 12]
        target.write(8)                            # sent again: there is room now
        assert len(target.io.of_kind(WRITE)) == 4
        assert target.export.counters.overrun == 1
        assert target.export.outstanding == {CLIENT_MAC: 1}
    finally:
        target.export.close()
