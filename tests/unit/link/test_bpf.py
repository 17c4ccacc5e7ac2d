"""The kernel runs ``ByteFilter``'s program as ``wants`` says (a Unix socket pair: no root)."""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterator

import pytest

from aoeprov.aoe.transport import side_filter
from aoeprov.aoe.wire import AOE_HDR, FLAG_ERROR, FLAG_RESPONSE, VERFL_OFFSET
from aoeprov.link.bpf import SOCK_FILTER, ByteFilter
from aoeprov.link.packet import SO_ATTACH_FILTER, SOCK_FPROG


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    yield a, b
    a.close()
    b.close()


def _attach(sock: socket.socket, frames: ByteFilter) -> ctypes.Array[ctypes.c_char]:
    prog = frames.program()
    buf = ctypes.create_string_buffer(prog)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    SOCK_FPROG.pack(len(prog) // SOCK_FILTER.size, ctypes.addressof(buf)))
    return buf


def _frame(verfl: int) -> bytes:
    frame = bytearray(AOE_HDR.size)
    frame[VERFL_OFFSET] = verfl
    return bytes(frame)


@pytest.mark.parametrize("responses", [False, True])
def test_the_kernel_keeps_what_wants_keeps(pair: tuple[socket.socket, socket.socket],
                                           responses: bool) -> None:
    sender, receiver = pair
    frames = side_filter(responses)
    _attach(receiver, frames)
    receiver.setblocking(False)
    sent = [_frame(v) for v in (0x10, 0x10 | FLAG_RESPONSE, 0x10 | FLAG_RESPONSE | FLAG_ERROR,
                                0x10 | FLAG_ERROR, 0xFF, 0x00)]
    for frame in sent:
        sender.send(frame)
    got = []
    while True:
        try:
            got.append(receiver.recv(100))
        except BlockingIOError:
            break
    assert got == [f for f in sent if frames.wants(f)]
    assert all(bool(f[VERFL_OFFSET] & FLAG_RESPONSE) == responses for f in got)
    assert len(got) == 3


def test_wants_checks_the_length_and_one_bit() -> None:
    frames = ByteFilter(offset=2, bit=0x04, set=True, min_length=4)
    assert frames.wants(b"\x00\x00\x04\x00")
    assert not frames.wants(b"\x00\x00\x04")        # too short
    assert not frames.wants(b"\x00\x00\xfb\x00")    # every other bit
    assert ByteFilter(offset=2, bit=0x04, set=False, min_length=4).wants(b"\x00\x00\xfb\x00")
    with pytest.raises(ValueError):
        ByteFilter(offset=0, bit=0x06, set=True, min_length=1)
