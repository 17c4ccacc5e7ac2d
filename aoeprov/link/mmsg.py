"""Batched receive and send with ``recvmmsg``/``sendmmsg``, through ctypes.

Python's socket module has neither call; through ctypes one call moves a whole
window of frames. Every buffer is allocated once: frames arrive in fixed slots
of one receive buffer, replies are built in place in fixed slots of one send
buffer, and the iovec/mmsghdr arrays pointing at the slots (``Messages``) change
only in the reply lengths and, for data sent from a file mapping (``attach``,
``send_uniform``), a second iovec per reply.
"""

from __future__ import annotations

import array
import ctypes
import os
import socket
import struct
from collections.abc import Callable, Sequence
from errno import EAGAIN, EFAULT, EINTR

from aoeprov.link.batch import WAIT_LIMIT, ReplyBuffer


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


# ``Messages`` reads and writes the arrays through views of 64-bit words (32-bit
# for msg_len), so one strided slice assignment sets a field of every message in C.
# Where a field is, in words, from the structures' own offsets:
WORD, UINT = 8, 4
IOVEC_WORDS = ctypes.sizeof(IoVec) // WORD
IOV_BASE_WORD = IoVec.iov_base.offset // WORD
IOV_LEN_WORD = IoVec.iov_len.offset // WORD
MMSG_WORDS = ctypes.sizeof(MMsgHdr) // WORD
MSG_IOVLEN_WORD = (MMsgHdr.msg_hdr.offset + MsgHdr.msg_iovlen.offset) // WORD
MMSG_UINTS = ctypes.sizeof(MMsgHdr) // UINT
MSG_LEN_UINT = MMsgHdr.msg_len.offset // UINT
# a message's iovecs: its slot, then (replies only) attached data
SLOT_IOV, DATA_IOV = 0, 1
MSG_WAITFORONE = 0x10000
TIMEVAL = struct.Struct("@ll")


def _load_mmsg() -> tuple[Callable[..., int], Callable[..., int]] | None:
    if ctypes.sizeof(ctypes.c_void_p) != WORD or ctypes.sizeof(ctypes.c_size_t) != WORD:
        return None  # the word views assume a 64-bit ABI
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                         ctypes.c_void_p]
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recvmmsg.restype = sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_MMSG = _load_mmsg()


def mmsg_available() -> bool:
    return _MMSG is not None


class Messages:
    """``count`` mmsghdrs over the fixed slots of ``buffer``, and their iovecs.

    Message i has ``iovecs`` iovecs: ``SLOT_IOV`` covers slot i of the buffer,
    ``DATA_IOV`` (when ``iovecs`` is 2) is free for memory elsewhere (``attach``).
    ``msg_iovlen`` says how many are sent; it starts at 1.
    """

    def __init__(self, buffer: bytearray, count: int, slot_size: int, iovecs: int = 1) -> None:
        base = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
        self._iovs = (IoVec * (count * iovecs))()
        self._hdrs = (MMsgHdr * count)()
        iovs_at = ctypes.addressof(self._iovs)
        for i in range(count):
            first = i * iovecs
            self._iovs[first].iov_base = base + i * slot_size
            self._iovs[first].iov_len = slot_size
            self._hdrs[i].msg_hdr.msg_iov = iovs_at + first * ctypes.sizeof(IoVec)
            self._hdrs[i].msg_hdr.msg_iovlen = 1
        self.address = ctypes.addressof(self._hdrs)
        self.count = count
        self._iov_words = memoryview(self._iovs).cast("B").cast("Q")
        self._hdr_words = memoryview(self._hdrs).cast("B").cast("Q")
        self._hdr_uints = memoryview(self._hdrs).cast("B").cast("I")
        self._per_message = iovecs * IOVEC_WORDS  # iovec words of one message

    def at(self, index: int) -> int:
        """The address of message ``index`` (where a system call over the rest starts)."""
        return self.address + index * ctypes.sizeof(MMsgHdr)

    def _iov_word(self, index: int, iov: int, field: int) -> int:
        return index * self._per_message + iov * IOVEC_WORDS + field

    def _every_iov(self, iov: int, field: int, count: int) -> slice:
        """The words of ``field`` of iovec ``iov`` in messages 0..count-1."""
        return slice(iov * IOVEC_WORDS + field, count * self._per_message, self._per_message)

    def _every_iovlen(self, count: int) -> slice:
        return slice(MSG_IOVLEN_WORD, count * MMSG_WORDS, MMSG_WORDS)

    # -- one message -------------------------------------------------------------

    def set_slot_length(self, index: int, nbytes: int) -> None:
        self._iov_words[self._iov_word(index, SLOT_IOV, IOV_LEN_WORD)] = nbytes

    def attach(self, index: int, address: int, nbytes: int) -> None:
        """Send ``nbytes`` at ``address`` after message ``index``'s slot bytes."""
        words = self._iov_words
        words[self._iov_word(index, DATA_IOV, IOV_BASE_WORD)] = address
        words[self._iov_word(index, DATA_IOV, IOV_LEN_WORD)] = nbytes
        self._hdr_words[index * MMSG_WORDS + MSG_IOVLEN_WORD] = 2

    def attached(self, index: int) -> int:
        """Bytes attached to message ``index`` (0: none)."""
        if self._hdr_words[index * MMSG_WORDS + MSG_IOVLEN_WORD] == 1:
            return 0
        return int(self._iov_words[self._iov_word(index, DATA_IOV, IOV_LEN_WORD)])

    def detach(self, index: int) -> None:
        self._hdr_words[index * MMSG_WORDS + MSG_IOVLEN_WORD] = 1

    # -- messages 0..count-1 at once ----------------------------------------------

    def set_slot_lengths(self, lengths: Sequence[int]) -> None:
        self._iov_words[self._every_iov(SLOT_IOV, IOV_LEN_WORD, len(lengths))] = (
            array.array("Q", lengths))

    def attach_each(self, count: int, addresses: bytes, sizes: bytes) -> None:
        """Attach ``sizes[i]`` bytes at ``addresses[i]`` (native 64-bit words) to message i."""
        words = self._iov_words
        words[self._every_iov(DATA_IOV, IOV_BASE_WORD, count)] = memoryview(addresses).cast("Q")
        words[self._every_iov(DATA_IOV, IOV_LEN_WORD, count)] = memoryview(sizes).cast("Q")
        self._hdr_words[self._every_iovlen(count)] = array.array("Q", [2]) * count

    def detach_each(self, count: int) -> None:
        self._hdr_words[self._every_iovlen(count)] = array.array("Q", [1]) * count

    def received_lengths(self, count: int) -> list[int]:
        """msg_len of messages 0..count-1: the bytes recvmmsg put in each slot."""
        return self._hdr_uints[MSG_LEN_UINT:count * MMSG_UINTS:MMSG_UINTS].tolist()


class BadAddress(OSError):
    """sendmmsg could not read the memory attached to reply ``index`` (EFAULT).

    Attached memory is a shared mapping of a file: a file that shrank under it, or a
    disk that failed to read, shows up here, never as SIGBUS (the kernel's copy
    fails, not our process's load).
    """

    def __init__(self, index: int) -> None:
        super().__init__(EFAULT, f"reply {index}: attached data unreadable")
        self.index = index


class MmsgReplyBuffer(ReplyBuffer):
    """A ``ReplyBuffer`` sent with ``sendmmsg``: one system call per flush, zero-copy attach."""

    zero_copy = True

    def __init__(self, sock: socket.socket, slots: int, slot_size: int) -> None:
        super().__init__(slots, slot_size, sock.send)
        assert _MMSG is not None
        self._sendmmsg = _MMSG[1]
        self._fd = sock.fileno()
        self._messages = Messages(self.buffer, slots, slot_size, iovecs=2)
        self._attached: list[int] = []  # replies with data attached
        # send_uniform's own buffer and messages (message i = header i), made on first use
        self._uniform: tuple[int, bytearray, Messages] | None = None

    def _uniform_messages(self, header_size: int) -> tuple[bytearray, Messages]:
        if self._uniform is None or self._uniform[0] != header_size:
            headers = bytearray(self.slots * header_size)
            self._uniform = (header_size, headers,
                             Messages(headers, self.slots, header_size, iovecs=2))
        return self._uniform[1], self._uniform[2]

    def send_uniform(self, headers: bytes, count: int, addresses: bytes | None = None,
                     sizes: bytes | None = None) -> None:
        """Send ``count`` replies: header i of ``headers`` (``count`` equal parts), then
        (when given) ``sizes[i]`` bytes of mapped memory at ``addresses[i]`` (native
        64-bit words).

        For whole uniform batches (``targetd.uniform``): no slot is touched, every
        reply leaves in one ``sendmmsg``; a fault on reply i goes through ``refill``
        in slot 0, that reply alone is sent from there, and the rest follow.
        """
        if self.lengths or count > self.slots:
            raise ValueError("send_uniform needs an empty buffer and at most one slot per reply")
        if count == 0:
            return
        header_size, odd = divmod(len(headers), count)
        if odd or header_size > self.slot_size:
            raise ValueError(f"{len(headers)} bytes are not {count} headers of one size")
        buffer, messages = self._uniform_messages(header_size)
        buffer[:len(headers)] = headers
        if addresses is None or sizes is None:
            messages.detach_each(count)
        else:
            messages.attach_each(count, addresses, sizes)

        def alone(index: int, refill: Callable[[int, int], None]) -> int:
            """Reply ``index`` through slot 0, refilled; go on after it."""
            self.view[:header_size] = headers[index * header_size:(index + 1) * header_size]
            self.lengths.append(header_size)
            try:
                refill(0, messages.attached(index))
                self._send_one(self.view[:self.lengths[0]])
            finally:
                self.lengths.clear()
            return index + 1

        self._send_messages(messages, count, alone)

    def attach(self, address: int, nbytes: int) -> None:
        index = len(self.lengths) - 1
        self._messages.attach(index, address, nbytes)
        self._attached.append(index)

    def attached(self, index: int) -> int:
        return self._messages.attached(index)

    def detach(self, index: int) -> None:
        self._messages.detach(index)

    def _reset(self) -> None:
        for index in self._attached:
            self._messages.detach(index)
        self._attached.clear()
        self.lengths.clear()

    def _send_slots(self, lengths: list[int]) -> None:
        count = len(lengths)
        if count == 1 and not self._attached:  # a plain send costs less than the ctypes call
            self._send_one(self.view[:lengths[0]])
            return
        messages = self._messages
        messages.set_slot_lengths(lengths)

        def in_place(index: int, refill: Callable[[int, int], None]) -> int:
            """Reply ``index`` refilled in its own slot; send again from it."""
            nbytes = messages.attached(index)
            messages.detach(index)
            refill(index, nbytes)
            messages.set_slot_length(index, lengths[index])
            return index

        self._send_messages(messages, count, in_place)

    def _send_messages(self, messages: Messages, count: int,
                       on_fault: Callable[[int, Callable[[int, int], None]], int]) -> None:
        """``sendmmsg`` messages 0..count-1 of ``messages``.

        When message i's attached memory is unreadable (EFAULT), ``on_fault(i, refill)``
        repairs it and returns the message to go on from; without ``refill``,
        ``BadAddress(i)``.
        """
        done = 0
        while done < count:
            sent = self._sendmmsg(self._fd, messages.at(done), count - done, 0)
            if sent >= 0:
                done += sent
                continue
            errno = ctypes.get_errno()
            if errno == EINTR:
                continue
            if errno != EFAULT:
                raise OSError(errno, os.strerror(errno))
            if self.refill is None:
                raise BadAddress(done)
            done = on_fault(done, self.refill)


class MmsgReceiver:
    """``recvmmsg`` into fixed slots; frames come back as memoryviews of the slots.

    The views stay valid until the next ``recv``: handle (or copy) them first.
    """

    def __init__(self, sock: socket.socket, slots: int, slot_size: int) -> None:
        assert _MMSG is not None
        self._recvmmsg = _MMSG[0]
        self._fd = sock.fileno()
        self.slots = slots
        self.slot_size = slot_size
        self._buffer = bytearray(slots * slot_size)
        self._view = memoryview(self._buffer)
        self._messages = Messages(self._buffer, slots, slot_size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.pack(WAIT_LIMIT, 0))

    def recv(self, wait: bool = False) -> list[memoryview]:
        """The frames already queued (up to ``slots``); with ``wait``, waits for one first.

        A wait ends early with no frames on a signal, or after ``WAIT_LIMIT``
        seconds (SO_RCVTIMEO), so a caller that blocks here still checks its flags.
        """
        flags = MSG_WAITFORONE if wait else socket.MSG_DONTWAIT
        count = self._recvmmsg(self._fd, self._messages.address, self.slots, flags, None)
        if count <= 0:
            if count < 0:
                errno = ctypes.get_errno()
                if errno not in (EAGAIN, EINTR):
                    raise OSError(errno, os.strerror(errno))
            return []
        size, view = self.slot_size, self._view
        return [view[i * size:i * size + n]
                for i, n in enumerate(self._messages.received_lengths(count))]
