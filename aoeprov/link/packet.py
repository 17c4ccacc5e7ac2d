"""An AF_PACKET socket for one ethertype on one interface.

``PacketSocket`` keeps only the frames its ``ByteFilter`` wants, and drops frames
the host itself sent (PACKET_OUTGOING): on some links a target otherwise hears its
own replies and answers them (the go-aoe/torus bug). The filter runs twice: in the
kernel, so unwanted frames never wake us, and again in Python for the frames queued
before the filter was attached.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from aoeprov.errors import HostError
from aoeprov.link.batch import ReplyBuffer
from aoeprov.link.bpf import SOCK_FILTER, ByteFilter
from aoeprov.link.mmsg import MmsgReceiver, MmsgReplyBuffer, mmsg_available
from aoeprov.link.transport import slot_size

SOL_PACKET = 263
PACKET_OUTGOING = 4
PACKET_STATISTICS = 6
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
SO_ATTACH_FILTER = 26
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SIOCGIFMTU = 0x8921
IFREQ = struct.Struct("16si12x")
SOCK_FPROG = struct.Struct("@HP")
DEFAULT_SOCKET_BUFFER = 8 * 1024 * 1024
TPACKET_STATS = struct.Struct("=II")  # tp_packets, tp_drops (reset by each read)


class PacketSocket:
    """A raw socket on ``ifname`` for ``ethertype`` frames that ``frames`` wants.

    ``protocol`` names the traffic in error messages ("AoE").
    """

    def __init__(self, ifname: str, ethertype: int, frames: ByteFilter, *,
                 protocol: str = "", buffer_bytes: int = DEFAULT_SOCKET_BUFFER) -> None:
        self.ifname = ifname
        self.filter = frames
        protocol = protocol or f"ethertype 0x{ethertype:04x}"
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        except OSError as exc:
            raise HostError(
                f"cannot open a raw {protocol} socket (needs root/CAP_NET_RAW): {exc}") from exc
        try:
            _attach_filter(sock, frames)
            sock.bind((ifname, ethertype))
            self.mac = bytes(sock.getsockname()[4][:6])
            self.mtu = _interface_mtu(sock, ifname)
        except OSError as exc:
            sock.close()
            raise HostError(f"cannot use interface {ifname!r} for {protocol}: {exc}") from exc
        _set_buffers(sock, buffer_bytes)
        self._ignores_outgoing = _try_setsockopt(sock, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _try_setsockopt(sock, SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        self._sock = sock
        # the socket's own bound method: no Python frame per frame sent
        self.send = sock.send  # type: ignore[method-assign,assignment]
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._recv_size = slot_size(self.mtu)
        # frames queued between socket() and bind() may come from any interface and
        # predate the filter: drop them so every frame we hand out is from ifname
        while self._recv_one() is not None:
            pass

    def fileno(self) -> int:
        return self._sock.fileno()

    def refresh_mtu(self) -> int:
        """Read the interface MTU again (it is cached: the read path needs it per frame)."""
        self.mtu = _interface_mtu(self._sock, self.ifname)
        self._recv_size = slot_size(self.mtu)
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
            if self.filter.wants(frame):
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
        # the filter's test, inline
        at, bit, want, min_length = (self.filter.offset, self.filter.bit, self.filter.want,
                                     self.filter.min_length)
        try:
            while len(frames) < limit:
                frame = recv(size, dontwait)
                if len(frame) >= min_length and frame[at] & bit == want:
                    frames.append(frame)
        except BlockingIOError:
            pass
        return frames

    def batch_io(self, slots: int) -> tuple[MmsgReceiver, ReplyBuffer] | None:
        """A receiver and a reply buffer of ``slots`` frames each, sized for the MTU.

        None where recvmmsg/sendmmsg are missing, or where the kernel cannot drop
        our own outgoing frames (PACKET_IGNORE_OUTGOING, Linux 4.20): without it
        each frame's address would have to be checked, the slow way.
        """
        if not mmsg_available() or not self._ignores_outgoing:
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


def _attach_filter(sock: socket.socket, frames: ByteFilter) -> None:
    prog = frames.program()
    buf = ctypes.create_string_buffer(prog)
    fprog = SOCK_FPROG.pack(len(prog) // SOCK_FILTER.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _set_buffers(sock: socket.socket, size: int) -> None:
    # as root, *FORCE ignores rmem_max/wmem_max; vblade's README explains why
    # raw sockets need far more than the default (skb truesize accounting)
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF),
                         (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        if not _try_setsockopt(sock, socket.SOL_SOCKET, force, size):
            _try_setsockopt(sock, socket.SOL_SOCKET, plain, size)


def _interface_mtu(sock: socket.socket, ifname: str) -> int:
    raw = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, IFREQ.pack(ifname.encode(), 0))
    return int(struct.unpack_from("16si", raw)[1])


def _try_setsockopt(sock: socket.socket, level: int, option: int, value: int) -> bool:
    try:
        sock.setsockopt(level, option, value)
    except OSError:
        return False
    return True


def packet_drops(fd: int) -> int | None:
    """Frames the kernel dropped on the packet socket ``fd`` since the last call (None:
    ``fd`` is no packet socket, an in-memory link say)."""
    copy = os.dup(fd)
    try:
        sock = socket.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return None
    with sock:
        try:
            raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        except OSError:
            return None
    return int(TPACKET_STATS.unpack(raw)[1])
