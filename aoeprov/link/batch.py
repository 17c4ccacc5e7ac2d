"""Batched receive and send: a window of frames at a time, in fixed slots.

``BatchReceiver`` hands out what is queued; ``ReplyBuffer`` holds frames built in
place and sends them together. The classes here work frame by frame over any
``Transport``; ``mmsg`` has the ones that move a whole window per system call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from aoeprov.link.transport import Transport

WAIT_LIMIT = 1  # seconds a blocking batch receive waits at most


class BatchReceiver(Protocol):
    slots: int

    def recv(self, wait: bool = False) -> Sequence[bytes | memoryview]: ...


class TransportReceiver:
    """``MmsgReceiver``'s interface over any transport's ``recv_batch``."""

    def __init__(self, transport: Transport, slots: int) -> None:
        self.transport = transport
        self.slots = slots

    def recv(self, wait: bool = False) -> list[bytes]:
        return self.transport.recv_batch(self.slots, WAIT_LIMIT if wait else 0)


class ReplyBuffer:
    """Fixed slots where replies are built in place, sent together by ``flush``.

    Writers put reply ``i`` at ``view[i * slot_size:]`` and append its length to
    ``lengths``; ``flush`` sends slots ``0..len(lengths)-1`` in order and empties
    the list. This base class sends them one by one through ``send``.

    Where ``zero_copy`` is true, ``attach`` adds bytes of a shared file mapping to
    the last reply without copying them; a reply whose attached memory cannot be
    read is detached and handed to ``refill(index, nbytes)``, which must put those
    bytes in the slot itself (and the reply's new length in ``lengths``); without
    ``refill`` ``flush`` raises ``BadAddress``.
    """

    zero_copy = False

    def __init__(self, slots: int, slot_size: int,
                 send: Callable[[bytes | bytearray | memoryview], object] | None = None,
                 ) -> None:
        self.slots = slots
        self.slot_size = slot_size
        self.buffer = bytearray(slots * slot_size)
        self.view = memoryview(self.buffer)
        self.lengths: list[int] = []
        self.refill: Callable[[int, int], None] | None = None
        self._send = send

    def put(self, frame: bytes | bytearray | memoryview) -> None:
        """Append a reply built elsewhere (copied into the next slot)."""
        if len(self.lengths) == self.slots:
            self.flush()
        size = len(frame)
        if size > self.slot_size:
            # larger than any frame the link carries today: send it on its own
            self.flush()
            self._send_one(frame)
            return
        off = len(self.lengths) * self.slot_size
        self.view[off:off + size] = frame
        self.lengths.append(size)

    def attach(self, address: int, nbytes: int) -> None:
        """Send ``nbytes`` at ``address`` after the last reply's slot bytes (``zero_copy`` only)."""
        raise OSError(f"{type(self).__name__} cannot send memory it does not own")

    def attached(self, index: int) -> int:
        """How many attached bytes reply ``index`` carries."""
        return 0

    def send_uniform(self, headers: bytes, count: int, addresses: bytes | None = None,
                     sizes: bytes | None = None) -> None:
        """Send ``count`` equal-sized headers, each with or without mapped data
        (``zero_copy`` only; see ``MmsgReplyBuffer.send_uniform``)."""
        raise OSError(f"{type(self).__name__} cannot send memory it does not own")

    def detach(self, index: int) -> None:
        """Drop what is attached to reply ``index``."""

    def flush(self) -> None:
        # ``lengths`` is emptied in place: writers may hold on to the list
        if self.lengths:
            try:
                self._send_slots(self.lengths)
            finally:
                self._reset()

    def _reset(self) -> None:
        self.lengths.clear()

    def _send_slots(self, lengths: list[int]) -> None:
        size, view = self.slot_size, self.view
        for i, length in enumerate(lengths):
            self._send_one(view[i * size:i * size + length])

    def _send_one(self, frame: bytes | bytearray | memoryview) -> None:
        if self._send is None:
            raise OSError("this reply buffer has no way to send")
        self._send(frame)
