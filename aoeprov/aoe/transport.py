"""Raw AoE frames on one interface, and an in-memory stand-in for unit tests.

``EthernetTransport`` is an AF_PACKET socket bound to one interface and
ethertype 0x88A2. It keeps only the half of the traffic its side cares about:
a target (``responses=False``) drops frames carrying the response flag, a client
(``responses=True``) keeps only responses. Both drop frames the host itself sent
(PACKET_OUTGOING): on some links a target otherwise hears its own replies and
answers them (the go-aoe/torus bug). The flag test runs twice: in a classic BPF
filter in the kernel, so unwanted frames never wake us, and again in Python
for the frames queued before the filter was attached.

``MemoryTransport.pair()`` gives two connected endpoints with the same interface
(and a real file descriptor, so selectors work), for tests without root.
"""

from __future__ import annotations

import array
import collections
import ctypes
import fcntl
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from errno import EAGAIN, EFAULT, EINTR
from types import TracebackType
from typing import Protocol, Self

from aoeprov.aoe.wire import AOE_HDR, ATA_OVERHEAD, ETH_P_AOE, FLAG_RESPONSE, VERFL_OFFSET
from aoeprov.errors import HostError

SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
SO_ATTACH_FILTER = 26
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SIOCGIFMTU = 0x8921
IFREQ = struct.Struct("16si12x")
SOCK_FILTER = struct.Struct("HBBI")
SOCK_FPROG = struct.Struct("@HP")
DEFAULT_SOCKET_BUFFER = 8 * 1024 * 1024


class Transport(Protocol):
    """What the target and the client need from a link."""

    ifname: str
    mac: bytes
    mtu: int

    def send(self, frame: bytes | bytearray | memoryview) -> None: ...
    def send_batch(self, frames: Iterable[bytes | bytearray]) -> None: ...
    def recv(self, timeout: float | None) -> bytes | None: ...
    def recv_batch(self, max_frames: int, timeout: float | None) -> list[bytes]: ...
    def fileno(self) -> int: ...
    def refresh_mtu(self) -> int: ...
    def close(self) -> None: ...


def _wanted(frame: bytes, responses: bool) -> bool:
    return len(frame) >= AOE_HDR.size and bool(frame[VERFL_OFFSET] & FLAG_RESPONSE) == responses


def _bpf_program(responses: bool) -> bytes:
    """ldb [VERFL_OFFSET]; jset #FLAG_RESPONSE; then drop or accept depending on the side."""
    ld_abs_b, jset_k, ret_k = 0x30, 0x45, 0x06
    jt, jf = (1, 0) if responses else (0, 1)
    insns = [(ld_abs_b, 0, 0, VERFL_OFFSET), (jset_k, jt, jf, FLAG_RESPONSE),
             (ret_k, 0, 0, 0), (ret_k, 0, 0, 0x40000)]
    return b"".join(SOCK_FILTER.pack(*i) for i in insns)


class EthernetTransport:
    """An AF_PACKET socket on ``ifname`` for ethertype 0x88A2."""

    def __init__(self, ifname: str, *, responses: bool,
                 buffer_bytes: int = DEFAULT_SOCKET_BUFFER) -> None:
        self.ifname = ifname
        self.responses = responses
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_AOE))
        except OSError as exc:
            raise HostError(
                f"cannot open a raw AoE socket (needs root/CAP_NET_RAW): {exc}") from exc
        try:
            self._attach_filter(sock, responses)
            sock.bind((ifname, ETH_P_AOE))
            self.mac = bytes(sock.getsockname()[4][:6])
            self.mtu = _interface_mtu(sock, ifname)
        except OSError as exc:
            sock.close()
            raise HostError(f"cannot use interface {ifname!r} for AoE: {exc}") from exc
        self._set_buffers(sock, buffer_bytes)
        self._ignores_outgoing = _try_setsockopt(sock, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _try_setsockopt(sock, SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        self._sock = sock
        # the socket's own bound method: no Python frame per frame sent
        self.send = sock.send  # type: ignore[method-assign,assignment]
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._recv_size = max(self.mtu + 64, 2048)
        # frames queued between socket() and bind() may come from any interface and
        # predate the filter: drop them so every frame we hand out is from ifname
        while self._recv_one() is not None:
            pass

    @staticmethod
    def _attach_filter(sock: socket.socket, responses: bool) -> None:
        prog = _bpf_program(responses)
        buf = ctypes.create_string_buffer(prog)
        fprog = SOCK_FPROG.pack(len(prog) // SOCK_FILTER.size, ctypes.addressof(buf))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    @staticmethod
    def _set_buffers(sock: socket.socket, size: int) -> None:
        # as root, *FORCE ignores rmem_max/wmem_max; vblade's README explains why
        # raw sockets need far more than the default (skb truesize accounting)
        for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF),
                             (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            if not _try_setsockopt(sock, socket.SOL_SOCKET, force, size):
                _try_setsockopt(sock, socket.SOL_SOCKET, plain, size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def refresh_mtu(self) -> int:
        """Read the interface MTU again (it is cached: the read path needs it per frame)."""
        self.mtu = _interface_mtu(self._sock, self.ifname)
        self._recv_size = max(self.mtu + 64, 2048)
        return self.mtu

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        self._sock.send(frame)

    def send_batch(self, frames: Iterable[bytes | bytearray]) -> None:
        send = self._sock.send
        for frame in frames:
            send(frame)

    def _recv_one(self) -> bytes | None:
        """One wanted frame already queued, or None when the queue is empty."""
        while True:
            try:
                if self._ignores_outgoing:
                    frame = self._sock.recv(self._recv_size, socket.MSG_DONTWAIT)
                else:
                    frame, addr = self._sock.recvfrom(self._recv_size, socket.MSG_DONTWAIT)
                    if addr[2] == PACKET_OUTGOING:
                        continue
            except BlockingIOError:
                return None
            if _wanted(frame, self.responses):
                return frame

    def _wait(self, timeout: float | None) -> bool:
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(self._poll.poll(ms))

    def recv(self, timeout: float | None) -> bytes | None:
        """The next wanted frame, waiting up to ``timeout`` seconds (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._recv_one()
            if frame is not None:
                return frame
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._wait(left)

    def recv_batch(self, max_frames: int, timeout: float | None) -> list[bytes]:
        """Up to ``max_frames`` wanted frames: what is queued, else waits for one, then drains."""
        frames = self._drain(max_frames)
        if frames or timeout == 0:
            return frames
        first = self.recv(timeout)
        if first is None:
            return []
        return [first, *self._drain(max_frames - 1)]

    def _drain(self, limit: int) -> list[bytes]:
        """Queued wanted frames, without waiting (the target's hot path: keep it lean)."""
        frames: list[bytes] = []
        if not self._ignores_outgoing:
            while len(frames) < limit:
                frame = self._recv_one()
                if frame is None:
                    break
                frames.append(frame)
            return frames
        recv, size, dontwait = self._sock.recv, self._recv_size, socket.MSG_DONTWAIT
        want = FLAG_RESPONSE if self.responses else 0
        try:
            while len(frames) < limit:
                frame = recv(size, dontwait)
                if len(frame) >= AOE_HDR.size and frame[VERFL_OFFSET] & FLAG_RESPONSE == want:
                    frames.append(frame)
        except BlockingIOError:
            pass
        return frames

    def batch_io(self, slots: int) -> tuple[BatchReceiver, ReplyBuffer] | None:
        """A receiver and a reply buffer of ``slots`` frames each, sized for the MTU.

        None where recvmmsg/sendmmsg are missing, or where the kernel cannot drop
        our own outgoing frames (PACKET_IGNORE_OUTGOING, Linux 4.20): without it
        each frame's address would have to be checked, the slow way.
        """
        if _MMSG is None or not self._ignores_outgoing:
            return None
        return (MmsgReceiver(self._sock, slots, self._recv_size),
                MmsgReplyBuffer(self._sock, slots, self._recv_size))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _interface_mtu(sock: socket.socket, ifname: str) -> int:
    raw = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, IFREQ.pack(ifname.encode(), 0))
    return int(struct.unpack_from("16si", raw)[1])


def _try_setsockopt(sock: socket.socket, level: int, option: int, value: int) -> bool:
    try:
        sock.setsockopt(level, option, value)
    except OSError:
        return False
    return True


class MemoryTransport:
    """One end of an in-memory link; frames sent here arrive at the peer.

    Like a raw socket it keeps only the side's half of the traffic (requests for
    a target end, responses for a client end). Each end owns a pipe that holds
    one byte per queued frame, so ``fileno()`` works with selectors.
    """

    def __init__(self, ifname: str, mac: bytes, *, responses: bool, mtu: int = 1500) -> None:
        self.ifname = ifname
        self.mac = mac
        self.mtu = mtu
        self.responses = responses
        self.peer: MemoryTransport | None = None
        self.sent: list[bytes] = []  # every frame sent from this end, for assertions
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self.closed = False

    @classmethod
    def pair(cls, *, mtu: int = 1500, target_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
             client_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
             ifname: str = "mem0") -> tuple[MemoryTransport, MemoryTransport]:
        """(target end, client end) of one link."""
        target = cls(ifname, target_mac, responses=False, mtu=mtu)
        client = cls(ifname, client_mac, responses=True, mtu=mtu)
        target.peer, client.peer = client, target
        return target, client

    def fileno(self) -> int:
        return self._rfd

    def refresh_mtu(self) -> int:
        return self.mtu

    def deliver(self, frame: bytes | bytearray) -> None:
        """Put a frame on this end's receive queue (as if it came off the wire)."""
        data = bytes(frame)
        if self.closed or not _wanted(data, self.responses):
            return
        with self._lock:
            self._queue.append(data)
            os.write(self._wfd, b"\0")

    def send(self, frame: bytes | bytearray | memoryview) -> None:
        data = bytes(frame)
        self.sent.append(data)
        if self.peer is not None:
            self.peer.deliver(data)

    def send_batch(self, frames: Iterable[bytes | bytearray]) -> None:
        for frame in frames:
            self.send(frame)

    def batch_io(self, slots: int) -> tuple[TransportReceiver, ReplyBuffer]:
        """The batched interface of ``EthernetTransport.batch_io``, frame by frame."""
        size = max(self.mtu + 64, 2048)
        return TransportReceiver(self, slots), ReplyBuffer(slots, size, self.send)

    def _pop(self) -> bytes | None:
        with self._lock:
            if not self._queue:
                return None
            os.read(self._rfd, 1)
            return self._queue.popleft()

    def recv(self, timeout: float | None) -> bytes | None:
        frame = self._pop()
        if frame is not None or timeout == 0:
            return frame
        ms = None if timeout is None else max(0, int(timeout * 1000))
        poller = select.poll()
        poller.register(self._rfd, select.POLLIN)
        poller.poll(ms)
        return self._pop()

    def recv_batch(self, max_frames: int, timeout: float | None) -> list[bytes]:
        first = self.recv(timeout)
        if first is None:
            return []
        frames = [first]
        while len(frames) < max_frames:
            frame = self._pop()
            if frame is None:
                break
            frames.append(frame)
        return frames

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._rfd)
            os.close(self._wfd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- batched receive and send (recvmmsg/sendmmsg) ------------------------------
#
# Python's socket module has neither call; through ctypes one call moves a whole
# window of frames. Every buffer is allocated once: frames arrive in fixed slots
# of one receive buffer, replies are built in place in fixed slots of one send
# buffer, and the iovec/mmsghdr arrays pointing at the slots change only in the
# reply lengths and, for data sent from a file mapping (``attach``,
# ``send_uniform``), a second iovec per reply.

class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


# msg_len of entry i is word i * MMSG_WORDS + MMSG_LEN_WORD of the array seen as uint32
MMSG_WORDS = ctypes.sizeof(_MMsgHdr) // 4
MMSG_LEN_WORD = _MMsgHdr.msg_len.offset // 4
IOV_WORDS = ctypes.sizeof(_IoVec) // 8  # iov_len of entry i is uint64 word 2i+1
MSG_WAITFORONE = 0x10000
TIMEVAL = struct.Struct("@ll")
WAIT_LIMIT = 1  # seconds a blocking recv waits at most


def _load_mmsg() -> tuple[Callable[..., int], Callable[..., int]] | None:
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


def _slot_arrays(buf: bytearray, slots: int, slot_size: int, iovs_per_slot: int = 1,
                 ) -> tuple[ctypes.Array[_IoVec], ctypes.Array[_MMsgHdr]]:
    """iovec and mmsghdr arrays: message i starts with an iovec over slot i of ``buf``.

    With ``iovs_per_slot`` > 1 each message owns that many consecutive iovecs, the
    first over its slot, the others free for ``ReplyBuffer.attach``; msg_iovlen is 1.
    """
    base = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    iovs = (_IoVec * (slots * iovs_per_slot))()
    hdrs = (_MMsgHdr * slots)()
    for i in range(slots):
        first = i * iovs_per_slot
        iovs[first].iov_base = base + i * slot_size
        iovs[first].iov_len = slot_size
        hdrs[i].msg_hdr.msg_iov = ctypes.addressof(iovs) + first * ctypes.sizeof(_IoVec)
        hdrs[i].msg_hdr.msg_iovlen = 1
    return iovs, hdrs


class BadAddress(OSError):
    """sendmmsg could not read the memory attached to reply ``index`` (EFAULT).

    Attached memory is a shared mapping of a file: a file that shrank under it, or a
    disk that failed to read, shows up here, never as SIGBUS (the kernel's copy
    fails, not our process's load).
    """

    def __init__(self, index: int) -> None:
        super().__init__(EFAULT, f"reply {index}: attached data unreadable")
        self.index = index


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
        """Send ``count`` header-only or header + mapped-data replies (``zero_copy`` only)."""
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


# one iovec for the slot, one for attached file data
IOVS_PER_REPLY = 2
# words (uint64) of one mmsghdr, and the index of msg_iovlen among them
HDR_WORDS = ctypes.sizeof(_MMsgHdr) // 8
IOVLEN_WORD = _MMsgHdr.msg_hdr.offset // 8 + _MsgHdr.msg_iovlen.offset // 8


class MmsgReplyBuffer(ReplyBuffer):
    """A ``ReplyBuffer`` sent with ``sendmmsg``: one system call per flush, zero-copy attach."""

    zero_copy = True

    def __init__(self, sock: socket.socket, slots: int, slot_size: int) -> None:
        super().__init__(slots, slot_size, sock.send)
        assert _MMSG is not None
        self._sendmmsg = _MMSG[1]
        self._fd = sock.fileno()
        self._iovs, self._hdrs = _slot_arrays(self.buffer, slots, slot_size, IOVS_PER_REPLY)
        # uint64 words: iovec j is words 2j (base) and 2j+1 (length)
        self._iov_words = memoryview(self._iovs).cast("B").cast("Q")
        self._hdr_words = memoryview(self._hdrs).cast("B").cast("Q")
        self._hdrs_ptr = ctypes.addressof(self._hdrs)
        self._hdr_size = ctypes.sizeof(_MMsgHdr)
        self._attached: list[int] = []  # replies with msg_iovlen 2
        # send_uniform's own arrays: message i = header i of one block (+ attached data)
        self._uniform_headers = bytearray(slots * ATA_OVERHEAD)
        self._uniform_iovs, self._uniform_hdrs = _slot_arrays(
            self._uniform_headers, slots, ATA_OVERHEAD, IOVS_PER_REPLY)
        self._uniform_iov_words = memoryview(self._uniform_iovs).cast("B").cast("Q")
        self._uniform_hdr_words = memoryview(self._uniform_hdrs).cast("B").cast("Q")
        self._uniform_hdrs_ptr = ctypes.addressof(self._uniform_hdrs)

    def send_uniform(self, headers: bytes, count: int, addresses: bytes | None = None,
                     sizes: bytes | None = None) -> None:
        """Send ``count`` replies: 36-byte header i of ``headers``, then (when given)
        ``sizes[i]`` bytes of mapped memory at ``addresses[i]`` (native 64-bit words).

        For whole uniform batches (``target.uniform``): no slot is touched, every
        reply leaves in one ``sendmmsg``; a fault on reply i goes through ``refill``
        in slot 0, that reply alone is sent from there, and the rest follow.
        """
        if self.lengths or count > self.slots:
            raise ValueError("send_uniform needs an empty buffer and at most one slot per reply")
        self._uniform_headers[:len(headers)] = headers
        words = self._uniform_iov_words
        stride = IOVS_PER_REPLY * IOV_WORDS
        if addresses is None or sizes is None:
            iovlen = 1
        else:
            iovlen = 2
            words[2:stride * count:stride] = memoryview(addresses).cast("Q")
            words[3:stride * count:stride] = memoryview(sizes).cast("Q")
        self._uniform_hdr_words[IOVLEN_WORD:HDR_WORDS * count:HDR_WORDS] = (
            array.array("Q", [iovlen]) * count)

        def alone(index: int, refill: Callable[[int, int], None]) -> int:
            """Reply ``index`` through slot 0, refilled; go on after it."""
            self.view[:ATA_OVERHEAD] = headers[index * ATA_OVERHEAD:(index + 1) * ATA_OVERHEAD]
            self.lengths.append(ATA_OVERHEAD)
            try:
                refill(0, int(words[stride * index + 3]))
                self._send_one(self.view[:self.lengths[0]])
            finally:
                self.lengths.clear()
            return index + 1

        self._send_messages(self._uniform_hdrs_ptr, count, alone)

    def attach(self, address: int, nbytes: int) -> None:
        index = len(self.lengths) - 1
        words = self._iov_words
        words[4 * index + 2] = address
        words[4 * index + 3] = nbytes
        self._hdr_words[HDR_WORDS * index + IOVLEN_WORD] = 2
        self._attached.append(index)

    def attached(self, index: int) -> int:
        if self._hdr_words[HDR_WORDS * index + IOVLEN_WORD] == 1:
            return 0
        return int(self._iov_words[4 * index + 3])

    def detach(self, index: int) -> None:
        self._hdr_words[HDR_WORDS * index + IOVLEN_WORD] = 1

    def _reset(self) -> None:
        for index in self._attached:
            self._hdr_words[HDR_WORDS * index + IOVLEN_WORD] = 1
        self._attached.clear()
        self.lengths.clear()

    def _send_slots(self, lengths: list[int]) -> None:
        count = len(lengths)
        if count == 1 and not self._attached:  # a plain send costs less than the ctypes call
            self._send_one(self.view[:lengths[0]])
            return
        words = IOVS_PER_REPLY * IOV_WORDS
        self._iov_words[1:words * count:words] = array.array("Q", lengths)

        def in_place(index: int, refill: Callable[[int, int], None]) -> int:
            """Reply ``index`` refilled in its own slot; send again from it."""
            nbytes = self.attached(index)
            self.detach(index)
            refill(index, nbytes)
            self._iov_words[words * index + 1] = lengths[index]
            return index

        self._send_messages(self._hdrs_ptr, count, in_place)

    def _send_messages(self, hdrs_ptr: int, count: int,
                       on_fault: Callable[[int, Callable[[int, int], None]], int]) -> None:
        """``sendmmsg`` messages 0..count-1 of the mmsghdr array at ``hdrs_ptr``.

        When message i's attached memory is unreadable (EFAULT), ``on_fault(i, refill)``
        repairs it and returns the message to go on from; without ``refill``,
        ``BadAddress(i)``.
        """
        done = 0
        while done < count:
            sent = self._sendmmsg(self._fd, hdrs_ptr + done * self._hdr_size, count - done, 0)
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
        self._iovs, self._hdrs = _slot_arrays(self._buffer, slots, slot_size)
        self._hdr_words = memoryview(self._hdrs).cast("B").cast("I")
        self._hdrs_ptr = ctypes.addressof(self._hdrs)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.pack(WAIT_LIMIT, 0))

    def recv(self, wait: bool = False) -> list[memoryview]:
        """The frames already queued (up to ``slots``); with ``wait``, waits for one first.

        A wait ends early with no frames on a signal, or after ``WAIT_LIMIT``
        seconds (SO_RCVTIMEO), so a caller that blocks here still checks its flags.
        """
        flags = MSG_WAITFORONE if wait else socket.MSG_DONTWAIT
        count = self._recvmmsg(self._fd, self._hdrs_ptr, self.slots, flags, None)
        if count <= 0:
            if count < 0:
                errno = ctypes.get_errno()
                if errno not in (EAGAIN, EINTR):
                    raise OSError(errno, os.strerror(errno))
            return []
        lengths = self._hdr_words[MMSG_LEN_WORD:MMSG_WORDS * count:MMSG_WORDS].tolist()
        size, view = self.slot_size, self._view
        return [view[i * size:i * size + n] for i, n in enumerate(lengths)]


def mmsg_available() -> bool:
    return _MMSG is not None


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
