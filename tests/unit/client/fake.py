"""A scripted AoE peer for client unit tests: answers synchronously, can drop frames.

``FakeTarget`` is the client's end of a ``MemoryTransport`` link (so it has a real
file descriptor for ``select``); every frame the client sends is decoded here and
answered straight into the client's receive queue, unless a rule drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    SECTOR_SIZE,
    AoeErrorCode,
    AoeHeader,
    AtaArg,
    ConfigArg,
    Frame,
    MacMaskArg,
    ReserveArg,
    decode_frame,
)
from tests.unit.memory_link import MemoryTransport

TARGET_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000002")


@dataclass
class Peer:
    """One emulated target: a shelf.slot with a MAC and a disk in memory."""

    shelf: int
    slot: int
    mac: bytes = TARGET_MAC
    sectors: int = 1024
    buffer_count: int = 16
    sectors_per_frame: int = 2
    config: bytes = b""
    disk: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        if not self.disk:
            self.disk = bytearray(self.sectors * SECTOR_SIZE)


class FakeTarget(MemoryTransport):
    def __init__(self, *peers: Peer, mtu: int = 1500, ifname: str = "fake0") -> None:
        super().__init__(ifname, CLIENT_MAC, responses=True, mtu=mtu)
        self.peers = list(peers) or [Peer(0, 1)]
        self.requests: list[Frame] = []
        # called with (request number from 0, frame); True drops the frame unanswered
        self.drop: Callable[[int, Frame], bool] = lambda _n, _f: False
        # with hold_until=N, answers are kept back until N are waiting, then all released:
        # a client that keeps N requests in flight never stalls
        self.hold_until = 0
        self.held: list[bytes] = []
        self.max_held = 0

    def send(self, frame: bytes | bytearray) -> None:
        super().send(frame)  # records it in self.sent; there is no peer end
        request = decode_frame(bytes(frame))
        number = len(self.requests)
        self.requests.append(request)
        if self.drop(number, request):
            return
        for peer in self.peers:
            if self._addressed(peer, request.header):
                answer = self.answer(peer, request)
                if answer is not None:
                    self._release(answer.pack())

    def _release(self, frame: bytes) -> None:
        if not self.hold_until:
            self.deliver(frame)
            return
        self.held.append(frame)
        self.max_held = max(self.max_held, len(self.held))
        if len(self.held) >= self.hold_until:
            for held in self.held:
                self.deliver(held)
            self.held.clear()

    def _addressed(self, peer: Peer, header: AoeHeader) -> bool:
        shelf_ok = header.shelf in (peer.shelf, 0xFFFF)
        slot_ok = header.slot in (peer.slot, 0xFF)
        mac_ok = header.dst in (peer.mac, b"\xff" * 6)
        return shelf_ok and slot_ok and mac_ok

    def answer(self, peer: Peer, request: Frame) -> Frame | None:
        header = request.header.reply(peer.mac, shelf=peer.shelf, slot=peer.slot)
        arg = request.arg
        if isinstance(arg, ConfigArg):
            return Frame(header, ConfigArg(peer.buffer_count, 0x4019, peer.sectors_per_frame,
                                           arg.ccmd, peer.config))
        if isinstance(arg, MacMaskArg):
            return Frame(header, MacMaskArg(arg.mcmd, 0, ()))
        if isinstance(arg, ReserveArg):
            return Frame(header, ReserveArg(arg.rcmd, arg.macs))
        assert isinstance(arg, AtaArg)
        return Frame(header, self.ata(peer, arg, request.header))

    def ata(self, peer: Peer, arg: AtaArg, header: AoeHeader) -> AtaArg | bytes:
        if arg.sector_count > peer.sectors_per_frame:
            return b""  # unreachable in these tests; the client must split
        failed = AtaArg(arg.aflags, ata.ERR_IDNF, arg.sector_count,
                        ata.STATUS_DRDY | ata.STATUS_ERR, arg.lba)
        ok = AtaArg(arg.aflags, 0, 0, ata.STATUS_DRDY, arg.lba)
        lba = arg.lba if arg.aflags & ata.AFLAG_LBA48 else arg.lba & ata.LBA28_MASK
        if arg.cmd_status == ata.ATA_IDENTIFY:
            data = ata.build_identify(peer.sectors, "serial-1", "fake", "F1")
            return AtaArg(0, 0, 0, ata.STATUS_DRDY, 0, data)
        if arg.cmd_status in (ata.ATA_READ, ata.ATA_READ_EXT, ata.ATA_WRITE, ata.ATA_WRITE_EXT):
            if lba + arg.sector_count > peer.sectors:
                return failed
            start, end = lba * SECTOR_SIZE, (lba + arg.sector_count) * SECTOR_SIZE
            if arg.aflags & ata.AFLAG_WRITE:
                peer.disk[start:end] = arg.data
                return ok
            return AtaArg(arg.aflags, 0, 0, ata.STATUS_DRDY, arg.lba, bytes(peer.disk[start:end]))
        return AtaArg(arg.aflags, ata.ERR_ABRT, 0, ata.STATUS_DRDY | ata.STATUS_ERR, arg.lba)


def error_reply(request: Frame, code: AoeErrorCode, mac: bytes = TARGET_MAC) -> bytes:
    header = request.header.reply(mac, error=code)
    return header.pack()
