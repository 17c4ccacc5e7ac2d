"""A read-only shared mapping of an export's backing store, for zero-copy reads.

Read replies point ``sendmmsg`` straight at the mapping (``ReplyBuffer.attach``):
the data goes from the page cache into the outgoing frame with one copy, where
``pread`` + ``send`` make two and cost a system call per frame. Our code never
loads from the mapping itself; only the kernel does, inside ``sendmmsg``, so a
file that shrank under us or a disk that fails to read gives EFAULT for that reply
(handled by reading it the ordinary way), not SIGBUS. The mapping shares the page
cache with our own ``pwrite`` calls, so it always shows what was written.

Mapped pages count in the process's RSS while they stay in the page cache; they
are clean file pages the kernel reclaims like any other cache.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os

LOG = logging.getLogger(__name__)

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
MAP_FAILED = ctypes.c_void_p(-1).value
PAGE = mmap.PAGESIZE
# pages one ``resident`` call looks at, at most: a uniform batch's span at MTU 9000
# is 64 frames of 8.5 KiB (136 pages); wider spans are checked request by request
MAX_RESIDENT_PAGES = 256


class FileMapping:
    """``length`` bytes of ``fd`` from offset 0, mapped PROT_READ/MAP_SHARED at ``address``."""

    def __init__(self, address: int, length: int) -> None:
        self.address = address
        self.length = length
        self._vector = bytearray(MAX_RESIDENT_PAGES)
        self._vector_address = ctypes.addressof(
            (ctypes.c_char * MAX_RESIDENT_PAGES).from_buffer(self._vector))

    def resident(self, offset: int, nbytes: int) -> bool:
        """Every page of bytes [offset, offset + nbytes) is in the page cache (``mincore``).

        What lets a read be sent from the mapping without a page fault that waits on
        the disk. False (ask the disk) for spans over ``MAX_RESIDENT_PAGES`` pages and
        where the kernel will not tell: since Linux 5.0 ``mincore`` reports the page
        cache of a file only to its owner, a writer or CAP_FOWNER.
        """
        start = (self.address + offset) & -PAGE
        end = self.address + offset + nbytes
        pages = (end - start + PAGE - 1) // PAGE
        if pages > MAX_RESIDENT_PAGES or _LIBC.mincore(start, end - start,
                                                       self._vector_address) != 0:
            return False
        return self._vector.find(0, 0, pages) < 0

    def close(self) -> None:
        if self.address:
            _LIBC.munmap(self.address, self.length)
            self.address = 0


def map_readonly(fd: int, length: int, what: str) -> FileMapping | None:
    """A mapping of the first ``length`` bytes of ``fd``, or None where it cannot be mapped.

    None is not an error: reads then go through ``preadv`` (character devices,
    filesystems without mmap, 32-bit address spaces too small for the disk).
    """
    if length <= 0:
        return None
    address = _LIBC.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, MAP_FAILED):
        err = ctypes.get_errno()
        LOG.info("%s: not mapped (%s); reads copy through preadv", what, os.strerror(err))
        return None
    return FileMapping(address, length)
