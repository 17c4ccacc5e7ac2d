"""recvmmsg/sendmmsg through ctypes, on a datagram socket pair (no root needed)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.link.batch import ReplyBuffer
from aoeprov.link.mmsg import BadAddress, MmsgReceiver, MmsgReplyBuffer
from aoeprov.targetd.mapping import map_readonly
from tests.unit.memory_link import MemoryTransport

pytestmark = pytest.mark.usefixtures("mmsg")   # fails with the reason without *mmsg


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield a, b
    a.close()
    b.close()


def test_receiver_returns_each_queued_datagram(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    receiver = MmsgReceiver(b, slots=4, slot_size=2048)
    assert receiver.recv() == []
    sent = [bytes([i]) * (100 + i) for i in range(6)]
    for frame in sent:
        a.send(frame)
    first = [bytes(v) for v in receiver.recv()]
    second = [bytes(v) for v in receiver.recv()]
    assert first == sent[:4] and second == sent[4:]
    assert receiver.recv() == []


def test_receiver_wait_returns_on_the_first_frame(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    receiver = MmsgReceiver(b, slots=4, slot_size=2048)
    a.send(b"x" * 60)
    started = time.monotonic()
    assert [bytes(v) for v in receiver.recv(wait=True)] == [b"x" * 60]
    assert time.monotonic() - started < 0.5


def test_reply_buffer_sends_slots_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    replies = MmsgReplyBuffer(a, slots=3, slot_size=2048)
    frames = [bytes([i]) * (60 + 200 * i) for i in range(5)]
    for frame in frames[:3]:
        replies.put(frame)
    replies.flush()
    assert replies.lengths == []
    for frame in frames[3:]:
        replies.put(frame)
    replies.put(b"y" * 5000)  # larger than a slot: flushes, then goes on its own
    replies.flush()
    got = [b.recv(8192) for _ in range(6)]
    assert got == [*frames, b"y" * 5000]


def test_put_flushes_a_full_buffer() -> None:
    sent: list[bytes] = []
    replies = ReplyBuffer(2, 128, lambda f: sent.append(bytes(f)))
    for i in range(5):
        replies.put(bytes([i]) * 10)
    assert sent == [bytes([i]) * 10 for i in range(4)] and replies.lengths == [10]


def test_memory_transport_offers_the_same_batch_interface() -> None:
    target, client = MemoryTransport.pair()
    receiver, replies = target.batch_io(8)
    client.send(b"\0" * 14 + b"\x10" + b"\0" * 45)  # a request (no response flag)
    (frame,) = receiver.recv(wait=True)
    replies.put(bytes(frame[:14]) + b"\x18" + bytes(frame[15:]))
    replies.flush()
    assert len(client.recv_batch(8, 0)) == 1
    target.close()
    client.close()


def test_attached_file_data_is_sent_uncopied_and_a_fault_is_reported(
        pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    a, b = pair
    path = tmp_path / "backing"
    path.write_bytes(b"A" * 4096 + b"B" * 4096)
    fd = os.open(path, os.O_RDONLY)
    mapping = map_readonly(fd, 8192, "test")
    assert mapping is not None
    try:
        replies = MmsgReplyBuffer(a, slots=4, slot_size=2048)
        replies.put(b"head1")
        replies.attach(mapping.address + 4090, 10)
        replies.put(b"head2")
        replies.flush()
        assert [b.recv(8192) for _ in range(2)] == [b"head1" + b"A" * 6 + b"B" * 4, b"head2"]
        os.truncate(path, 4096)  # the second page is gone: the kernel's copy faults
        replies.put(b"head3")
        replies.attach(mapping.address + 4096, 10)
        with pytest.raises(BadAddress) as fault:
            replies.flush()
        assert fault.value.index == 0
        refilled: list[tuple[int, int]] = []

        def refill(index: int, nbytes: int) -> None:
            refilled.append((index, nbytes))
            replies.view[5:5 + nbytes] = b"z" * nbytes
            replies.lengths[index] = 5 + nbytes

        replies.refill = refill
        replies.put(b"head4")
        replies.attach(mapping.address + 4096, 10)
        replies.flush()
        assert refilled == [(0, 10)] and b.recv(8192) == b"head4" + b"z" * 10
    finally:
        mapping.close()
        os.close(fd)


def test_nothing_to_map_is_no_mapping(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory cannot be mapped
    try:
        assert map_readonly(fd, 0, "empty") is None
        assert map_readonly(fd, 4096, "directory") is None
    finally:
        os.close(fd)
