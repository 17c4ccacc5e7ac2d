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
MAP_FAILED = ctypes.c_void_p(-1).value


class FileMapping:
    """``length`` bytes of ``fd`` from offset 0, mapped PROT_READ/MAP_SHARED at ``address``."""

    def __init__(self, address: int, length: int) -> None:
        self.address = address
        self.length = length

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
