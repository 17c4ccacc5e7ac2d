"""An in-memory AoE link for unit tests: ``MemoryTransport.pair()`` gives two connected
endpoints with the same interface, and a real file descriptor each, so selectors work,
without root or a network namespace."""

from __future__ import annotations

import collections
import os
import select
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from aoeprov.aoe.transport import side_filter
from aoeprov.link.batch import ReplyBuffer, TransportReceiver
from aoeprov.link.transport import slot_size


class MemoryTransport:
    """One end of an in-memory link; frames sent here arrive at the peer.

    Like ``EthernetTransport`` it keeps only the side's half of the traffic (requests
    for a target end, responses for a client end). Each end owns a pipe that holds
    one byte per queued frame, so ``fileno()`` works with selectors.
    """

    def __init__(self, ifname: str, mac: bytes, *, responses: bool, mtu: int = 1500) -> None:
        self.ifname = ifname
        self.mac = mac
        self.mtu = mtu
        self.responses = responses
        self.filter = side_filter(responses)
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
        if self.closed or not self.filter.wants(data):
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
        """The batched interface of ``PacketSocket.batch_io``, frame by frame."""
        return TransportReceiver(self, slots), ReplyBuffer(slots, slot_size(self.mtu), self.send)

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
