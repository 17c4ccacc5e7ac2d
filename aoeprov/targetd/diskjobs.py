"""Disk jobs of the batched fast path: requests for exports on a disk that cannot be
served in the loop become jobs of ``target.diskio``, answered when they are done.

``BatchServer`` (``target.batch``) decides which requests come here and applies its
ordering rules first; ``DiskJobs`` owns what happens next:

- adjacent requests of one export are gathered in a run (``add``) and handed to the
  disk as one job (``finish_run``): one vectored call over their job buffers, each of
  which holds the request's reply header and data;
- jobs of one export that touch the same sectors run in arrival order when one of them
  writes (rule 3: ``diskio.Ordering``); a random read that missed the cache reads with
  O_DIRECT (``DiskJob.bypass_cache``);
- ``complete`` sends the replies of the jobs done; a run that failed is done again
  request by request, so each request gets its own answer;
- replies to writes on ``sync`` exports wait for group commit (rule 4,
  ``hold_for_sync``): one fdatasync job at a time per export, covering every write
  done before it started, and the writes in flight when the first of them was done;
- a failed sync fails every write of its export not yet acknowledged (``_fail_unsynced``):
  the kernel reports a writeback error once per open file, to whichever sync asks
  first, so the error may have been theirs and no later sync would say so.
"""

from __future__ import annotations

import errno
import logging

from aoeprov.aoe.wire import (
    ATA_FRAME,
    ATA_OVERHEAD,
    CMD_STATUS_OFFSET,
    ERR_FEATURE_OFFSET,
    ETH_P_AOE,
    RESPONSE_VERFL,
)
from aoeprov.link.batch import ReplyBuffer
from aoeprov.targetd import uniform
from aoeprov.targetd.diskio import (
    HEADER_AT,
    PAGE,
    READ,
    SYNC,
    WRITE,
    BufferPool,
    DiskIO,
    DiskJob,
    HeldReplies,
    IoBuffer,
)
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import (
    CMD_ATA,
    ERR_ABRT,
    STATUS_DRDY,
    STATUS_FAILED,
    Frame,
    ProtocolCounters,
)

LOG = logging.getLogger(__name__)

# Requests per disk job (adjacent ones of one export): one large preadv lets the
# kernel's readahead see a sequential stream; random requests make one job each.
MAX_DISK_RUN = 32
ATA_PACK_INTO = ATA_FRAME.pack_into

# (export, initiator MAC, tag, aflags, raw LBA, is read, byte position, byte count)
Request = tuple[Export, bytes, int, int, bytes, bool, int, int]


class DiskRun:
    """Adjacent reads (or writes) of one export on a disk, gathered for one disk job."""

    __slots__ = ("bufs", "end", "exp", "kind", "pos")

    def __init__(self) -> None:
        self.exp: Export | None = None
        self.kind = READ
        self.pos = self.end = 0
        self.bufs: list[IoBuffer] = []


class DiskJobs:
    """The disk jobs of one ``BatchServer``: gathered, handed to ``disk``, answered."""

    def __init__(self, disk: DiskIO, counters: ProtocolCounters) -> None:
        self.disk = disk
        self.run = DiskRun()       # the open run (``run.exp`` None: none)
        self._pool = BufferPool()
        self._counters = counters  # the engine's (frames in, like every other path)

    @property
    def busy(self) -> bool:
        """Jobs are in flight (their replies are still to be sent)."""
        return self.disk.in_flight > 0

    def admit(self, exp: Export, src: bytes) -> bool:
        """Whether ``src`` may have one more request in flight on ``exp`` (at most the
        buffer count the export advertised; beyond it, the initiator sends it again)."""
        if exp.outstanding.get(src, 0) < exp.buffer_count:
            return True
        exp.counters.overrun += 1
        return False

    def add(self, request: Request, frame: Frame, mac: bytes, out: ReplyBuffer) -> None:
        """Add the request to the open run (a job once it ends), its reply built in a
        job buffer. The caller has applied the ordering rules (``BatchServer._queue_disk``)."""
        exp, src, tag, aflags, lba_raw, is_read, pos, nbytes = request
        kind = READ if is_read else WRITE
        run = self.run
        if (run.exp is not exp or run.kind != kind or run.end != pos
                or len(run.bufs) == MAX_DISK_RUN or run.bufs[0].out is not out):
            self.finish_run()
            run.exp, run.kind, run.pos, run.end = exp, kind, pos, pos
        buf = self._pool.take(nbytes)
        ATA_PACK_INTO(buf.memory, HEADER_AT, src, mac, ETH_P_AOE, RESPONSE_VERFL, 0,
                      exp.shelf, exp.slot, CMD_ATA, tag, aflags, 0, 0, STATUS_DRDY, lba_raw)
        buf.nbytes, buf.src, buf.out = nbytes, src, out
        if is_read:
            buf.length = ATA_OVERHEAD + nbytes
        else:
            buf.length = ATA_OVERHEAD
            buf.view[PAGE:PAGE + nbytes] = memoryview(frame)[ATA_OVERHEAD:ATA_OVERHEAD + nbytes]
        exp.outstanding[src] = exp.outstanding.get(src, 0) + 1
        run.bufs.append(buf)
        run.end = pos + nbytes

    def finish_run(self) -> None:
        """Hand the open run to the disk as a job (once earlier conflicting jobs are done)."""
        run = self.run
        exp = run.exp
        if exp is None:
            return
        job = DiskJob(run.kind, exp, run.pos, run.end, run.bufs)
        run.exp, run.bufs = None, []
        count = len(job.bufs)
        if job.kind == READ:
            if job.pos != exp.read_end and _direct_fits(exp, job):
                job.bypass_cache()  # a random read: no readahead to gain from the cache
                exp.counters.disk_direct += count
            exp.read_end = job.end
        exp.counters.disk_queued += count
        exp.counters.frames_in += count
        self._counters.frames_in += count
        exp.order.add(job)
        if not job.blocked:
            self.disk.submit(job)

    def complete(self) -> None:
        """Send the replies of the disk jobs done; start the jobs that waited for them."""
        disk = self.disk
        touched: dict[int, ReplyBuffer] = {}
        for job in disk.finished():
            exp = job.exp
            if job.kind == SYNC:
                exp.syncing = False
                self._reply(job, touched)
                if job.error is not None:
                    self._fail_unsynced(exp, touched)
                self._start_sync(exp)
            elif job.error is not None and len(job.bufs) > 1:
                self._split(job)
            else:
                self._written_or_read(job, touched)
        disk.push()
        for out in touched.values():
            try:
                out.flush()
            except OSError as exc:  # the link went away: the initiator sends again
                LOG.debug("replies of disk jobs not sent: %s", exc)

    def _split(self, job: DiskJob) -> None:
        """A run failed: its requests again one by one, so each gets its own answer.

        They stand in for ``job``, which stays in the export's ``Ordering`` until the
        last of them is done.
        """
        pos = job.pos
        for buf in job.bufs:
            part = DiskJob(job.kind, job.exp, pos, pos + buf.nbytes, [buf])
            part.fd, part.direct, part.parent = job.fd, job.direct, job
            job.children += 1
            self.disk.submit(part)
            pos += buf.nbytes

    def _written_or_read(self, job: DiskJob, touched: dict[int, ReplyBuffer]) -> None:
        """A read or write is done: release what waited for it, reply (or wait for a sync)."""
        exp, whole = job.exp, job.parent or job
        if job.kind == WRITE and job.error is None and whole.seq <= exp.sync_failed_upto:
            job.error = OSError(errno.EIO, "an fdatasync of the export failed meanwhile")
        if whole is not job:
            whole.children -= 1
        if not whole.children:
            for ready in exp.order.remove(whole):
                self.disk.submit(ready)
        if job.error is None:  # counted as the inline path does (a failed sync later too)
            counters = exp.counters
            nbytes = sum(buf.nbytes for buf in job.bufs)
            if job.kind == READ:
                counters.reads += len(job.bufs)
                counters.bytes_read += nbytes
            else:
                counters.writes += len(job.bufs)
                counters.bytes_written += nbytes
        if job.kind == WRITE and exp.sync and job.error is None:
            self.hold_for_sync(exp, job.bufs)  # replies once an fdatasync covers them
        else:
            self._reply(job, touched)
            self._start_sync(exp)  # if held back by this job (a failed write, say)

    def _fail_unsynced(self, exp: Export, touched: dict[int, ReplyBuffer]) -> None:
        """After a failed sync: the writes done but held for the next sync get ATA errors
        now, and so will the writes still in flight (``Export.sync_failed_upto``).

        Why: a writeback error is reported once per open file, to the first sync that
        asks. The failed one may have taken an error of pages it did not cover (written
        back early by it or by the kernel's flusher); the next sync, finding them clean,
        would succeed, and their writes would be acknowledged though not on the disk.
        """
        exp.sync_failed_upto = exp.order.newest_write()
        bufs, held = exp.unsynced, exp.unsynced_held
        if not (bufs or held):
            return
        exp.unsynced, exp.unsynced_held = [], []
        LOG.warning("export %s: %d writes waiting for the next fdatasync fail with the last one",
                    exp.label, len(bufs) + sum(batch.count for batch in held))
        self._answer(exp, bufs, held, True, touched)

    def _reply(self, job: DiskJob, touched: dict[int, ReplyBuffer]) -> None:
        """Put the replies of ``job`` in their reply buffers (ATA errors if it failed)."""
        exp = job.exp
        if job.error is not None:
            what = ("read at sector", "write at sector", "fdatasync after sector")[job.kind]
            LOG.warning("export %s: %s %d failed: %s", exp.label, what,
                        (job.pos - exp.base) >> 9, job.error)
        self._answer(exp, job.bufs, job.held, job.error is not None, touched)

    def _answer(self, exp: Export, bufs: list[IoBuffer], held: list[HeldReplies],
                failed: bool, touched: dict[int, ReplyBuffer]) -> None:
        """The replies in ``bufs`` and ``held``, ATA errors if ``failed``."""
        counters = exp.counters
        for buf in bufs:
            if failed:
                buf.memory[HEADER_AT + ERR_FEATURE_OFFSET] = ERR_ABRT
                buf.memory[HEADER_AT + CMD_STATUS_OFFSET] = STATUS_FAILED
                buf.length = ATA_OVERHEAD
                counters.ata_errors += 1
            if buf.src:  # else a reply the engine made (and counted)
                counters.frames_out += 1
            out = buf.out
            if out is not None:
                touched[id(out)] = out
                try:
                    out.put(buf.reply)
                except OSError as exc:
                    LOG.debug("reply of a disk job not sent: %s", exc)
            in_flight = exp.outstanding.get(buf.src, 0)
            if in_flight > 1:
                exp.outstanding[buf.src] = in_flight - 1
            else:
                exp.outstanding.pop(buf.src, None)
            buf.out = None
            self._pool.give(buf)
        for batch in held:
            self._reply_held(batch, failed, exp)

    @staticmethod
    def _reply_held(batch: HeldReplies, failed: bool, exp: Export) -> None:
        """The replies of an inline batch of sync writes (counted when it was served),
        sent in one ``send_uniform`` after what their buffer already holds."""
        if failed:
            exp.counters.ata_errors += batch.count
            headers = uniform.replies(batch.requests, batch.count, batch.mac,
                                      STATUS_FAILED, ERR_ABRT)
        else:
            headers = uniform.replies(batch.requests, batch.count, batch.mac)
        try:
            batch.out.flush()
            batch.out.send_uniform(headers, batch.count)
        except OSError as exc:
            LOG.debug("replies of sync writes not sent: %s", exc)

    def hold_for_sync(self, exp: Export, bufs: list[IoBuffer],
                       batch: HeldReplies | None = None) -> None:
        """Rule 4: these replies wait for the export's next fdatasync."""
        if not (exp.unsynced or exp.unsynced_held):
            # the writes in flight now (most often the rest of the same window) are
            # done within moments: the sync waits for them, so one covers them all
            exp.sync_after = exp.order.newest_write()
        exp.unsynced.extend(bufs)
        if batch is not None:
            exp.unsynced_held.append(batch)
        self._start_sync(exp)

    def hold_reply(self, exp: Export, reply: bytes | bytearray, out: ReplyBuffer) -> None:
        """Rule 4 for a reply the engine made (a sync write or FLUSH it took): it waits
        for the export's next fdatasync in a job buffer of its own."""
        buf = self._pool.take(0)
        buf.view[HEADER_AT:HEADER_AT + len(reply)] = reply
        buf.length, buf.nbytes, buf.src, buf.out = len(reply), 0, b"", out
        self.hold_for_sync(exp, [buf])

    def _start_sync(self, exp: Export) -> None:
        """Rule 4: one fdatasync at a time per export, covering every write done so far
        and started once the writes in flight when the first of them was done are done
        too (never later: writes that arrive meanwhile wait for the next one)."""
        if (exp.syncing or not (exp.unsynced or exp.unsynced_held)
                or exp.order.writes_up_to(exp.sync_after)):
            return
        exp.syncing = True
        job = DiskJob(SYNC, exp, 0, 0, exp.unsynced)
        job.held, exp.unsynced, exp.unsynced_held = exp.unsynced_held, [], []
        self.disk.submit(job)

    def drain(self) -> None:
        """Wait for every disk job and send its reply (before exports close)."""
        while self.busy:
            self.disk.wait(1.0)
            self.complete()


def _direct_fits(exp: Export, job: DiskJob) -> bool:
    """The export has an O_DIRECT descriptor whose alignment the job's bytes meet
    (buffers are page-aligned; offset and every length must be multiples)."""
    if exp.miss_fd < 0:
        return False
    mask = exp.miss_align - 1
    if len(job.bufs) == 1:
        return not (job.pos | job.end) & mask
    return not (job.pos & mask or any(b.nbytes & mask for b in job.bufs))
