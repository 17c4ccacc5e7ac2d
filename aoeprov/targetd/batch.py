"""The batched fast path: a window of frames in, replies built in place.

``serve_batch`` gives the same answers as ``TargetProtocol.handle_batch`` (the unit tests
compare both on random frames) at a fraction of the cost per frame:

- A batch of nothing but READ EXT (or WRITE EXT) for one export, the shape of
  every bulk transfer, is served whole by ``target.uniform``: its checks and its
  reply headers are a few operations over the whole batch, reads leave in one
  ``sendmmsg`` straight from the export's mapping, adjacent writes go down in one
  ``pwritev`` and scattered ones (random writes) in one ``pwrite`` each, their replies
  in one ``sendmmsg``. Anything else in the batch, and it is served frame by frame:
- READ/READ_EXT/WRITE/WRITE_EXT addressed to an export's unicast MAC, with
  nothing unusual about them, are parsed with one ``struct`` call and answered
  by packing the reply header straight into a slot of a ``ReplyBuffer``. Read
  data is attached from the export's mapping (``target.mapping``) where the
  reply buffer sends with ``sendmmsg``, else lands in the slot by ``preadv``; no
  per-frame buffers are allocated.
- Consecutive frames of the batch that read (or write) adjacent sectors of one
  export are served by one ``preadv`` (``pwritev``) over all their slots; the
  replies of such a run leave together (``sendmmsg``) as soon as it is done.
- Everything else (config, masks, reserve, IDENTIFY, flushes, errors, malformed
  frames, wildcard addresses) goes through ``TargetProtocol.handle`` unchanged, after the
  pending merged I/O is done, so the order of effects is the frames' order.
  Replies reading from the mapping leave before any later write of the batch
  touches the file, so a read never sees a write that came after it.

Replies to writes on ``sync`` exports are held to the end of the batch (or until
the buffer is full) and leave only after one ``fdatasync`` per export; a failed
sync turns them into ATA errors, as in ``TargetProtocol.commit``.

Exports on a disk (``Export.on_disk``) are served the same way where their data is in
the page cache; everything else for them (reads of pages not cached, writes, syncs)
becomes jobs (``target.diskjobs``, run by ``target.diskio``) whose replies leave when
the disk is done (``complete``), so the frame loop never waits on the disk.

The ordering rules, in one place (``BatchServer``'s "ordering" methods):

1. A reply whose data comes from a mapping is read by the kernel when the reply
   buffer is flushed. Before a write of the batch may change the file (done inline,
   handed to the engine, or handed to a worker), the buffer is flushed
   (``_before_write``): a read never sees a write that arrived after it.
2. A read may be sent from the mapping only where no disk write in flight (or still
   being gathered) covers its sectors, and, on a disk, only where all of its pages
   are in the page cache (``_may_map``); otherwise it becomes a disk job.
3. Disk jobs of one export that touch the same sectors run in arrival order when
   one of them writes (``diskio.Ordering``); the others run in parallel.
4. A reply to a write leaves once the data reached the page cache (``writeback``)
   or once an ``fdatasync`` begun after the write reached it returned (``sync``):
   inline, one sync per export per flush of the reply buffer (``_commit``); on
   disk, one sync job per export at a time covering every write finished before it
   started, started once the writes that were in flight when the first of those
   finished are done as well (group commit, ``DiskJobs.hold_for_sync``). A failed sync fails
   the replies it held, and on a disk every write not yet acknowledged (the error may
   have been theirs: ``DiskJobs._fail_unsynced``).
5. While replies held for a sync wait in the reply buffer, nothing in it leaves
   early (``_may_send_early``); otherwise runs and bursts of mapped reads leave as
   soon as they are ready, so the initiator's window keeps moving.
6. A run's slots hold their data before the buffer is flushed (``_finish`` first).
"""
from __future__ import annotations

import array
import logging
import os
import sys
from collections.abc import Sequence

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    ATA_FRAME,
    ATA_OVERHEAD,
    CMD_STATUS_OFFSET,
    ERR_FEATURE_OFFSET,
    ETH_P_AOE,
    LBA_BYTES,
    LBA_OFFSET,
    RESPONSE_VERFL,
    SECTOR_COUNT_OFFSET,
    SHELF_OFFSET,
    SLOT_OFFSET,
    VERSION_BITS,
)
from aoeprov.link.batch import ReplyBuffer
from aoeprov.targetd import uniform
from aoeprov.targetd.diskio import PAGE, WRITE, DiskIO, HeldReplies, read_fully
from aoeprov.targetd.diskjobs import DiskJobs, Request
from aoeprov.targetd.export import Export, sync_exports
from aoeprov.targetd.mapping import FileMapping
from aoeprov.targetd.protocol import (
    AFLAG_LBA48,
    CMD_ATA,
    ERR_ABRT,
    LBA28_MASK,
    READS,
    STATUS_DRDY,
    STATUS_FAILED,
    WRITES,
    Frame,
    Link,
    TargetProtocol,
    as_failed,
)

LOG = logging.getLogger(__name__)

# one preadv/pwritev takes at most IOV_MAX (1024 on Linux) buffers
MAX_WRITE_RUN = 256
# Reads merge in runs of at most this many frames, each run's replies sent as
# soon as it is read, so the initiator's window keeps moving. Measured with the
# bench's client: one send per batch instead cost 25-35% of sequential read
# throughput; runs of 1 cost more CPU; runs of 4 did best at MTU 1500 and 9000.
MAX_READ_RUN = 4
# Reads answered from a mapping leave in bursts of this many replies.
MAX_READ_BURST = 8
# Writeback writes too: their replies need no fdatasync, so they leave run by run.
MAX_WRITEBACK_RUN = 16
# After a read that missed the cache, this many reads of the export go to the disk
# without a ``mincore`` first: on a cold store nearly all miss, and the check was a
# tenth of the target's time per random read (a hit among them is still read right,
# only not zero-copy).
COLD_READS = 7
# Batches at least this long are tried whole (target.uniform): below it the
# per-frame loop costs less than the batch arithmetic's fixed part.
UNIFORM_MIN = 8
# Where the link serves an export on a disk, from this long: frame by frame, each read
# of such an export asks ``mincore`` (4-7 µs here), a whole batch asks once. Measured on
# cached sequential reads at window 16 (batches of 1-16): 6-13 % faster, 5-8 % less CPU
# per byte, than at 8; no slower from a cold disk.
UNIFORM_MIN_DISK = 4
LANE_MASK = (1 << 64) - 1
LITTLE_ENDIAN = sys.byteorder == "little"  # iovec words are built little-endian
WRITE_EXT = ata.ATA_WRITE_EXT
REQUEST_SIZE = ATA_FRAME.size
ATA_PACK_INTO = ATA_FRAME.pack_into


class _Run:
    """Adjacent reads (or writes) of one export waiting for one vectored call.

    One object per ``BatchServer``, reused: ``exp`` is None when no run is open.
    """

    __slots__ = ("buffers", "end", "exp", "is_read", "pos", "slots")

    def __init__(self) -> None:
        self.exp: Export | None = None
        self.is_read = False
        self.pos = self.end = 0
        self.buffers: list[memoryview] = []
        self.slots: list[int] = []  # reply slot of each buffer


class BatchServer:
    """Serves batches for one ``TargetProtocol`` into ``ReplyBuffer``s.

    With ``disk`` (a ``DiskIO``), exports on a disk are served through it: the caller
    runs ``complete`` whenever ``disk.fileno()`` is readable and ``drain`` before it
    closes exports. Without, every export is served inline (as on tmpfs).
    """

    def __init__(self, engine: TargetProtocol, disk: DiskIO | None = None) -> None:
        self.engine = engine
        self.disk = disk
        engine.defer_disk_sync = disk is not None
        # (export, slot) of sync writes whose replies wait for fdatasync
        self._sync_slots: list[tuple[Export, int]] = []
        self._run = _Run()
        self._jobs = DiskJobs(disk, engine.counters) if disk is not None else None
        # replies in the buffer carry data attached from a mapping (sent at flush time)
        self._attached = False

    @property
    def busy(self) -> bool:
        """Disk jobs are in flight (their replies are still to be sent)."""
        return self._jobs is not None and self._jobs.busy

    def complete(self) -> None:
        """Send the replies of the disk jobs done (``disk.fileno()`` was readable)."""
        if self._jobs is not None:
            self._jobs.complete()

    def drain(self) -> None:
        """Wait for every disk job and send its reply (before exports close)."""
        if self._jobs is not None:
            self._jobs.drain()

    def serve_batch(self, frames: Sequence[Frame], link: Link, out: ReplyBuffer) -> None:
        """Handle ``frames`` from ``link``, build the replies in ``out`` and flush it."""
        table = self.engine.table(link.ifname)
        if out.zero_copy:
            out.refill = lambda index, nbytes: self._refill(out, table, index, nbytes)
            if _worth_whole(len(frames), table) and self._serve_uniform(frames, link, out, table):
                if self.disk is not None:
                    self.disk.push()  # a sync job for held replies (the loop sleeps next)
                return
        max_read = link.mtu - ATA_OVERHEAD
        for frame in frames:
            try:
                request = self._parse(frame, link.mac, max_read, table)
                if request is None:
                    self._slow(frame, link, out)
                elif request[5] and out.zero_copy and self._may_map(request):
                    self._read_mapped(request, link.mac, out)
                elif (request[0].on_disk and self.disk is not None
                      and (request[5] or not self._write_inline(
                          request[0], request[6], request[6] + request[7]))):
                    self._queue_disk(request, frame, link.mac, out)
                else:
                    self._queue_run(request, frame, link.mac, out)
            except Exception:
                # a bug must not stop a target that other hosts depend on
                self.engine.counters.internal_errors += 1
                LOG.exception("internal error handling a frame of %d bytes on %s",
                              len(frame), link.ifname)
        try:
            self._finish(out)
            self._finish_disk()
        except Exception:
            self.engine.counters.internal_errors += 1
            LOG.exception("internal error finishing a batch on %s", link.ifname)
        self._flush(out)
        if self.disk is not None:
            self.disk.push()

    def _parse(self, frame: Frame, mac: bytes, max_read: int,
               table: dict[int, Export]) -> Request | None:
        """A READ/WRITE (EXT) with nothing unusual about it, or None (the engine's case)."""
        size = len(frame)
        if size < REQUEST_SIZE or not table:
            return None
        (dst, src, ethertype, verfl, _err, shelf, slot, cmd, tag, aflags, _feature, count,
         opcode, lba_raw) = ATA_FRAME.unpack_from(frame)
        exp = table.get(shelf << 8 | slot)
        if (cmd != CMD_ATA or verfl != VERSION_BITS or dst != mac or exp is None
                or ethertype != ETH_P_AOE or not count
                or (exp.masks and src not in exp.masks)
                or (exp.reserve and src not in exp.reserve)
                or (exp.direct and self.disk is None)):  # aligned buffers: the engine's
            return None
        is_read = opcode in READS
        lba = int.from_bytes(lba_raw, "little")
        if not aflags & AFLAG_LBA48:
            lba &= LBA28_MASK
        nbytes = count << 9
        if (lba + count > exp.sectors or (
                nbytes > max_read if is_read else (
                    opcode not in WRITES or exp.read_only
                    or size < ATA_OVERHEAD + nbytes))):
            return None
        return exp, src, tag, aflags, lba_raw, is_read, exp.base + (lba << 9), nbytes

    def _read_mapped(self, request: Request, mac: bytes, out: ReplyBuffer) -> None:
        """Reply with the data attached from the mapping (sent at the next flush)."""
        exp, src, tag, aflags, lba_raw, _is_read, pos, nbytes = request
        if self._run.exp is not None:
            self._finish(out)  # no open run may have slots still waiting for their data
        index = len(out.lengths)
        if index == out.slots:
            self._flush(out)
            index = 0
        ATA_PACK_INTO(out.buffer, index * out.slot_size, src, mac, ETH_P_AOE, RESPONSE_VERFL,
                      0, exp.shelf, exp.slot, CMD_ATA, tag, aflags, 0, 0, STATUS_DRDY, lba_raw)
        out.lengths.append(ATA_OVERHEAD)
        out.attach(exp.address + pos, nbytes)
        exp.read_end = pos + nbytes
        self._attached = True
        ec = exp.counters
        ec.frames_in += 1
        ec.frames_out += 1
        ec.reads += 1
        ec.bytes_read += nbytes
        self.engine.counters.frames_in += 1
        if index + 1 >= MAX_READ_BURST and self._may_send_early():
            out.flush()  # let these go while the rest of the batch is served
            self._attached = False

    def _queue_run(self, request: Request, frame: Frame, mac: bytes, out: ReplyBuffer) -> None:
        """Add the request to the open run (inline I/O into its reply slot)."""
        exp, src, tag, aflags, lba_raw, is_read, pos, nbytes = request
        if not is_read:
            self._before_write(out)
        run = self._run
        if (run.exp is not exp or run.is_read != is_read or run.end != pos
                or len(run.slots) == (MAX_READ_RUN if is_read else
                                      MAX_WRITE_RUN if exp.sync else MAX_WRITEBACK_RUN)):
            if run.exp is not None:
                self._finish(out)
                if self._may_send_early():
                    out.flush()  # let these replies go while the rest is served
            run.exp, run.is_read, run.pos, run.end = exp, is_read, pos, pos
        index = len(out.lengths)
        if index == out.slots:
            self._finish(out)
            self._flush(out)
            run.exp, run.is_read, run.pos, run.end = exp, is_read, pos, pos
            index = 0
        off = index * out.slot_size
        ATA_PACK_INTO(out.buffer, off, src, mac, ETH_P_AOE, RESPONSE_VERFL, 0, exp.shelf,
                      exp.slot, CMD_ATA, tag, aflags, 0, 0, STATUS_DRDY, lba_raw)
        if is_read:
            out.lengths.append(ATA_OVERHEAD + nbytes)
            data = out.view[off + ATA_OVERHEAD:off + ATA_OVERHEAD + nbytes]
        else:
            out.lengths.append(ATA_OVERHEAD)
            data = memoryview(frame)[ATA_OVERHEAD:ATA_OVERHEAD + nbytes]
        run.buffers.append(data)
        run.slots.append(index)
        run.end = pos + nbytes

    # -- ordering (the rules of the module docstring) -----------------------------

    def _before_write(self, out: ReplyBuffer) -> None:
        """Rule 1: mapped reads already in ``out`` leave before a write changes the file."""
        if self._attached:
            self._finish(out)
            self._flush(out)

    def _may_map(self, request: Request) -> bool:
        """Rule 2: whether this read may be sent from the export's mapping now."""
        exp, pos, nbytes = request[0], request[6], request[7]
        if not exp.address:
            return False
        if self._jobs is None or not (exp.on_disk or exp.order.writes):
            return True
        if self._jobs.run.exp is exp and self._jobs.run.kind == WRITE:
            self._jobs.finish_run()  # so that the overlap check below sees its sectors
        mapping = exp.mapping
        if mapping is None or exp.order.write_overlaps(pos, pos + nbytes):
            return False
        if not exp.on_disk:
            return True
        if exp.cold_reads:  # a miss just now: the next reads are taken to miss too
            exp.cold_reads -= 1
            return False
        if mapping.resident(pos, nbytes):
            return True
        exp.cold_reads = COLD_READS
        return False

    def _write_inline(self, exp: Export, pos: int, end: int, held: bool = False) -> bool:
        """Rule 2 for writes: whether a write to an export on a disk may be done in the
        loop, like one to tmpfs: only into the page cache (not O_DIRECT), with nothing
        to read first (whole pages, or pages all cached) and no disk job in flight on
        those bytes; for a ``sync`` export only where its replies can be ``held`` for a
        sync job (whole uniform batches). Else it is a disk job."""
        if exp.sync and not held:
            return False
        mapping = self._inline_mapping(exp)
        if mapping is None or exp.order.overlaps(pos, end):
            return False
        return (not (pos | end) & (PAGE - 1)) or mapping.resident(pos, end - pos)

    def _scatter_inline(self, exp: Export, starts: int, nbytes: int,
                        lane: uniform.Lanes) -> bool:
        """Rule 2 for a uniform batch of writes that are not adjacent (random writes):
        as ``_write_inline`` for each, asked of them all at once. Whole pages only (a
        partial page not cached would be read first), and no disk job of the export in
        flight (the per-frame path finds which of them touch the same sectors)."""
        if self._inline_mapping(exp) is None or exp.order.jobs:
            return False
        return (starts | nbytes) & lane.rep(PAGE - 1) == 0

    def _inline_mapping(self, exp: Export) -> FileMapping | None:
        """What rule 2 asks first of any inline write to an export on a disk: the mapping
        of the page cache it would write into (None: O_DIRECT, or no disk jobs to be
        ordered against). The disk run being gathered for the export is handed over
        first, so that the overlap checks after this see its sectors as in flight."""
        if exp.mapping is None or self._jobs is None:
            return None
        if self._jobs.run.exp is exp:
            self._jobs.finish_run()
        return exp.mapping

    def _may_send_early(self) -> bool:
        """Rule 5: replies in the buffer may leave before the end of the batch."""
        return self._run.exp is None and not self._sync_slots and not self.engine.pending_sync

    # -- disk jobs (target.diskjobs) ----------------------------------------------

    def _queue_disk(self, request: Request, frame: Frame, mac: bytes, out: ReplyBuffer) -> None:
        """Rules 1 and 6, then the request joins the open disk run."""
        jobs = self._jobs
        assert jobs is not None
        if not jobs.admit(request[0], request[1]):
            return
        if self._run.exp is not None:
            self._finish(out)  # an inline run before it (writes, maybe) is done first
        if not request[5]:
            self._before_write(out)
        jobs.add(request, frame, mac, out)

    def _finish_disk(self) -> None:
        """Hand the open disk run to the disk (the end of a batch, or before the engine)."""
        if self._jobs is not None:
            self._jobs.finish_run()

    # -- uniform batches ---------------------------------------------------------

    def _serve_uniform(self, frames: Sequence[Frame], link: Link, out: ReplyBuffer,
                       table: dict[int, Export]) -> bool:
        """Serve a batch of nothing but READ EXT (or WRITE EXT) for one export, whole.

        False, with nothing done, when the batch is anything else or any frame fails
        a check: the per-frame path then gives each frame its own answer.
        """
        n = len(frames)
        if n > out.slots or LITTLE_ENDIAN is False:
            return False
        sizes = list(map(len, frames))
        if min(sizes) < REQUEST_SIZE:
            return False
        headers = b"".join([frame[:REQUEST_SIZE] for frame in frames])
        exp = table.get(headers[SHELF_OFFSET] << 16 | headers[SHELF_OFFSET + 1] << 8
                        | headers[SLOT_OFFSET])
        if exp is None or exp.masks or exp.reserve:
            return False
        write = headers[CMD_STATUS_OFFSET] == WRITE_EXT
        if not uniform.matches(headers, n, link.mac, exp.shelf, exp.slot, write):
            return False
        lane = uniform.lanes(n)
        lbas = uniform.gather(headers, n, LBA_OFFSET, LBA_BYTES)
        counts = uniform.gather(headers, n, SECTOR_COUNT_OFFSET, 1)
        if not (uniform.all_at_least(counts, 1, lane)
                and uniform.all_at_most(lbas + counts, exp.sectors, lane)):
            return False
        starts = (lbas << 9) + lane.rep(exp.base)
        nbytes = counts << 9
        each_count = headers[SECTOR_COUNT_OFFSET::REQUEST_SIZE]
        total = sum(each_count) << 9
        if write:
            if exp.read_only or not uniform.all_fit(nbytes + lane.rep(ATA_OVERHEAD),
                                                    uniform.from_list(sizes), lane):
                return False
            if not self._write_uniform(exp, frames, each_count, starts, nbytes, total, lane):
                return False
            exp.counters.writes += n  # written; a failed sync below makes them errors too
            exp.counters.bytes_written += total
            if exp.sync and exp.on_disk and self._jobs is not None:
                # rule 4: the replies wait for a sync job, the loop goes on serving
                self._jobs.hold_for_sync(exp, [], HeldReplies(headers, n, link.mac, out))
            else:
                status, error = STATUS_DRDY, 0
                if exp.sync and sync_exports([exp]):
                    status, error = STATUS_FAILED, ERR_ABRT
                    exp.counters.ata_errors += n
                out.send_uniform(uniform.replies(headers, n, link.mac, status, error), n)
        else:
            if exp.on_disk and self.disk is not None and not _cached(exp, starts, nbytes, n):
                return False  # rule 2: frame by frame, where disk jobs are made
            if not exp.address or not uniform.all_at_most(
                    counts, (link.mtu - ATA_OVERHEAD) >> 9, lane):
                return False
            exp.counters.reads += n  # before sending: a refill may take one back
            exp.counters.bytes_read += total
            out.send_uniform(uniform.replies(headers, n, link.mac), n,
                             uniform.to_words(starts + lane.rep(exp.address), n),
                             uniform.to_words(nbytes, n))
        exp.counters.frames_in += n
        exp.counters.frames_out += n
        self.engine.counters.frames_in += n
        return True

    def _write_uniform(self, exp: Export, frames: Sequence[Frame], each_count: bytes,
                       starts: int, nbytes: int, total: int, lane: uniform.Lanes) -> bool:
        """The writes of a uniform batch: adjacent ones in one ``pwritev``, scattered ones
        in one ``pwrite`` each, in arrival order. False, with the batch to be served
        frame by frame, where rule 2 wants disk jobs or a write fails: the writes
        already done are then done again, in the same order with the same bytes, so the
        file ends as if each was done once, and each frame gets its own answer."""
        adjacent = uniform.contiguous(starts, nbytes, lane)
        first = starts & LANE_MASK
        if exp.on_disk and self.disk is not None and not (
                self._write_inline(exp, first, first + total, held=True) if adjacent
                else self._scatter_inline(exp, starts, nbytes, lane)):
            return False  # rule 2: frame by frame, where disk jobs are made
        data = [frame[ATA_OVERHEAD:ATA_OVERHEAD + (count << 9)]
                for frame, count in zip(frames, each_count, strict=True)]
        if not adjacent:
            return _write_each(exp.fd, data, uniform.to_words(starts, lane.n))
        try:
            return os.pwritev(exp.fd, data, first) == total
        except OSError:
            return False

    # -- slow path, flushing --------------------------------------------------

    def _slow(self, frame: Frame, link: Link, out: ReplyBuffer) -> None:
        """Finish the open runs, then let the engine handle ``frame`` as ``handle_batch`` does."""
        self._finish(out)
        self._finish_disk()
        self._before_write(out)  # the engine may write
        replies: list[bytes | bytearray] = []
        try:
            self.engine.handle(frame, link, replies)
        except Exception:
            self.engine.counters.internal_errors += 1
            LOG.exception("internal error handling a frame of %d bytes on %s",
                          len(frame), link.ifname)
        for reply in replies:
            if len(out.lengths) == out.slots:
                self._flush(out)
            out.put(reply)

    def _flush(self, out: ReplyBuffer) -> None:
        """Commit pending sync writes, then send every reply in ``out``."""
        if self._sync_slots:
            self._commit(out)
        if self.engine.pending_sync:
            self._commit_engine(out)
        out.flush()
        self._attached = False

    def _commit_engine(self, out: ReplyBuffer) -> None:
        """The replies the engine holds for a sync (sync writes and FLUSHes it took):
        on a disk through a sync job, else synced here and put in ``out``."""
        held = self.engine.take_sync_replies()
        inline = [(exp, reply) for exp, reply in held
                  if not (exp.on_disk and self._jobs is not None)]
        broken = sync_exports(exp for exp, _reply in inline)
        for exp, reply in held:
            if exp.on_disk and self._jobs is not None:
                self._jobs.hold_reply(exp, reply, out)
                continue
            if exp in broken:
                exp.counters.ata_errors += 1
                reply = as_failed(reply)
            if len(out.lengths) == out.slots:
                out.flush()
            out.put(reply)

    def _refill(self, out: ReplyBuffer, table: dict[int, Export], index: int,
                nbytes: int) -> None:
        """Reply ``index`` lost its mapped data (EFAULT): read it into the slot instead.

        The mapping fails where the file shrank (zeros, as ``preadv`` past the end
        gives in ``_finish``) or the disk cannot read (an ATA error, as there).
        """
        off = index * out.slot_size
        (_dst, _src, _type, _verfl, _err, shelf, slot, _cmd, _tag, aflags, _e, _count, _status,
         lba_raw) = ATA_FRAME.unpack_from(out.buffer, off)
        exp = table[shelf << 8 | slot]
        lba = int.from_bytes(lba_raw, "little")
        if not aflags & AFLAG_LBA48:
            lba &= LBA28_MASK
        data = out.view[off + ATA_OVERHEAD:off + ATA_OVERHEAD + nbytes]
        try:
            read_fully(exp.fd, [data], exp.base + (lba << 9))
        except OSError as exc:
            LOG.warning("export %s: read at sector %d failed: %s", exp.label, lba, exc)
            exp.counters.ata_errors += 1
            exp.counters.reads -= 1
            exp.counters.bytes_read -= nbytes
            _fail_slot(out, index)
            return
        out.lengths[index] = ATA_OVERHEAD + nbytes

    def _commit(self, out: ReplyBuffer) -> None:
        pending, self._sync_slots = self._sync_slots, []
        broken = sync_exports(exp for exp, _slot in pending)
        if broken:
            for exp, index in pending:
                if exp in broken:
                    exp.counters.ata_errors += 1
                    _fail_slot(out, index)

    # -- merged I/O --------------------------------------------------------------

    def _finish(self, out: ReplyBuffer) -> None:
        """Do the I/O of the open run: one vectored call, or frame by frame if it fails."""
        run = self._run
        exp = run.exp
        if exp is None:
            return
        run.exp = None
        count, total = len(run.slots), run.end - run.pos
        if not count:
            return
        counters = exp.counters
        counters.frames_in += count
        counters.frames_out += count
        self.engine.counters.frames_in += count
        try:
            if run.is_read:
                read_fully(exp.fd, run.buffers, run.pos)
            elif os.pwritev(exp.fd, run.buffers, run.pos) < total:
                raise OSError("short write")
        except OSError:
            self._finish_each(exp, run, out)
        else:
            if run.is_read:
                counters.reads += count
                counters.bytes_read += total
            else:
                counters.writes += count
                counters.bytes_written += total
                if exp.sync:
                    self._sync_slots.extend((exp, index) for index in run.slots)
        finally:
            run.buffers.clear()
            run.slots.clear()

    def _finish_each(self, exp: Export, run: _Run, out: ReplyBuffer) -> None:
        """The frames of a failed run one by one, so each gets its own answer."""
        pos = run.pos
        counters = exp.counters
        for data, index in zip(run.buffers, run.slots, strict=True):
            nbytes = len(data)
            try:
                if run.is_read:
                    read_fully(exp.fd, [data], pos)
                else:
                    os.pwrite(exp.fd, data, pos)
            except OSError as exc:
                what = "read" if run.is_read else "write"
                LOG.warning("export %s: %s at sector %d failed: %s", exp.label, what,
                            (pos - exp.base) >> 9, exc)
                counters.ata_errors += 1
                _fail_slot(out, index)
            else:
                if run.is_read:
                    counters.reads += 1
                    counters.bytes_read += nbytes
                else:
                    counters.writes += 1
                    counters.bytes_written += nbytes
                    if exp.sync:
                        self._sync_slots.append((exp, index))
            pos += nbytes


def _worth_whole(n: int, table: dict[int, Export]) -> bool:
    """Whether a batch of ``n`` frames for the exports of ``table`` is tried whole."""
    return n >= UNIFORM_MIN or (n >= UNIFORM_MIN_DISK
                                and any(exp.on_disk for exp in table.values()))


def _cached(exp: Export, starts: int, nbytes: int, n: int) -> bool:
    """Rule 2 for a whole uniform batch of reads: no disk write in flight on the export
    and every page from the lowest start to the highest end in the page cache (one
    ``mincore``; a batch spread wider than that check covers is served frame by frame)."""
    if exp.order.writes or exp.mapping is None:
        return False
    lows = array.array("Q", uniform.to_words(starts, n))
    highs = array.array("Q", uniform.to_words(starts + nbytes, n))
    if not LITTLE_ENDIAN:
        lows.byteswap()
        highs.byteswap()
    low, high = min(lows), max(highs)
    if not exp.mapping.resident(low, high - low):
        return False
    exp.read_end = high
    return True


def _write_each(fd: int, data: list[Frame], positions: bytes) -> bool:
    """Write ``data[i]`` at ``positions[i]`` (native 64-bit words), in order; False on
    the first write that fails or falls short."""
    try:
        for chunk, pos in zip(data, memoryview(positions).cast("Q"), strict=True):
            if os.pwrite(fd, chunk, pos) < len(chunk):
                return False
    except OSError:
        return False
    return True


def _fail_slot(out: ReplyBuffer, index: int) -> None:
    """Turn the reply in slot ``index`` into ATA status ERR, error ABRT, no data."""
    off = index * out.slot_size
    out.buffer[off + ERR_FEATURE_OFFSET] = ERR_ABRT
    out.buffer[off + CMD_STATUS_OFFSET] = STATUS_FAILED
    out.lengths[index] = ATA_OVERHEAD
