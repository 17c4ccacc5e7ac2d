"""What the target and the client need from a link, whatever carries the frames."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Transport(Protocol):
    """One interface's frames: ``PacketSocket`` on Ethernet, an in-memory pair in tests."""

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


def slot_size(mtu: int) -> int:
    """Bytes to receive (or build) one frame in on a link of ``mtu``: the Ethernet header
    and some slack over the MTU, and never under 2 KiB."""
    return max(mtu + 64, 2048)
