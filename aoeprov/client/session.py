"""A userspace AoE initiator for one shelf.slot.

Every exchange runs through ``client.window``: tags with bit 31 set, several requests
in flight (the window, capped by the target's advertised buffer count), a request not
answered within its timeout sent again under a new tag with the timeout doubled up to
``max_timeout``, and ``DeviceTimeout`` after ``retries`` resends (about 14 s of
silence with the defaults); answers from strangers or to abandoned tags are ignored.

Large reads and writes are split into frames of at most ``sectors_per_frame``
sectors: the smaller of the target's advertised count and what the local MTU
carries, (MTU - 36) // 512, exactly as the kernel computes its payload.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from aoeprov.aoe import ata
from aoeprov.aoe.ata import Identity
from aoeprov.aoe.transport import EthernetTransport
from aoeprov.aoe.wire import (
    AOE_HDR,
    ATA_HDR,
    ATA_OVERHEAD,
    BROADCAST_MAC,
    SECTOR_SIZE,
    AoeHeader,
    Command,
    ConfigArg,
    ConfigCommand,
    MacDirective,
    MacMaskArg,
    MaskCommand,
    MaskDirectiveCommand,
    ReserveArg,
    ReserveCommand,
    decode_frame,
    lba_bytes,
    mac_to_bytes,
    mac_to_str,
)
from aoeprov.client import bulk
from aoeprov.client.window import (
    Counters,
    OneRequest,
    Peer,
    Policy,
    Requests,
    WindowIO,
    new_tags,
    run_window,
)
from aoeprov.errors import AoeErrorReply, AtaError, DeviceTimeout, ProtocolError
from aoeprov.link.transport import Transport

LOG = logging.getLogger(__name__)

LBA28_LIMIT = 1 << 28
MAX_SECTORS_PER_FRAME = 255
# AoEr11: a target advertising 0 sectors per frame means the historical 2
LEGACY_SECTORS_PER_FRAME = 2


@dataclass(frozen=True)
class TargetInfo:
    """One answer to a config query: who serves a shelf.slot and how."""

    shelf: int
    slot: int
    mac: str
    buffer_count: int
    firmware: int
    sectors_per_frame: int
    config: bytes
    aoe_version: int


def payload_sectors(mtu: int, advertised: int) -> int:
    """Sectors per frame the kernel would use on a link of ``mtu`` (research 2.2).

    The kernel falls back to 1024 bytes (2 sectors) when the MTU leaves room for none.
    """
    scnt = advertised or LEGACY_SECTORS_PER_FRAME
    n = min((mtu - ATA_OVERHEAD) // SECTOR_SIZE, scnt, MAX_SECTORS_PER_FRAME)
    return n if n > 0 else LEGACY_SECTORS_PER_FRAME


class AoeClient:
    """Reads, writes and configures one AoE target through a raw-Ethernet transport."""

    def __init__(self, transport: Transport, shelf: int, slot: int, *,
                 target_mac: str | None = None, window: int = 16, timeout: float = 0.25,
                 max_timeout: float = 2.0, retries: int = 8, spin: float = 0.0) -> None:
        self.transport = transport
        self.shelf = shelf
        self.slot = slot
        self.target_mac = mac_to_bytes(target_mac) if target_mac else None
        self.window = window
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.retries = retries
        self.spin = spin  # seconds to look for answers without sleeping (WindowIO)
        self.sectors_per_frame = payload_sectors(transport.mtu, 0)
        self.info: TargetInfo | None = None
        self.tags = new_tags()
        self.counters = Counters()
        self._io: WindowIO | None = None

    @classmethod
    def on_interface(cls, ifname: str, shelf: int, slot: int, **options: Any) -> AoeClient:
        """A discovered client on a raw socket of its own (close it, or use ``with``)."""
        client = cls(EthernetTransport(ifname, responses=True), shelf, slot, **options)
        try:
            client.discover()
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- discovery and raw commands ------------------------------------------

    def discover(self) -> TargetInfo:
        """Ask for our shelf.slot's config and adopt it.

        The query goes to the broadcast MAC (as the kernel sends it) unless the
        target's MAC was given.

        Learns the target's MAC if it was not given, caps the window at the advertised
        buffer count and sets the frame size.
        """
        info = self.config(ConfigCommand.READ)
        if info is None:  # only TEST/TEST_PREFIX can go unanswered on purpose
            raise DeviceTimeout(f"e{self.shelf}.{self.slot} did not answer a config query")
        self.adopt(info)
        return info

    def adopt(self, info: TargetInfo) -> None:
        self.info = info
        self.target_mac = mac_to_bytes(info.mac)
        self.window = max(1, min(self.window, info.buffer_count or 1))
        self.sectors_per_frame = payload_sectors(self.transport.mtu, info.sectors_per_frame)
        LOG.debug("e%d.%d at %s: window %d, %d sectors per frame", self.shelf, self.slot,
                  info.mac, self.window, self.sectors_per_frame)

    @property
    def destination(self) -> bytes:
        """Where requests go: the target's MAC once known, else broadcast."""
        return self.target_mac if self.target_mac is not None else BROADCAST_MAC

    @property
    def peer(self) -> Peer:
        return Peer(self.transport.mac, self.destination, self.shelf, self.slot)

    # counters for the benchmark and for tests that want to see retransmissions
    @property
    def frames_sent(self) -> int:
        return self.counters.sent

    @property
    def frames_received(self) -> int:
        return self.counters.received

    @property
    def retransmits(self) -> int:
        return self.counters.retransmits

    def exchange(self, command: int, body: bytes, *, shelf: int | None = None,
                 slot: int | None = None, dst: bytes | None = None,
                 retries: int | None = None) -> tuple[AoeHeader, bytes]:
        """Send one request and return the response header and argument bytes."""
        peer = Peer(self.transport.mac, self.destination if dst is None else dst,
                    self.shelf if shelf is None else shelf, self.slot if slot is None else slot)
        request = OneRequest(peer, command, body)
        self._run(request, retries)
        assert request.answer is not None
        return AoeHeader.unpack(request.answer), request.answer[AOE_HDR.size:]

    def _run(self, requests: Requests, retries: int | None = None) -> None:
        """Run ``requests`` through the window (its I/O made again when the transport,
        the window or the MTU changed)."""
        io = self._io
        if io is None or io.key != WindowIO.key_of(self.transport, self.window):
            io = self._io = WindowIO(self.transport, self.window, self.spin)
        policy = Policy(self.window, self.timeout, self.max_timeout,
                        self.retries if retries is None else retries)
        run_window(requests, io, policy, self.tags, self.counters)

    # ---- ATA -----------------------------------------------------------------

    def _ata_answer(self, cmd: int, what: str, *, lba: int = 0, count: int = 0,
                    data: bytes = b"", aflags: int = 0, feature: int = 0) -> bytes:
        """The argument of the answer to one ATA command (its ATA header, then data),
        checked for an ATA failure status."""
        body = ATA_HDR.pack(aflags, feature, count, cmd, lba_bytes(lba)) + data
        _header, arg = self.exchange(Command.ATA, body)
        if len(arg) < ATA_HDR.size:
            raise ProtocolError(f"{what}: ATA answer of {AOE_HDR.size + len(arg)} bytes")
        _af, err, _count, status, _lba = ATA_HDR.unpack_from(arg)
        if status & ata.STATUS_FAILURE_MASK:
            raise AtaError(f"e{self.shelf}.{self.slot} {what}", status, err)
        return arg

    def ata(self, cmd: int, *, lba: int = 0, count: int = 0, data: bytes = b"",
            aflags: int = 0, feature: int = 0) -> bytes:
        """Issue one ATA command; returns the response data, raises ``AtaError`` on failure."""
        arg = self._ata_answer(cmd, f"ATA command 0x{cmd:02x}", lba=lba, count=count,
                               data=data, aflags=aflags, feature=feature)
        return arg[ATA_HDR.size:]

    def identify(self) -> Identity:
        data = self.ata(ata.ATA_IDENTIFY, count=1)
        return ata.parse_identify(data[:ata.IDENTIFY_SIZE])

    def _use_lba48(self, lba: int, count: int, lba48: bool | None) -> bool:
        if lba48 is None:
            return True  # every AoE target we know of advertises LBA48, as the kernel expects
        if not lba48 and lba + count > LBA28_LIMIT:
            raise ValueError(f"LBA {lba}+{count} does not fit in 28 bits")
        return lba48

    def _bulk(self, cmd: int, aflags: int, extents: Sequence[tuple[int, int]],
              data: memoryview, what: str) -> None:
        chunks = bulk.split(extents, self.sectors_per_frame)
        self._run(bulk.Transfer(self.peer, cmd, aflags, chunks, data, what))

    def read_into(self, lba: int, buffer: bytearray | memoryview, *,
                  lba48: bool | None = None) -> None:
        """Fill ``buffer`` (whole sectors) from ``lba``; LBA48 commands unless ``lba48=False``."""
        view = memoryview(buffer).cast("B")
        count = _whole_sectors(len(view))
        if count == 0:
            return
        ext = self._use_lba48(lba, count, lba48)
        cmd, aflags = (ata.ATA_READ_EXT, ata.AFLAG_LBA48) if ext else (ata.ATA_READ, 0)
        self._bulk(cmd, aflags, [(lba, count)], view, f"read of {count} sectors at LBA {lba}")

    def read(self, lba: int, count: int, *, lba48: bool | None = None) -> bytes:
        """Read ``count`` sectors from ``lba``; LBA48 commands unless ``lba48=False``."""
        if count <= 0:
            return b""
        buffer = bytearray(count * SECTOR_SIZE)
        self.read_into(lba, buffer, lba48=lba48)
        return bytes(buffer)

    def read_many_into(self, extents: Sequence[tuple[int, int]],
                       buffer: bytearray | memoryview) -> None:
        """Read several (lba, count) extents, laid end to end in ``buffer``, in one window.

        Small scattered reads (the random-read benchmark) keep the target busy this way
        instead of waiting out one round trip per read.
        """
        view = memoryview(buffer).cast("B")
        need = sum(count for _lba, count in extents) * SECTOR_SIZE
        if len(view) < need:
            raise ValueError(f"buffer of {len(view)} bytes for {need} bytes of extents")
        self._bulk(ata.ATA_READ_EXT, ata.AFLAG_LBA48, extents, view,
                   f"read of {len(extents)} extents")

    def read_many(self, extents: Sequence[tuple[int, int]]) -> list[bytes]:
        """``read_many_into`` returning each extent's bytes, in order."""
        buffer = bytearray(sum(count for _lba, count in extents) * SECTOR_SIZE)
        self.read_many_into(extents, buffer)
        out, offset = [], 0
        for _lba, count in extents:
            out.append(bytes(buffer[offset:offset + count * SECTOR_SIZE]))
            offset += count * SECTOR_SIZE
        return out

    def write(self, lba: int, data: bytes | bytearray | memoryview, *,
              lba48: bool | None = None) -> None:
        """Write whole sectors at ``lba``; returns once every frame is acknowledged."""
        view = memoryview(data).cast("B")
        count = _whole_sectors(len(view))
        if count == 0:
            return
        ext = self._use_lba48(lba, count, lba48)
        cmd = ata.ATA_WRITE_EXT if ext else ata.ATA_WRITE
        aflags = ata.AFLAG_WRITE | (ata.AFLAG_LBA48 if ext else 0)
        self._bulk(cmd, aflags, [(lba, count)], view, f"write of {count} sectors at LBA {lba}")

    def write_many(self, extents: Sequence[tuple[int, int]],
                   data: bytes | bytearray | memoryview) -> None:
        """Write several (lba, count) extents, taken end to end from ``data``, in one window.

        Scattered small writes (the real-disk benchmark) keep the target busy this way.
        """
        view = memoryview(data).cast("B")
        need = sum(count for _lba, count in extents) * SECTOR_SIZE
        if len(view) < need:
            raise ValueError(f"{len(view)} bytes of data for {need} bytes of extents")
        self._bulk(ata.ATA_WRITE_EXT, ata.AFLAG_WRITE | ata.AFLAG_LBA48, extents, view,
                   f"write of {len(extents)} extents")

    def flush(self, *, ext: bool = False) -> None:
        """FLUSH CACHE (vblade knows only this form) or, with ``ext``, FLUSH CACHE EXT."""
        if ext:
            self.ata(ata.ATA_FLUSH_EXT, aflags=ata.AFLAG_LBA48)
        else:
            self.ata(ata.ATA_FLUSH)

    def check_power(self) -> int:
        """CHECK POWER MODE: the sector count the target answers (0xFF = active)."""
        arg = self._ata_answer(ata.ATA_CHECK_POWER, "CHECK POWER MODE")
        _af, _err, count, _status, _lba = ATA_HDR.unpack_from(arg)
        return int(count)

    # ---- config string, mask list, reserve list --------------------------------

    def config(self, ccmd: int = ConfigCommand.READ, string: bytes = b"") -> TargetInfo | None:
        """A Query Config command; ``None`` when a TEST/TEST_PREFIX did not match.

        Targets drop non-matching tests silently, so those get two short tries only.
        A SET against a different existing string raises ``AoeErrorReply`` (code 4).
        """
        body = ConfigArg(0, 0, 0, ccmd, string).pack()
        silent_ok = ccmd in (ConfigCommand.TEST, ConfigCommand.TEST_PREFIX)
        try:
            header, arg = self.exchange(Command.CONFIG, body, retries=1 if silent_ok else None)
        except DeviceTimeout:
            if silent_ok:
                return None
            raise
        return target_info(header, arg)

    def mask_list(self) -> tuple[str, ...]:
        return self._mask(MacMaskArg(MaskCommand.READ, 0))

    def mask_edit(self, add: Sequence[str] = (), delete: Sequence[str] = ()) -> tuple[str, ...]:
        dirs = tuple(MacDirective(MaskDirectiveCommand.ADD, mac_to_bytes(m)) for m in add) + tuple(
            MacDirective(MaskDirectiveCommand.DELETE, mac_to_bytes(m)) for m in delete)
        return self._mask(MacMaskArg(MaskCommand.EDIT, 0, dirs))

    def _mask(self, arg: MacMaskArg) -> tuple[str, ...]:
        _header, body = self.exchange(Command.MAC_MASK, arg.pack())
        answer = MacMaskArg.unpack(body)
        if answer.merror:
            raise AoeErrorReply(f"e{self.shelf}.{self.slot} mask list edit failed at directive "
                                f"{len(answer.directives)}", answer.merror)
        return tuple(mac_to_str(d.mac) for d in answer.directives)

    def reserve_list(self) -> tuple[str, ...]:
        return self._reserve(ReserveArg(ReserveCommand.READ))

    def reserve(self, macs: Sequence[str], *, force: bool = False) -> tuple[str, ...]:
        """Set the reserve list (empty = release); ``force`` overrides another holder."""
        rcmd = ReserveCommand.FORCE_SET if force else ReserveCommand.SET
        return self._reserve(ReserveArg(rcmd, tuple(mac_to_bytes(m) for m in macs)))

    def _reserve(self, arg: ReserveArg) -> tuple[str, ...]:
        _header, body = self.exchange(Command.RESERVE, arg.pack())
        return tuple(mac_to_str(m) for m in ReserveArg.unpack(body).macs)


def _whole_sectors(size: int) -> int:
    if size % SECTOR_SIZE:
        raise ValueError(f"{size} bytes is not a whole number of sectors")
    return size // SECTOR_SIZE


def target_info(header: AoeHeader, body: bytes) -> TargetInfo:
    """The config answer in ``body`` (the bytes after the AoE header)."""
    frame = decode_frame(header.pack() + body)
    arg = frame.arg
    if not isinstance(arg, ConfigArg):
        raise ProtocolError(f"expected a config answer, got command {header.command}")
    return TargetInfo(shelf=header.shelf, slot=header.slot, mac=mac_to_str(header.src),
                      buffer_count=arg.buffer_count, firmware=arg.firmware,
                      sectors_per_frame=arg.sectors_per_frame, config=arg.config,
                      aoe_version=header.version)
