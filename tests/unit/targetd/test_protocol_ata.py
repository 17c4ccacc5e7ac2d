"""ATA commands through the engine: data in, frames out."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import AtaArg, Command

from .frames import (
    CLIENT_MAC,
    LENGTH,
    SHELF,
    SLOT,
    TARGET_MAC,
    FakeLink,
    Harness,
    ata_request,
    request,
)

FAILED = ata.STATUS_DRDY | ata.STATUS_ERR


def test_identify_reports_the_export_size_with_lba48(target: Harness) -> None:
    reply = target.one(ata_request(ata.ATA_IDENTIFY, lba48=False, tag=77))
    assert (reply.header.shelf, reply.header.slot, reply.header.tag) == (SHELF, SLOT, 77)
    assert (reply.header.dst, reply.header.src) == (CLIENT_MAC, TARGET_MAC)
    assert isinstance(reply.arg, AtaArg) and reply.arg.cmd_status == ata.STATUS_DRDY
    ident = ata.parse_identify(reply.arg.data)
    assert ident.sectors == LENGTH and ident.lba48
    # unique per export and host (a digest of the host), the same on every link
    assert ident.serial.startswith(f"{SHELF}.{SLOT}:") and len(ident.serial) == 20
    assert ident.serial == target.engine.exports[0].serial
    assert ident.model == "aoeprov built-in AoE target"


def test_identify_padded_with_junk_is_answered(target: Harness) -> None:
    reply = target.ata(ata_request(ata.ATA_IDENTIFY) + b"\x5a" * 1000)
    assert len(reply.data) == 512


def test_write_then_read_lba48(target: Harness) -> None:
    data = os.urandom(1024)
    before = target.outside()
    assert target.ata(ata_request(ata.ATA_WRITE_EXT, 30, 2, data)).cmd_status == ata.STATUS_DRDY
    assert target.inside()[30 * 512:32 * 512] == data
    assert target.outside() == before
    reply = target.ata(ata_request(ata.ATA_READ_EXT, 30, 2))
    assert reply.cmd_status == ata.STATUS_DRDY and reply.err_feature == 0
    assert reply.data == data
    counters = target.export.counters
    assert (counters.reads, counters.writes, counters.bytes_read, counters.bytes_written) == (
        1, 1, 1024, 1024)


def test_lba28_addresses_are_masked_to_28_bits(target: Harness) -> None:
    # the kernel puts device/head bits (0xE0) into lba byte 3 for LBA28 commands
    data = b"\x42" * 512
    lba = 5 | (0xE0 << 24)
    assert target.ata(ata_request(ata.ATA_WRITE, lba, 1, data, lba48=False)).cmd_status == 0x40
    assert target.inside()[5 * 512:6 * 512] == data
    assert target.ata(ata_request(ata.ATA_READ, lba, 1, lba48=False)).data == data


def test_write_ignores_ethernet_trailer(target: Harness) -> None:
    before = target.outside()
    target.ata(ata_request(ata.ATA_WRITE_EXT, LENGTH - 1, 1, b"\x01" * 512) + b"\xff" * 100)
    assert target.inside()[-512:] == b"\x01" * 512
    assert target.outside() == before


def test_read_request_padded_to_60_bytes(target: Harness) -> None:
    frame = ata_request(ata.ATA_READ_EXT, 0, 2)
    assert len(frame) == 36
    assert len(target.ata(frame + bytes(24)).data) == 1024


@pytest.mark.parametrize("opcode, lba, count", [
    (ata.ATA_READ_EXT, LENGTH, 1),
    (ata.ATA_READ_EXT, LENGTH - 1, 2),
    (ata.ATA_WRITE_EXT, LENGTH - 1, 2),
    (ata.ATA_READ_EXT, (1 << 48) - 1, 1),
])
def test_out_of_range_is_idnf_in_the_ata_status(target: Harness, opcode: int, lba: int,
                                                count: int) -> None:
    before = target.path.read_bytes()
    data = b"\x07" * (count * 512) if opcode == ata.ATA_WRITE_EXT else b""
    reply = target.one(ata_request(opcode, lba, count, data))
    assert reply.header.is_response and not reply.header.is_error
    assert isinstance(reply.arg, AtaArg)
    assert (reply.arg.cmd_status, reply.arg.err_feature) == (FAILED, ata.ERR_IDNF)
    assert reply.arg.data == b""
    assert target.path.read_bytes() == before


def test_write_to_read_only_export_is_aborted(make_target: Callable[..., Harness]) -> None:
    target = make_target(read_only=True)
    before = target.path.read_bytes()
    reply = target.ata(ata_request(ata.ATA_WRITE_EXT, 0, 1, b"\x01" * 512))
    assert (reply.cmd_status, reply.err_feature) == (FAILED, ata.ERR_ABRT)
    assert target.path.read_bytes() == before
    assert target.ata(ata_request(ata.ATA_READ_EXT, 0, 1)).cmd_status == ata.STATUS_DRDY


def test_unknown_ata_command_is_aborted(target: Harness) -> None:
    reply = target.ata(ata_request(0xB0))  # SMART
    assert (reply.cmd_status, reply.err_feature) == (FAILED, ata.ERR_ABRT)
    assert target.export.counters.ata_errors == 1


def test_check_power_mode_answers_active(target: Harness) -> None:
    reply = target.ata(ata_request(ata.ATA_CHECK_POWER, count=0))
    assert (reply.cmd_status, reply.sector_count) == (ata.STATUS_DRDY, 0xFF)


@pytest.mark.parametrize("opcode", [ata.ATA_FLUSH, ata.ATA_FLUSH_EXT])
def test_flush_syncs_the_backing_file(target: Harness, opcode: int,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    assert target.ata(ata_request(opcode, count=0)).cmd_status == ata.STATUS_DRDY
    assert synced == [target.export.fd]


def test_read_larger_than_the_link_carries_is_aborted(target: Harness) -> None:
    # MTU 1500 carries 2 sectors; the reply for 3 would not fit in a frame
    reply = target.ata(ata_request(ata.ATA_READ_EXT, 0, 3))
    assert (reply.cmd_status, reply.err_feature) == (FAILED, ata.ERR_ABRT)
    target.link = FakeLink(mtu=9000)
    assert len(target.ata(ata_request(ata.ATA_READ_EXT, 0, 17)).data) == 17 * 512


def test_short_write_is_aborted_and_writes_nothing(target: Harness) -> None:
    before = target.path.read_bytes()
    frame = ata_request(ata.ATA_WRITE_EXT, 0, 2, b"\x09" * 1024)[:-100]
    reply = target.ata(frame)
    assert (reply.cmd_status, reply.err_feature) == (FAILED, ata.ERR_ABRT)
    assert target.path.read_bytes() == before


def test_duplicate_request_under_a_new_tag_is_served_again(target: Harness) -> None:
    data = b"\x33" * 512
    first = target.one(ata_request(ata.ATA_WRITE_EXT, 3, 1, data, tag=1))
    second = target.one(ata_request(ata.ATA_WRITE_EXT, 3, 1, data, tag=2))
    assert (first.header.tag, second.header.tag) == (1, 2)
    reads = target.send(ata_request(ata.ATA_READ_EXT, 3, 1, tag=3),
                        ata_request(ata.ATA_READ_EXT, 3, 1, tag=4))
    assert [r.header.tag for r in reads] == [3, 4]
    assert all(isinstance(r.arg, AtaArg) and r.arg.data == data for r in reads)


def test_sync_writes_are_synced_before_the_replies(make_target: Callable[..., Harness],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = make_target(write_mode="sync")
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    frames = [ata_request(ata.ATA_WRITE_EXT, i, 1, bytes([i]) * 512) for i in range(8)]
    replies = target.send(*frames)
    assert len(replies) == 8
    assert synced == [target.export.fd]  # one group commit for the whole batch


def test_failed_sync_turns_write_replies_into_ata_errors(make_target: Callable[..., Harness],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = make_target(write_mode="sync")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    replies = target.send(ata_request(ata.ATA_WRITE_EXT, 0, 1, b"\x01" * 512),
                          ata_request(ata.ATA_READ_EXT, 0, 1))
    read, write = (r.arg for r in replies)  # sync write replies leave after the commit
    assert isinstance(write, AtaArg) and isinstance(read, AtaArg)
    assert (write.cmd_status, write.err_feature) == (FAILED, ata.ERR_ABRT)
    assert read.cmd_status == ata.STATUS_DRDY


def test_ata_from_outside_the_reserve_list_is_refused(target: Harness) -> None:
    target.export.reserve = [bytes.fromhex("020000000009")]
    reply = target.one(ata_request(ata.ATA_READ_EXT, 0, 1))
    assert reply.header.is_error and reply.header.error == 6
    # IDENTIFY stays possible, as in vblade
    assert len(target.ata(ata_request(ata.ATA_IDENTIFY)).data) == 512


def test_frame_too_short_for_an_ata_header_is_dropped(target: Harness) -> None:
    assert target.send(request(Command.ATA, b"\x00" * 5)) == []
    assert target.engine.counters.malformed == 1


def test_immediate_replies_go_to_send_and_sync_ones_after_commit(
        make_target: Callable[..., Harness]) -> None:
    target = make_target(write_mode="sync")
    sent: list[bytes] = []
    frames = [ata_request(ata.ATA_READ_EXT, 0, 1), ata_request(ata.ATA_WRITE_EXT, 0, 1, b"1" * 512)]
    deferred = target.engine.handle_batch(frames, target.link, lambda r: sent.append(bytes(r)))
    assert len(sent) == 1 and len(deferred) == 1  # the read at once, the write after fdatasync


def test_a_failing_link_gets_its_replies_back(target: Harness) -> None:
    def down(reply: bytes | bytearray) -> None:
        raise OSError(100, "Network is down")

    frames = [ata_request(ata.ATA_READ_EXT, 0, 1), ata_request(ata.ATA_READ_EXT, 1, 1)]
    assert len(target.engine.handle_batch(frames, target.link, down)) == 2
