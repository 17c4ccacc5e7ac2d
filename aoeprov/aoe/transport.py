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

import collections
import ctypes
import fcntl
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self

from aoeprov.aoe.wire import AOE_HDR, ETH_P_AOE, FLAG_RESPONSE
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
# byte 14 of a frame is ver<<4|flags
VERFL_OFFSET = 14
DEFAULT_SOCKET_BUFFER = 8 * 1024 * 1024


class Transport(Protocol):
    """What the target and the client need from a link."""

    ifname: str
    mac: bytes
    mtu: int

    def send(self, frame: bytes | bytearray) -> None: ...
    def send_batch(self, frames: Iterable[bytes | bytearray]) -> None: ...
    def recv(self, timeout: float | None) -> bytes | None: ...
    def recv_batch(self, max_frames: int, timeout: float | None) -> list[bytes]: ...
    def fileno(self) -> int: ...
    def refresh_mtu(self) -> int: ...
    def close(self) -> None: ...


def _wanted(frame: bytes, responses: bool) -> bool:
    return len(frame) >= AOE_HDR.size and bool(frame[VERFL_OFFSET] & FLAG_RESPONSE) == responses


def _bpf_program(responses: bool) -> bytes:
    """ldb [14]; jset #R; then drop or accept depending on the side."""
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

    def send(self, frame: bytes | bytearray) -> None:
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

    def send(self, frame: bytes | bytearray) -> None:
        data = bytes(frame)
        self.sent.append(data)
        if self.peer is not None:
            self.peer.deliver(data)

    def send_batch(self, frames: Iterable[bytes | bytearray]) -> None:
        for frame in frames:
            self.send(frame)

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
