"""Disk I/O off the frame loop: io_uring (or worker threads) makes the calls that wait on a disk.

An export whose backing store lives on a disk (``Export.on_disk``: a block device,
or a file on anything but tmpfs/ramfs, or any ``direct`` export) may make a
``pread`` or a page fault wait milliseconds for the device. The frame loop must
not: it would serve one request per disk latency, where the disk answers many in
parallel (measured here: 20k IOPS at queue depth 1, about 4x that at 16-64). So
the fast path (``target.batch``) serves such exports like this:

- a read whose pages are all in the page cache (``FileMapping.resident``, one
  ``mincore``) keeps the zero-copy path: its reply is sent from the mapping;
- any other read, every write that would wait (a sync export's, one that must read
  a partial page first) and every sync becomes a ``DiskJob``: one read or write over
  the buffers of a run of adjacent requests, or one ``fdatasync``, handed to
  ``io_uring`` (``targetd.uring``) or, where the kernel refuses a ring, to a pool of
  worker threads (they release the GIL inside the system call); the loop is woken
  through the ring's (or an eventfd's) descriptor (``DiskIO.fileno``) and sends the
  replies of the jobs done (``BatchServer.complete``). A random read that missed the
  cache reads through the export's O_DIRECT descriptor (``Export.miss_fd``).

Why io_uring first: the loop pays a few struct operations per job and one system call
per batch, where a thread pool fed from one loop costs thread switches and GIL
hand-overs per job (measured here: 16-64 threads topped out at 6-25k random reads/s).

Job buffers are ``mmap``-allocated, so the data area is page-aligned as O_DIRECT
wants: the 36-byte reply header sits just before it (``HEADER_AT``), and a reply is
one contiguous slice. Jobs for one export that touch the same sectors run in
arrival order (``Ordering``); how many requests one initiator may have in flight
is bounded by the buffer count the export advertises.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import mmap
import os
import queue
import select
import threading
from typing import TYPE_CHECKING, Protocol

from aoeprov.aoe.wire import ATA_OVERHEAD

if TYPE_CHECKING:
    from aoeprov.link.batch import ReplyBuffer
    from aoeprov.targetd.export import Export

LOG = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
HEADER_AT = PAGE - ATA_OVERHEAD    # reply header offset in a job buffer; data at PAGE
# Worker threads (where there is no io_uring): the disk's own curve flattens from
# queue depth 16 on, and more threads fed from one loop measured slower, not faster
# (64 threads: 6-12k random reads/s, 16: 12-25k, on the benchmark's loaded machine).
WORKERS = 16
READ, WRITE, SYNC = 0, 1, 2


class IoBuffer:
    """One request's reply (and, for a write, its data): header at ``HEADER_AT``,
    data page-aligned at ``PAGE``; ``length`` is the reply's size from ``HEADER_AT``."""

    __slots__ = ("_anchor", "address", "capacity", "length", "memory", "nbytes", "out", "src",
                 "view")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.memory = mmap.mmap(-1, PAGE + capacity)
        self.view = memoryview(self.memory)
        self._anchor = ctypes.c_char.from_buffer(self.memory)
        self.address = ctypes.addressof(self._anchor) + PAGE  # of the data (io_uring)
        self.length = ATA_OVERHEAD
        self.nbytes = 0        # data bytes of the request
        self.src = b""         # the initiator (for its in-flight count)
        self.out: ReplyBuffer | None = None  # where the reply goes

    @property
    def data(self) -> memoryview:
        return self.view[PAGE:PAGE + self.nbytes]

    @property
    def reply(self) -> memoryview:
        return self.view[HEADER_AT:HEADER_AT + self.length]


class HeldReplies:
    """A whole uniform batch of writes to a ``sync`` export, written in the loop (into
    the page cache) and waiting for the sync job that makes it stable: its ``count``
    request headers, from which the replies to ``out`` are made once the sync is done
    (``targetd.uniform.replies``, with the sync's status)."""

    __slots__ = ("count", "mac", "out", "requests")

    def __init__(self, requests: bytes, count: int, mac: bytes, out: ReplyBuffer) -> None:
        self.requests = requests
        self.count = count
        self.mac = mac
        self.out = out


class BufferPool:
    """Reused ``IoBuffer``s by capacity (a multiple of the page size)."""

    def __init__(self) -> None:
        self._free: dict[int, list[IoBuffer]] = {}

    def take(self, nbytes: int) -> IoBuffer:
        capacity = max(PAGE, -(-nbytes // PAGE) * PAGE)
        free = self._free.get(capacity)
        return free.pop() if free else IoBuffer(capacity)

    def give(self, buf: IoBuffer) -> None:
        self._free.setdefault(buf.capacity, []).append(buf)


class DiskJob:
    """One vectored read or write over adjacent requests of one export, or one sync.

    ``pos``/``end`` are byte offsets in the backing store; ``error`` is set by the
    worker when the call fails. ``blocked`` counts earlier jobs this one waits for
    (``Ordering``); ``waiters`` are the later ones waiting for it.
    """

    __slots__ = ("blocked", "bufs", "children", "direct", "end", "error", "exp", "fd", "held",
                 "kind", "parent", "pos", "seq", "waiters")

    def __init__(self, kind: int, exp: Export, pos: int, end: int,
                 bufs: list[IoBuffer]) -> None:
        self.kind = kind
        self.exp = exp
        self.pos = pos
        self.end = end
        self.bufs = bufs
        self.held: list[HeldReplies] = []   # a sync job's replies of inline batches
        # the export's descriptor, or its O_DIRECT one for a read that missed the cache
        self.fd = exp.fd if exp is not None else -1
        self.direct = exp.direct if exp is not None else False
        self.error: OSError | None = None
        self.blocked = 0
        self.seq = 0    # arrival number among the export's jobs (``Ordering.add``)
        self.waiters: list[DiskJob] = []
        # a failed run is done again request by request: its parts, and their whole
        self.parent: DiskJob | None = None
        self.children = 0

    def bypass_cache(self) -> None:
        """Read with the export's O_DIRECT descriptor (``Export.miss_fd``)."""
        self.fd, self.direct = self.exp.miss_fd, True

    def run(self) -> None:
        """The system call (in a worker thread)."""
        try:
            if self.kind == READ:
                read_fully(self.fd, [b.data for b in self.bufs], self.pos)
            elif self.kind == WRITE:
                data = [b.data for b in self.bufs]
                done = os.pwritev(self.fd, data, self.pos)
                if done < self.end - self.pos:
                    raise OSError(f"short write: {done} of {self.end - self.pos} bytes")
            else:
                os.fdatasync(self.fd)
        except OSError as exc:
            self.error = exc


def wait_readable(fd: int, timeout: float | None) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(None if timeout is None else int(timeout * 1000))


def read_fully(fd: int, buffers: list[memoryview], pos: int) -> None:
    """``preadv`` into ``buffers``; what lies past the end of a file that shrank reads as zeros."""
    done = os.preadv(fd, buffers, pos)
    for data in buffers:
        size = len(data)
        if done < size:
            data[max(done, 0):] = bytes(size - max(done, 0))
        done -= size


class Ordering:
    """Which disk jobs of one export a new one must wait for: arrival order wherever
    they touch the same bytes and one of them writes (a read never sees data older
    than a write that came before it, nor newer than one that came after it)."""

    __slots__ = ("arrived", "jobs", "writes")

    def __init__(self) -> None:
        self.jobs: list[DiskJob] = []     # in flight or waiting, in arrival order
        self.writes: list[DiskJob] = []   # the writes among them
        self.arrived = 0                  # jobs entered so far (the next one's ``seq``)

    def newest_write(self) -> int:
        """``seq`` of the latest write in flight or waiting (-1: none)."""
        return self.writes[-1].seq if self.writes else -1

    def writes_up_to(self, seq: int) -> bool:
        """A write that arrived no later than job ``seq`` is still in flight or waiting."""
        return bool(self.writes) and self.writes[0].seq <= seq

    def write_overlaps(self, pos: int, end: int) -> bool:
        """A write in flight touches [pos, end): a read of it must queue behind."""
        return any(j.pos < end and pos < j.end for j in self.writes)

    def overlaps(self, pos: int, end: int) -> bool:
        """Any job in flight touches [pos, end): a write of it must queue behind."""
        return any(j.pos < end and pos < j.end for j in self.jobs)

    def add(self, job: DiskJob) -> None:
        """Enter ``job``; it waits for every earlier conflicting one."""
        job.seq = self.arrived
        self.arrived += 1
        earlier = self.jobs if job.kind == WRITE else self.writes
        for other in earlier:
            if other.pos < job.end and job.pos < other.end:
                other.waiters.append(job)
                job.blocked += 1
        self.jobs.append(job)
        if job.kind == WRITE:
            self.writes.append(job)

    def remove(self, job: DiskJob) -> list[DiskJob]:
        """``job`` is done: the jobs that no longer wait for anything."""
        self.jobs.remove(job)
        if job.kind == WRITE:
            self.writes.remove(job)
        ready = []
        for waiter in job.waiters:
            waiter.blocked -= 1
            if not waiter.blocked:
                ready.append(waiter)
        job.waiters.clear()
        return ready


class DiskIO(Protocol):
    """Runs ``DiskJob``s: ``submit`` queues one, ``push`` starts what was queued, and once
    ``fileno()`` polls readable ``finished`` gives back the jobs done."""

    in_flight: int  # submitted and not yet given back by ``finished``

    def fileno(self) -> int: ...

    def submit(self, job: DiskJob) -> None: ...

    def push(self) -> None: ...

    def finished(self) -> list[DiskJob]: ...

    def wait(self, timeout: float | None = None) -> None: ...

    def close(self) -> None: ...


def open_disk_io() -> DiskIO:
    """io_uring where the kernel and the machine allow it, else worker threads."""
    from aoeprov.targetd import uring

    if uring.available():
        try:
            return uring.UringIO()
        except OSError as exc:
            LOG.info("no io_uring (%s): disk I/O in %d worker threads", exc, WORKERS)
    return ThreadedIO()


class ThreadedIO:
    """``DiskIO`` by a pool of worker threads; an eventfd says when jobs are done."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = workers
        self._jobs: queue.SimpleQueue[DiskJob | None] = queue.SimpleQueue()
        self._done: collections.deque[DiskJob] = collections.deque()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._threads: list[threading.Thread] = []
        self.in_flight = 0   # submitted and not yet taken back by ``finished``

    def fileno(self) -> int:
        return self._efd

    def submit(self, job: DiskJob) -> None:
        if len(self._threads) < self.workers and len(self._threads) < self.in_flight + 1:
            thread = threading.Thread(target=self._work, name=f"disk-{len(self._threads)}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        self.in_flight += 1
        self._jobs.put(job)

    def push(self) -> None:
        """Nothing to do: a worker takes a job as soon as it is submitted."""

    def _work(self) -> None:
        jobs, done, efd = self._jobs, self._done, self._efd
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job.run()
            except Exception as exc:  # a bug: the job fails, the worker lives on
                LOG.exception("disk job failed")
                job.error = OSError(str(exc))
            done.append(job)
            os.eventfd_write(efd, 1)

    def finished(self) -> list[DiskJob]:
        """Jobs done since the last call (never blocks)."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._efd)
        out = []
        done = self._done
        while done:
            out.append(done.popleft())
        self.in_flight -= len(out)
        return out

    def wait(self, timeout: float | None = None) -> None:
        """Block until a job finishes (or ``timeout``)."""
        wait_readable(self._efd, timeout)

    def close(self) -> None:
        for _thread in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        os.close(self._efd)
