"""Request frames and a harness for driving a target engine with bytes.

The backing file has ``FILE_SECTORS`` sectors; the export covers ``LENGTH``
sectors starting at ``OFFSET``, so every test can check that the bytes around
the export are never touched.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    AOE_HDR,
    ETH_P_AOE,
    AtaArg,
    Command,
    ConfigArg,
    Frame,
    decode_frame,
)
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import TargetProtocol

TARGET_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000002")
OTHER_MAC = bytes.fromhex("020000000003")
FILE_SECTORS = 64
OFFSET = 16
LENGTH = 32
SENTINEL = b"\xee"
SHELF, SLOT = 1, 2

_tags = itertools.count(0x80000000)


@dataclass
class FakeLink:
    ifname: str = "eth0"
    mac: bytes = TARGET_MAC
    mtu: int = 1500


def request(command: int, arg: bytes = b"", *, shelf: int = SHELF, slot: int = SLOT,
            src: bytes = CLIENT_MAC, dst: bytes = TARGET_MAC, tag: int | None = None,
            verfl: int = 0x10) -> bytes:
    tag = next(_tags) if tag is None else tag
    return AOE_HDR.pack(dst, src, ETH_P_AOE, verfl, 0, shelf, slot, command, tag) + arg


def ata_request(opcode: int, lba: int = 0, count: int = 1, data: bytes = b"", *,
                lba48: bool = True, **kw: object) -> bytes:
    aflags = (ata.AFLAG_LBA48 if lba48 else 0) | (ata.AFLAG_WRITE if data else 0)
    return request(Command.ATA, AtaArg(aflags, 0, count, opcode, lba, data).pack(),
                   **kw)  # type: ignore[arg-type]


def config_request(ccmd: int, config: bytes = b"", **kw: object) -> bytes:
    return request(Command.CONFIG, ConfigArg(0, 0, 0, ccmd, config).pack(),
                   **kw)  # type: ignore[arg-type]


@dataclass
class Harness:
    path: Path
    engine: TargetProtocol
    link: FakeLink = field(default_factory=FakeLink)

    @property
    def export(self) -> Export:
        return self.engine.exports[0]

    def send_raw(self, *frames: bytes) -> list[bytes]:
        return [bytes(f) for f in self.engine.handle_batch(frames, self.link)]

    def send(self, *frames: bytes) -> list[Frame]:
        return [decode_frame(f) for f in self.send_raw(*frames)]

    def one(self, frame: bytes) -> Frame:
        replies = self.send(frame)
        assert len(replies) == 1, replies
        return replies[0]

    def ata(self, frame: bytes) -> AtaArg:
        reply = self.one(frame)
        assert reply.header.is_response and not reply.header.is_error
        assert isinstance(reply.arg, AtaArg)
        return reply.arg

    def outside(self) -> bytes:
        data = self.path.read_bytes()
        return data[:OFFSET * 512] + data[(OFFSET + LENGTH) * 512:]

    def inside(self) -> bytes:
        return self.path.read_bytes()[OFFSET * 512:(OFFSET + LENGTH) * 512]


def make_backing(path: Path) -> Path:
    path.write_bytes(SENTINEL * (OFFSET * 512) + bytes(LENGTH * 512)
                     + SENTINEL * ((FILE_SECTORS - OFFSET - LENGTH) * 512))
    return path


