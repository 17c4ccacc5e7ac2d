"""A one-byte frame filter, run by the kernel as classic BPF and again in Python.

Attached to a socket, the program keeps unwanted frames from ever waking the
process; ``wants`` is the same test for the frames that were queued before the
program was attached, and for links that have no kernel (the tests' in-memory pair).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOCK_FILTER = struct.Struct("HBBI")  # code, jt, jf, k
# classic BPF opcodes: load the byte at k, jump on (A & k) != 0, return k
BPF_LDB_ABS, BPF_JSET_K, BPF_RET_K = 0x30, 0x45, 0x06
ACCEPT_WHOLE_FRAME = 0x40000  # a return value: bytes of the frame to keep (all of it)


@dataclass(frozen=True)
class ByteFilter:
    """Keep frames of at least ``min_length`` bytes whose byte at ``offset`` has the
    flag ``bit`` (a power of two) set (``set``) or clear (not ``set``)."""

    offset: int
    bit: int
    set: bool
    min_length: int

    def __post_init__(self) -> None:
        if self.bit <= 0 or self.bit > 0x80 or self.bit & (self.bit - 1):
            raise ValueError(f"a ByteFilter tests one bit of a byte, not 0x{self.bit:x}")

    @property
    def want(self) -> int:
        """``frame[offset] & bit`` of a wanted frame."""
        return self.bit if self.set else 0

    def wants(self, frame: bytes | bytearray | memoryview) -> bool:
        return len(frame) >= self.min_length and frame[self.offset] & self.bit == self.want

    def program(self) -> bytes:
        """ldb [offset]; jset #bit; then drop or accept. A frame too short for the load
        is dropped by the kernel; ``min_length`` beyond that is checked by ``wants`` only."""
        jt, jf = (1, 0) if self.set else (0, 1)
        insns = [(BPF_LDB_ABS, 0, 0, self.offset), (BPF_JSET_K, jt, jf, self.bit),
                 (BPF_RET_K, 0, 0, 0), (BPF_RET_K, 0, 0, ACCEPT_WHOLE_FRAME)]
        return b"".join(SOCK_FILTER.pack(*insn) for insn in insns)
