"""The target's protocol logic: request frames in, response frames out.

No sockets here: ``TargetProtocol.handle_batch(frames, link)`` takes the frames one
link delivered and returns the frames to send back on it, so unit tests drive
it with bytes. Rules (AoEr11 as the Linux initiator and vblade use it):

- Frames with the response flag, for another MAC, or for a shelf.slot not served
  on that link are ignored. When an export's mask list is non-empty, frames from
  other MACs are ignored silently.
- Broadcast shelf or slot: only config queries (read, test, prefix) are
  answered, by every matching export with its real shelf.slot. ATA, set, mask
  and reserve commands on a wildcard address are ignored, so one frame can never
  write to every export.
- ATA failures are reported in the ATA status (ERR+ABRT, ERR+IDNF), never with
  the AoE error flag, which the Linux driver drops before retransmitting for
  180 s. That includes requests larger than the link can carry and writes whose
  data is short. The AoE error flag is used only where the protocol defines it:
  unknown command, bad config/mask/reserve argument, config string present,
  unsupported version, and ATA from a MAC outside a non-empty reserve list
  (IDENTIFY exempt, as in vblade).
- Writes to a ``sync`` export are made durable with one ``fdatasync`` per batch
  before any response of that batch leaves (group commit).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Protocol

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    AOE_HDR,
    ATA_FRAME,
    ATA_HDR,
    ATA_OVERHEAD,
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    CMD_STATUS_OFFSET,
    COMMAND_OFFSET,
    CONFIG_HDR,
    ERR_FEATURE_OFFSET,
    ETH_P_AOE,
    FLAG_ERROR,
    FLAG_RESPONSE,
    MASK_HDR,
    MAX_CONFIG_STRING,
    RESERVE_HDR,
    RESPONSE_VERFL,
    SECTOR_SIZE,
    VENDOR_COMMAND_MIN,
    VERSION_BITS,
    VERSION_MASK,
    AoeErrorCode,
    Command,
    ConfigArg,
    ConfigCommand,
    MacDirective,
    MacMaskArg,
    MaskCommand,
    MaskDirectiveCommand,
    MaskError,
    ReserveArg,
    ReserveCommand,
)
from aoeprov.errors import ProtocolError
from aoeprov.targetd.export import MAX_MASKS, Export, sync_exports

LOG = logging.getLogger(__name__)

# a received frame: bytes, or a view into a receive buffer (valid for one batch)
Frame = bytes | bytearray | memoryview

FIRMWARE_VERSION = 0x0010  # aoeprov 0.1
# plain ints for the per-frame path (enum member lookups cost more than they say)
CMD_ATA, CMD_CONFIG, CMD_MASK, CMD_RESERVE = (int(c) for c in Command)
OP_IDENTIFY, OP_CHECK_POWER = ata.ATA_IDENTIFY, ata.ATA_CHECK_POWER
STATUS_DRDY, STATUS_ERR = ata.STATUS_DRDY, ata.STATUS_ERR
ERR_ABRT, ERR_IDNF = ata.ERR_ABRT, ata.ERR_IDNF
AFLAG_LBA48, LBA28_MASK = ata.AFLAG_LBA48, ata.LBA28_MASK
READS = frozenset((ata.ATA_READ, ata.ATA_READ_EXT))
WRITES = frozenset((ata.ATA_WRITE, ata.ATA_WRITE_EXT))
FLUSHES = frozenset((ata.ATA_FLUSH, ata.ATA_FLUSH_EXT))
# how much of a request's argument an error response echoes
ERROR_ECHO: dict[int, int] = {Command.ATA: ATA_HDR.size, Command.CONFIG: CONFIG_HDR.size,
                              Command.MAC_MASK: MASK_HDR.size, Command.RESERVE: RESERVE_HDR.size}
STATUS_FAILED = ata.STATUS_DRDY | ata.STATUS_ERR


class Link(Protocol):
    ifname: str
    mac: bytes
    mtu: int


@dataclass(slots=True)
class ProtocolCounters:
    frames_in: int = 0        # every frame handed to the engine
    not_ours: int = 0         # other MAC, shelf.slot not served here, responses
    malformed: int = 0        # too short to act on
    broadcast_ignored: int = 0
    vendor_ignored: int = 0
    internal_errors: int = 0  # exceptions while handling a frame (bugs; logged)

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def sectors_per_frame(mtu: int) -> int:
    return max(0, min(255, (mtu - ATA_OVERHEAD) // SECTOR_SIZE))


class TargetProtocol:
    """Serves a set of exports; each is reachable on its configured interfaces."""

    def __init__(self, exports: Iterable[Export] = (), *,
                 firmware: int = FIRMWARE_VERSION) -> None:
        self.firmware = firmware
        self.counters = ProtocolCounters()
        self.exports: list[Export] = []
        # ifname -> (shelf << 8 | slot) -> export
        self._tables: dict[str, dict[int, Export]] = {}
        # (export, reply) of sync writes not yet made durable: sent after commit()
        self._sync_replies: list[tuple[Export, bytes]] = []
        # called when a peer changed an export's config string, mask or reserve list,
        # before the reply saying so is sent (the server persists the change there)
        self.on_state_change: Callable[[Export], None] | None = None
        # FLUSH on an export on a disk: reply deferred like a sync write, the fdatasync
        # left to the caller (target.batch runs it off the frame loop)
        self.defer_disk_sync = False
        self.set_exports(exports)

    def set_exports(self, exports: Iterable[Export]) -> None:
        self.exports = list(exports)
        tables: dict[str, dict[int, Export]] = {}
        for exp in self.exports:
            for ifname in exp.config.interfaces:
                tables.setdefault(ifname, {})[exp.shelf << 8 | exp.slot] = exp
        self._tables = tables

    def table(self, ifname: str) -> dict[int, Export]:
        """The exports on ``ifname`` by ``shelf << 8 | slot`` (do not modify)."""
        return self._tables.get(ifname, {})

    @property
    def interfaces(self) -> set[str]:
        return set(self._tables)

    # -- batches -------------------------------------------------------------

    def handle_batch(self, frames: Iterable[Frame], link: Link,
                     send: Callable[[bytes | bytearray], None] | None = None,
                     ) -> list[bytes | bytearray]:
        """Handle ``frames`` from ``link``; returns the replies still to be sent.

        With ``send``, every reply that may leave at once is passed to it as soon
        as it is built (so the initiator's pipeline keeps moving) and only the
        replies to sync writes are returned, after their data is durable.
        """
        out: list[bytes | bytearray] = []
        handle = self.handle
        for frame in frames:
            try:
                handle(frame, link, out)
            except Exception:
                # a bug must not stop a target that other hosts depend on
                self.counters.internal_errors += 1
                LOG.exception("internal error handling a frame of %d bytes on %s",
                              len(frame), link.ifname)
            if send is not None and out:
                try:
                    for reply in out:
                        send(reply)
                except OSError as exc:
                    # the link failed: stop sending; the caller gets the rest and the error
                    LOG.debug("send on %s failed: %s", link.ifname, exc)
                    send = None
                    continue
                out.clear()
        if self._sync_replies:
            out.extend(self.commit())
        return out

    @property
    def pending_sync(self) -> bool:
        """Replies to sync writes are waiting for ``commit``."""
        return bool(self._sync_replies)

    def take_sync_replies(self) -> list[tuple[Export, bytes]]:
        """The replies waiting for ``commit``, handed over to a caller that syncs itself."""
        pending, self._sync_replies = self._sync_replies, []
        return pending

    def commit(self) -> list[bytes]:
        """Make the writes of sync exports durable; returns their replies.

        A reply whose data could not be synced is turned into an ATA error, so
        an initiator never hears "written" for data that may not be on stable
        storage.
        """
        if not self._sync_replies:
            return []
        pending, self._sync_replies = self._sync_replies, []
        broken = sync_exports(exp for exp, _reply in pending)
        replies = []
        for exp, reply in pending:
            if exp in broken:
                exp.counters.ata_errors += 1
                reply = as_failed(reply)
            replies.append(reply)
        return replies

    def announcements(self, link: Link, exports: Iterable[Export] | None = None) -> list[bytes]:
        """Unsolicited config responses for the exports on ``link`` (all, or ``exports``).

        Broadcast, or unicast to each MAC of a non-empty mask list, as vblade does.
        """
        chosen = None if exports is None else {id(e) for e in exports}
        out = []
        for exp in self._tables.get(link.ifname, {}).values():
            if chosen is not None and id(exp) not in chosen:
                continue
            body = self._config_body(exp, ConfigCommand.READ, link)
            for dst in exp.masks or [BROADCAST_MAC]:
                out.append(AOE_HDR.pack(dst, link.mac, ETH_P_AOE, RESPONSE_VERFL, 0, exp.shelf,
                                        exp.slot, Command.CONFIG, 0) + body)
        return out

    # -- one frame ------------------------------------------------------------

    def handle(self, frame: Frame, link: Link, out: list[bytes | bytearray]) -> None:
        self.counters.frames_in += 1
        size = len(frame)
        if size >= ATA_FRAME.size:
            (dst, src, ethertype, verfl, _err, shelf, slot, cmd, tag, aflags, _feature, count,
             opcode, lba_raw) = ATA_FRAME.unpack_from(frame)
        elif size >= AOE_HDR.size:
            dst, src, ethertype, verfl, _err, shelf, slot, cmd, tag = AOE_HDR.unpack_from(frame)
            aflags = count = opcode = 0
            lba_raw = b""
        else:
            self.counters.malformed += 1
            return
        if verfl & FLAG_RESPONSE or ethertype != ETH_P_AOE or (
                dst != link.mac and dst != BROADCAST_MAC):
            self.counters.not_ours += 1
            return
        exp = self._export_for(frame, src, shelf, slot, cmd, verfl, link, out)
        if exp is None:
            return
        exp.counters.frames_in += 1
        reply: bytes | bytearray | None
        if verfl & VERSION_MASK != VERSION_BITS:
            reply = self._error(exp, frame, link, AoeErrorCode.UNSUPPORTED_VERSION)
        elif cmd == CMD_ATA:
            if size < ATA_FRAME.size:
                self.counters.malformed += 1
                return
            if exp.reserve and src not in exp.reserve and opcode != OP_IDENTIFY:
                reply = self._error(exp, frame, link, AoeErrorCode.RESERVED)
            else:  # None: a sync write, answered after commit()
                reply = self._ata(exp, frame, src, tag, aflags, count, opcode, lba_raw, link)
        elif cmd >= VENDOR_COMMAND_MIN:
            self.counters.vendor_ignored += 1
            return
        else:
            reply = self._control(exp, frame, src, cmd, link)
        if reply is not None:
            out.append(reply)
        exp.counters.frames_out += 1

    def _export_for(self, frame: Frame, src: bytes, shelf: int, slot: int, cmd: int,
                    verfl: int, link: Link, out: list[bytes | bytearray]) -> Export | None:
        """The export a frame on ``link`` is for; None when it is for none (a wildcard
        address is answered here, by every export it matches) or masked from ``src``."""
        table = self._tables.get(link.ifname)
        exp = table.get(shelf << 8 | slot) if table else None
        if exp is None:
            if table and (shelf == BROADCAST_SHELF or slot == BROADCAST_SLOT):
                self._broadcast(frame, src, shelf, slot, cmd, verfl, link, table, out)
            else:
                self.counters.not_ours += 1
            return None
        if exp.masks and src not in exp.masks:
            exp.counters.masked += 1
            return None
        return exp

    def _control(self, exp: Export, frame: Frame, src: bytes, cmd: int,
                 link: Link) -> bytes | None:
        """The answer to a config, mask or reserve command, or to an unknown one.

        A command that changed the export's config string, mask or reserve list calls
        ``on_state_change`` before its reply can leave.
        """
        state = (exp.config_string, list(exp.masks), list(exp.reserve))
        if cmd == CMD_CONFIG:
            reply = self._config(exp, frame, link)
        elif cmd == CMD_MASK:
            reply = self._mask(exp, frame, link)
        elif cmd == CMD_RESERVE:
            reply = self._reserve(exp, frame, src, link)
        else:
            return self._error(exp, frame, link, AoeErrorCode.BAD_COMMAND)
        if (exp.config_string, exp.masks, exp.reserve) != state:
            self._changed(exp)
        return reply

    def _changed(self, exp: Export) -> None:
        if self.on_state_change is not None:
            self.on_state_change(exp)

    def _reply_header(self, exp: Export, frame: Frame, link: Link, error: int = 0) -> bytes:
        _dst, src, _t, _v, _e, _sh, _sl, cmd, tag = AOE_HDR.unpack_from(frame)
        flags = RESPONSE_VERFL | (FLAG_ERROR if error else 0)
        return AOE_HDR.pack(src, link.mac, ETH_P_AOE, flags, error, exp.shelf, exp.slot, cmd, tag)

    def _error(self, exp: Export, frame: Frame, link: Link, code: int) -> bytes:
        exp.counters.aoe_errors += 1
        cmd = frame[COMMAND_OFFSET]
        echo = ERROR_ECHO.get(cmd, MAX_CONFIG_STRING)
        body = frame[AOE_HDR.size:AOE_HDR.size + min(echo, link.mtu - AOE_HDR.size)]
        return self._reply_header(exp, frame, link, code) + body

    # -- ATA ------------------------------------------------------------------

    def _ata(self, exp: Export, frame: Frame, src: bytes, tag: int, aflags: int, count: int,
             opcode: int, lba_raw: bytes, link: Link) -> bytes | bytearray | None:
        """The reply to an ATA command; None for a sync write (its reply waits for commit)."""
        if opcode in READS or opcode in WRITES:
            lba = int.from_bytes(lba_raw, "little")
            if not aflags & AFLAG_LBA48:
                lba &= LBA28_MASK
            if lba + count > exp.sectors:
                return self._ata_failed(exp, src, tag, aflags, ERR_IDNF, lba_raw, link)
            if opcode in READS:
                return self._read(exp, src, tag, aflags, lba, count, lba_raw, link)
            return self._write(exp, frame, src, tag, aflags, lba, count, lba_raw, link)
        if opcode == OP_IDENTIFY:
            return self._ata_reply(exp, src, tag, aflags, 0, STATUS_DRDY, 0, lba_raw,
                                   link) + exp.identify
        if opcode in FLUSHES:
            return self._flush(exp, src, tag, aflags, lba_raw, link)
        if opcode == OP_CHECK_POWER:
            return self._ata_reply(exp, src, tag, aflags, ata.POWER_ACTIVE, STATUS_DRDY, 0,
                                   lba_raw, link)
        return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)

    def _flush(self, exp: Export, src: bytes, tag: int, aflags: int, lba_raw: bytes,
               link: Link) -> bytes | None:
        """FLUSH CACHE (EXT): the reply once the export's data is durable, or None where
        the caller syncs (``defer_disk_sync``: the reply waits for it like a sync write's)."""
        exp.counters.flushes += 1
        reply = self._ata_reply(exp, src, tag, aflags, 0, STATUS_DRDY, 0, lba_raw, link)
        if exp.on_disk and self.defer_disk_sync:
            # the caller syncs off the frame loop (target.batch) and replies after
            self._sync_replies.append((exp, reply))
            return None
        try:
            os.fdatasync(exp.fd)
        except OSError as exc:
            LOG.warning("export %s: flush failed: %s", exp.label, exc)
            return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)
        return reply

    def _read(self, exp: Export, src: bytes, tag: int, aflags: int, lba: int, count: int,
              lba_raw: bytes, link: Link) -> bytes | bytearray:
        """READ (EXT) of ``count`` sectors in range: the reply with the data."""
        nbytes = count << 9
        if nbytes > link.mtu - ATA_OVERHEAD:
            return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)
        buf = bytearray(ATA_OVERHEAD + nbytes)
        ATA_FRAME.pack_into(buf, 0, src, link.mac, ETH_P_AOE, RESPONSE_VERFL, 0, exp.shelf,
                            exp.slot, CMD_ATA, tag, aflags, 0, 0, STATUS_DRDY, lba_raw)
        if nbytes:
            try:
                exp.read_into(memoryview(buf)[ATA_OVERHEAD:], exp.base + (lba << 9))
            except OSError as exc:
                LOG.warning("export %s: read at sector %d failed: %s", exp.label, lba, exc)
                return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)
        exp.counters.reads += 1
        exp.counters.bytes_read += nbytes
        return buf

    def _write(self, exp: Export, frame: Frame, src: bytes, tag: int, aflags: int, lba: int,
               count: int, lba_raw: bytes, link: Link) -> bytes | None:
        """WRITE (EXT) of ``count`` sectors in range: the reply, or None for a sync export
        (the reply waits in ``_sync_replies`` for ``commit``)."""
        nbytes = count << 9
        if exp.read_only or len(frame) < ATA_OVERHEAD + nbytes:
            return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)
        try:
            if nbytes:
                payload = memoryview(frame)[ATA_OVERHEAD:ATA_OVERHEAD + nbytes]
                exp.write_from(payload, exp.base + (lba << 9))
        except OSError as exc:
            LOG.warning("export %s: write at sector %d failed: %s", exp.label, lba, exc)
            return self._ata_failed(exp, src, tag, aflags, ERR_ABRT, lba_raw, link)
        exp.counters.writes += 1
        exp.counters.bytes_written += nbytes
        reply = self._ata_reply(exp, src, tag, aflags, 0, STATUS_DRDY, 0, lba_raw, link)
        if exp.sync:
            self._sync_replies.append((exp, reply))
            return None
        return reply

    def _ata_failed(self, exp: Export, src: bytes, tag: int, aflags: int, err: int,
                    lba_raw: bytes, link: Link) -> bytes:
        """An ATA failure: status ERR, error ``err`` (ABRT or IDNF), no data."""
        exp.counters.ata_errors += 1
        return self._ata_reply(exp, src, tag, aflags, 0, STATUS_FAILED, err, lba_raw, link)

    def _ata_reply(self, exp: Export, src: bytes, tag: int, aflags: int, count: int, status: int,
                   err: int, lba_raw: bytes, link: Link) -> bytes:
        return ATA_FRAME.pack(src, link.mac, ETH_P_AOE, RESPONSE_VERFL, 0, exp.shelf, exp.slot,
                              CMD_ATA, tag, aflags, err, count, status, lba_raw)

    # -- config ---------------------------------------------------------------

    def _config_body(self, exp: Export, ccmd: int, link: Link) -> bytes:
        return ConfigArg(buffer_count=exp.buffer_count, firmware=self.firmware,
                         sectors_per_frame=sectors_per_frame(link.mtu), ccmd=ccmd,
                         config=exp.config_string).pack()

    def _config(self, exp: Export, frame: Frame, link: Link) -> bytes | None:
        try:
            arg = ConfigArg.unpack(memoryview(frame)[AOE_HDR.size:])
        except ProtocolError:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        error = 0
        current = exp.config_string
        if arg.ccmd == ConfigCommand.READ:
            pass
        elif arg.ccmd == ConfigCommand.TEST:
            if arg.config != current:
                return None
        elif arg.ccmd == ConfigCommand.TEST_PREFIX:
            if not current.startswith(arg.config):
                return None
        elif arg.ccmd == ConfigCommand.SET:
            if current and current != arg.config:
                error = AoeErrorCode.CONFIG_STRING_PRESENT
            else:
                exp.config_string = arg.config
        elif arg.ccmd == ConfigCommand.FORCE_SET:
            exp.config_string = arg.config
        else:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        if error:
            exp.counters.aoe_errors += 1
        return self._reply_header(exp, frame, link, error) + self._config_body(exp, arg.ccmd, link)

    def _broadcast(self, frame: Frame, src: bytes, shelf: int, slot: int, cmd: int, verfl: int,
                   link: Link, table: dict[int, Export],
                   out: list[bytes | bytearray]) -> None:
        if cmd != Command.CONFIG or verfl & VERSION_MASK != VERSION_BITS:
            self.counters.broadcast_ignored += 1
            return
        try:
            ccmd = ConfigArg.unpack(memoryview(frame)[AOE_HDR.size:]).ccmd
        except ProtocolError:
            self.counters.malformed += 1
            return
        if ccmd not in (ConfigCommand.READ, ConfigCommand.TEST, ConfigCommand.TEST_PREFIX):
            self.counters.broadcast_ignored += 1
            return
        for exp in table.values():
            if shelf not in (exp.shelf, BROADCAST_SHELF) or slot not in (exp.slot, BROADCAST_SLOT):
                continue
            if exp.masks and src not in exp.masks:
                exp.counters.masked += 1
                continue
            exp.counters.frames_in += 1
            reply = self._config(exp, frame, link)
            if reply is not None:
                exp.counters.frames_out += 1
                out.append(reply)

    # -- mask list and reserve/release ----------------------------------------

    def _mask(self, exp: Export, frame: Frame, link: Link) -> bytes:
        try:
            arg = MacMaskArg.unpack(memoryview(frame)[AOE_HDR.size:])
        except ProtocolError:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        if arg.mcmd == MaskCommand.EDIT:
            for index, directive in enumerate(arg.directives):
                if directive.dcmd == MaskDirectiveCommand.NOOP:
                    continue
                if directive.dcmd == MaskDirectiveCommand.DELETE:
                    if directive.mac in exp.masks:
                        exp.masks.remove(directive.mac)
                    continue
                if directive.dcmd == MaskDirectiveCommand.ADD:
                    if directive.mac in exp.masks:
                        continue
                    if len(exp.masks) < MAX_MASKS:
                        exp.masks.append(directive.mac)
                        continue
                    merror = MaskError.LIST_FULL
                else:
                    merror = MaskError.BAD_DIRECTIVE
                # vblade's answer: the error, and how many directives were applied
                body = MacMaskArg(arg.mcmd, merror, failed_index=index).pack()
                return self._reply_header(exp, frame, link) + body
        elif arg.mcmd != MaskCommand.READ:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        listing = MacMaskArg(arg.mcmd, MaskError.NONE,
                             tuple(_mask_entry(mac) for mac in exp.masks))
        return self._reply_header(exp, frame, link) + listing.pack()

    def _reserve(self, exp: Export, frame: Frame, src: bytes, link: Link) -> bytes:
        try:
            arg = ReserveArg.unpack(memoryview(frame)[AOE_HDR.size:])
        except ProtocolError:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        if arg.rcmd == ReserveCommand.SET:
            if exp.reserve and src not in exp.reserve:
                return self._error(exp, frame, link, AoeErrorCode.RESERVED)
            exp.reserve = list(arg.macs)
        elif arg.rcmd == ReserveCommand.FORCE_SET:
            exp.reserve = list(arg.macs)
        elif arg.rcmd != ReserveCommand.READ:
            return self._error(exp, frame, link, AoeErrorCode.BAD_ARGUMENT)
        return self._reply_header(exp, frame, link) + ReserveArg(arg.rcmd,
                                                                  tuple(exp.reserve)).pack()

    def stats(self) -> dict[str, object]:
        return {**self.counters.to_json(), "exports": [exp.to_json() for exp in self.exports]}


def as_failed(reply: bytes | bytearray) -> bytes:
    """The same ATA reply with status ERR and error ABRT."""
    failed = bytearray(reply)
    failed[ERR_FEATURE_OFFSET] = ata.ERR_ABRT
    failed[CMD_STATUS_OFFSET] = STATUS_FAILED
    return bytes(failed)


def _mask_entry(mac: bytes) -> MacDirective:
    return MacDirective(MaskDirectiveCommand.NOOP, mac)
