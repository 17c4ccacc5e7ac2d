"""``io_uring`` through ctypes: the disk jobs of ``target.diskio`` without threads.

One ring per target process. ``submit`` writes a job's submission entry (a READ or
WRITE of one buffer, READV/WRITEV of a run, or an FSYNC with the datasync flag)
into the shared submission queue; ``push`` hands every entry written since the last
call to the kernel with one ``io_uring_enter``; ``finished`` reads the completion
queue (the ring's file descriptor polls readable while it holds entries). The frame
loop thus pays a few struct operations per request and one system call per batch,
where worker threads cost two thread switches and a GIL hand-over per request:
measured on the benchmark's machine, a pool of 16-64 threads fed from the loop
topped out at 6-25k random reads/s, below what vblade gets from the disk alone.

A read shorter than asked with bytes left is asked again for the rest; one that
reads nothing has reached the end of a file that shrank, and the rest reads as zeros
(as ``read_fully``). A write that writes nothing is an error.

Only on x86-64: the ring's head and tail are plain loads and stores here, which is
enough under x86's ordering of memory accesses; elsewhere (and wherever
``io_uring_setup`` is refused: old kernels, ``kernel.io_uring_disabled``, container
seccomp profiles) the target uses ``diskio.ThreadedIO``.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import platform
import struct

from aoeprov.targetd.diskio import READ, WRITE, DiskJob, wait_readable

LOG = logging.getLogger(__name__)

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long
SYS_IO_URING_SETUP, SYS_IO_URING_ENTER = 425, 426  # the same number on every architecture
OFF_SQ_RING, OFF_CQ_RING, OFF_SQES = 0, 0x8000000, 0x10000000
FEAT_SINGLE_MMAP = 1
OP_READV, OP_WRITEV, OP_FSYNC, OP_READ, OP_WRITE = 1, 2, 3, 22, 23
FSYNC_DATASYNC = 1
# io_uring_params: 10 u32, then the SQ offsets (8 u32 + u64) and the CQ offsets (same)
PARAMS = struct.Struct("<10I8IQ8IQ")
SQE = struct.Struct("<BBHiQQIIQHHiQQ")   # 64 bytes
CQE = struct.Struct("<QiI")              # 16 bytes
ENTRIES = 256
SYS_IO_URING_REGISTER = 427
REGISTER_IOWQ_MAX_WORKERS = 19
# io-wq's own limit on workers for regular file I/O is 4 per CPU (8 on the
# benchmark's machine), which would cap the disk's queue depth there: raise it to
# the kernel initiator's deepest window
MAX_WORKERS = 64
# Buffered I/O goes straight to the kernel's io-wq workers (IOSQE_ASYNC): tried
# inline first, a read that misses the page cache starts its readahead inside our
# io_uring_enter, in the frame loop, one request after the other (measured, 4 KiB
# random reads at queue depth 64 on the benchmark's disk: median 13k/s inline,
# 27k/s with IOSQE_ASYNC, 22k/s with 16 threads). O_DIRECT is issued inline: it
# never waits in the submission.
IOSQE_ASYNC = 1 << 4
MASK32 = 0xFFFFFFFF


def available() -> bool:
    return platform.machine() in ("x86_64", "AMD64")


class UringIO:
    """The ``DiskIO`` interface (``submit``/``push``/``finished``/``fileno``/``wait``)
    over one io_uring. Raises ``OSError`` where the kernel refuses a ring."""

    def __init__(self, entries: int = ENTRIES) -> None:
        params = ctypes.create_string_buffer(PARAMS.size)
        fd = _LIBC.syscall(ctypes.c_long(SYS_IO_URING_SETUP), ctypes.c_long(entries), params)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"io_uring_setup: {os.strerror(err)}")
        self._fd = int(fd)
        fields = PARAMS.unpack(params.raw)
        sq_entries, cq_entries, features = fields[0], fields[1], fields[5]
        (sq_head, sq_tail, sq_mask, _sq_n, _sq_flags, _dropped, sq_array) = fields[10:17]
        (cq_head, cq_tail, cq_mask, _cq_n, _overflow, cqes) = fields[19:25]
        sq_size = sq_array + sq_entries * 4
        cq_size = cqes + cq_entries * CQE.size
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_POPULATE
        try:
            if features & FEAT_SINGLE_MMAP:
                self._sq_map = mmap.mmap(self._fd, max(sq_size, cq_size), flags, prot,
                                         offset=OFF_SQ_RING)
                self._cq_map = self._sq_map
            else:
                self._sq_map = mmap.mmap(self._fd, sq_size, flags, prot, offset=OFF_SQ_RING)
                self._cq_map = mmap.mmap(self._fd, cq_size, flags, prot, offset=OFF_CQ_RING)
            self._sqes = mmap.mmap(self._fd, sq_entries * SQE.size, flags, prot,
                                   offset=OFF_SQES)
        except OSError:
            os.close(self._fd)
            raise
        limits = (ctypes.c_uint32 * 2)(MAX_WORKERS, 0)  # bounded (files), unbounded: as is
        if _LIBC.syscall(ctypes.c_long(SYS_IO_URING_REGISTER), ctypes.c_long(self._fd),
                         ctypes.c_long(REGISTER_IOWQ_MAX_WORKERS), limits,
                         ctypes.c_long(2)) < 0:
            LOG.info("io_uring: cannot raise the worker limit: %s",
                     os.strerror(ctypes.get_errno()))
        self._sq = memoryview(self._sq_map).cast("I")
        self._cq = memoryview(self._cq_map).cast("I")
        self._sq_head, self._sq_tail = sq_head // 4, sq_tail // 4
        self._sq_array = sq_array // 4
        self._sq_mask = self._sq[sq_mask // 4]
        self._sq_entries = sq_entries
        self._cq_head, self._cq_tail = cq_head // 4, cq_tail // 4
        self._cq_mask = self._cq[cq_mask // 4]
        self._cqes = cqes
        self._jobs: dict[int, tuple[DiskJob, int]] = {}  # user_data -> (job, bytes done)
        self._iovs: dict[int, ctypes.Array[ctypes.c_uint64]] = {}  # alive while in flight
        self._next = 0
        self._unsubmitted = 0
        self.in_flight = 0

    def fileno(self) -> int:
        return self._fd

    @property
    def unsubmitted(self) -> int:
        """Entries written but not yet handed to the kernel (``push``)."""
        return self._unsubmitted

    # -- submission ----------------------------------------------------------------

    def submit(self, job: DiskJob) -> None:
        self.in_flight += 1
        self._queue(job, 0)

    def _queue(self, job: DiskJob, done: int) -> None:
        """The entry for what is left of ``job`` after its first ``done`` bytes."""
        self._next = key = (self._next + 1) & 0xFFFFFFFFFFFF
        self._jobs[key] = (job, done)
        fd = job.fd
        flags = 0 if job.direct else IOSQE_ASYNC
        if job.kind not in (READ, WRITE):
            self._sqe(OP_FSYNC, IOSQE_ASYNC, fd, 0, 0, 0, FSYNC_DATASYNC, key)
            return
        pieces = []
        skip = done
        for buf in job.bufs:
            if skip >= buf.nbytes:
                skip -= buf.nbytes
                continue
            pieces.append((buf.address + skip, buf.nbytes - skip))
            skip = 0
        if len(pieces) == 1:
            (address, length), = pieces
            self._sqe(OP_READ if job.kind == READ else OP_WRITE, flags, fd, job.pos + done,
                      address, length, 0, key)
            return
        iov = (ctypes.c_uint64 * (2 * len(pieces)))(*[w for piece in pieces for w in piece])
        self._iovs[key] = iov
        self._sqe(OP_READV if job.kind == READ else OP_WRITEV, flags, fd, job.pos + done,
                  ctypes.addressof(iov), len(pieces), 0, key)

    def _sqe(self, opcode: int, flags: int, fd: int, offset: int, address: int, length: int,
             rw_flags: int, key: int) -> None:
        sq = self._sq
        tail = sq[self._sq_tail]
        if (tail - sq[self._sq_head]) & MASK32 >= self._sq_entries:
            self.push()  # the submission queue is full: hand it over first
        index = tail & self._sq_mask
        SQE.pack_into(self._sqes, index * SQE.size, opcode, flags, 0, fd, offset, address, length,
                      rw_flags, key, 0, 0, 0, 0, 0)
        sq[self._sq_array + index] = index
        sq[self._sq_tail] = (tail + 1) & MASK32
        self._unsubmitted += 1

    def push(self) -> None:
        """Hand every entry written since the last call to the kernel."""
        while self._unsubmitted:
            done = _LIBC.syscall(ctypes.c_long(SYS_IO_URING_ENTER), ctypes.c_long(self._fd),
                                 ctypes.c_long(self._unsubmitted), ctypes.c_long(0),
                                 ctypes.c_long(0), None, ctypes.c_long(0))
            if done < 0:
                err = ctypes.get_errno()
                if err in (errno.EINTR, errno.EAGAIN, errno.EBUSY):
                    continue  # interrupted, or completions to reap first: try again
                raise OSError(err, f"io_uring_enter: {os.strerror(err)}")
            self._unsubmitted -= done

    # -- completion ----------------------------------------------------------------

    def finished(self) -> list[DiskJob]:
        """Jobs done since the last call (never blocks)."""
        cq = self._cq
        head, tail = cq[self._cq_head], cq[self._cq_tail]
        out = []
        while head != tail:
            key, res, _flags = CQE.unpack_from(self._cq_map,
                                               self._cqes + (head & self._cq_mask) * CQE.size)
            head = (head + 1) & MASK32
            job = self._complete(key, res)
            if job is not None:
                out.append(job)
        cq[self._cq_head] = head
        self.in_flight -= len(out)
        if self._unsubmitted:
            self.push()  # the rests of short transfers
        return out

    def _complete(self, key: int, res: int) -> DiskJob | None:
        """The job of completion ``key`` if it is done (else its rest is queued again)."""
        job, done = self._jobs.pop(key)
        self._iovs.pop(key, None)
        if res < 0:
            job.error = OSError(-res, os.strerror(-res))
            return job
        if job.kind not in (READ, WRITE):
            return job
        done += res
        want = job.end - job.pos
        if done >= want:
            return job
        if res == 0 or (job.direct and job.kind == READ):  # O_DIRECT: short only at the end
            if job.kind == WRITE:
                job.error = OSError(errno.EIO, f"short write: {done} of {want} bytes")
            else:
                _zero_from(job, done)  # the end of a file that shrank
            return job
        self._queue(job, done)
        return None

    def wait(self, timeout: float | None = None) -> None:
        wait_readable(self._fd, timeout)

    def close(self) -> None:
        self._sq.release()
        self._cq.release()
        for mapping in {id(m): m for m in (self._sq_map, self._cq_map, self._sqes)}.values():
            mapping.close()
        os.close(self._fd)


def _zero_from(job: DiskJob, done: int) -> None:
    for buf in job.bufs:
        if done < buf.nbytes:
            data = buf.data
            data[max(done, 0):] = bytes(buf.nbytes - max(done, 0))
        done -= buf.nbytes
