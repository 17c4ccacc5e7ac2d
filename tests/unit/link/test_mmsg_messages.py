"""``Messages``' named accessors write the fields the kernel reads (checked through ctypes)."""

from __future__ import annotations

import array
import ctypes

from aoeprov.link.mmsg import IoVec, Messages, MMsgHdr


def _hdr(messages: Messages, index: int) -> MMsgHdr:
    return MMsgHdr.from_address(messages.at(index))


def _iov(messages: Messages, index: int, which: int) -> IoVec:
    first = _hdr(messages, index).msg_hdr.msg_iov
    return IoVec.from_address(first + which * ctypes.sizeof(IoVec))


def test_each_message_starts_over_its_own_slot() -> None:
    buffer = bytearray(4 * 100)
    messages = Messages(buffer, 4, 100, iovecs=2)
    base = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    for i in range(4):
        assert _iov(messages, i, 0).iov_base == base + i * 100
        assert _iov(messages, i, 0).iov_len == 100
        assert _hdr(messages, i).msg_hdr.msg_iovlen == 1


def test_one_message_accessors() -> None:
    messages = Messages(bytearray(3 * 64), 3, 64, iovecs=2)
    messages.set_slot_length(1, 36)
    messages.attach(1, 0x1234_5678, 4096)
    assert _iov(messages, 1, 0).iov_len == 36
    assert (_iov(messages, 1, 1).iov_base, _iov(messages, 1, 1).iov_len) == (0x1234_5678, 4096)
    assert _hdr(messages, 1).msg_hdr.msg_iovlen == 2
    assert messages.attached(1) == 4096
    assert messages.attached(0) == messages.attached(2) == 0
    messages.detach(1)
    assert _hdr(messages, 1).msg_hdr.msg_iovlen == 1 and messages.attached(1) == 0


def test_whole_batch_accessors() -> None:
    messages = Messages(bytearray(5 * 64), 5, 64, iovecs=2)
    messages.set_slot_lengths([36, 40, 44])
    addresses = array.array("Q", [0x1000, 0x2000, 0x3000]).tobytes()
    sizes = array.array("Q", [512, 1024, 1536]).tobytes()
    messages.attach_each(3, addresses, sizes)
    for i in range(3):
        assert _iov(messages, i, 0).iov_len == 36 + 4 * i
        assert (_iov(messages, i, 1).iov_base, _iov(messages, i, 1).iov_len) == (
            0x1000 * (i + 1), 512 * (i + 1))
        assert _hdr(messages, i).msg_hdr.msg_iovlen == 2
    assert _iov(messages, 3, 0).iov_len == 64 and _hdr(messages, 3).msg_hdr.msg_iovlen == 1
    messages.detach_each(3)
    assert all(_hdr(messages, i).msg_hdr.msg_iovlen == 1 for i in range(5))


def test_received_lengths_are_msg_len() -> None:
    messages = Messages(bytearray(3 * 64), 3, 64)
    for i, n in enumerate((60, 0, 17)):
        _hdr(messages, i).msg_len = n
    assert messages.received_lengths(3) == [60, 0, 17]
    assert messages.received_lengths(1) == [60]
