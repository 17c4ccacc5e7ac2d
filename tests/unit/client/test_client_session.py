"""AoeClient against a scripted in-memory peer: framing, window, retransmission, errors."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    ATA_HDR,
    SECTOR_SIZE,
    USER_TAG_BIT,
    AoeErrorCode,
    AtaArg,
    ConfigCommand,
    Frame,
    mac_to_str,
)
from aoeprov.client import AoeClient, payload_sectors
from aoeprov.errors import AoeErrorReply, AtaError, DeviceTimeout, ProtocolError

from .fake import TARGET_MAC, FakeTarget, Peer, error_reply


def client_for(fake: FakeTarget, **options: object) -> AoeClient:
    options = {"timeout": 0.01, "max_timeout": 0.02, "retries": 3, **options}
    client = AoeClient(fake, 0, 1, **options)  # type: ignore[arg-type]
    client.discover()
    return client


@pytest.mark.parametrize(("mtu", "advertised", "expected"), [
    (1500, 0, 2),       # 0 advertised means the historical 2
    (1500, 255, 2),     # 1464 // 512
    (9000, 255, 17),    # 8964 // 512: the kernel's 8704-byte payload
    (9000, 8, 8),       # the target's limit wins
    (65536, 255, 127),  # loopback
    (500, 255, 2),      # no room at all: the kernel falls back to 1024 bytes
])
def test_payload_sectors_follows_the_kernel_formula(mtu, advertised, expected):
    assert payload_sectors(mtu, advertised) == expected


def test_discover_adopts_mac_window_and_frame_size():
    fake = FakeTarget(Peer(0, 1, buffer_count=8, sectors_per_frame=17), mtu=9000)
    client = client_for(fake, window=16)
    assert client.info is not None
    assert client.info.mac == mac_to_str(TARGET_MAC)
    assert client.target_mac == TARGET_MAC
    assert client.window == 8
    assert client.sectors_per_frame == 17
    # the config query went to the broadcast MAC, as the kernel sends it
    assert fake.requests[0].header.dst == b"\xff" * 6


def test_tags_are_unique_and_in_the_userland_tag_space():
    fake = FakeTarget()
    client = client_for(fake)
    client.read(0, 40)
    tags = [r.header.tag for r in fake.requests]
    assert all(t & USER_TAG_BIT for t in tags)
    assert len(set(tags)) == len(tags)


def test_large_io_is_split_into_frames_of_the_negotiated_size():
    fake = FakeTarget(Peer(0, 1, sectors_per_frame=2))
    client = client_for(fake)
    data = os.urandom(7 * SECTOR_SIZE)
    client.write(3, data)
    writes = [r.arg for r in fake.requests if isinstance(r.arg, AtaArg)]
    assert [(a.lba, a.sector_count) for a in writes] == [(3, 2), (5, 2), (7, 2), (9, 1)]
    assert all(a.cmd_status == ata.ATA_WRITE_EXT for a in writes)
    assert all(a.aflags == ata.AFLAG_LBA48 | ata.AFLAG_WRITE for a in writes)
    assert client.read(3, 7) == data
    assert fake.peers[0].disk[3 * SECTOR_SIZE:10 * SECTOR_SIZE] == data


def test_lba28_commands_on_request():
    fake = FakeTarget()
    client = client_for(fake)
    client.write(10, bytes(SECTOR_SIZE), lba48=False)
    client.read(10, 1, lba48=False)
    last_two = [r.arg for r in fake.requests[-2:]]
    assert [(a.cmd_status, a.aflags) for a in last_two] == [(ata.ATA_WRITE, ata.AFLAG_WRITE),
                                                            (ata.ATA_READ, 0)]
    with pytest.raises(ValueError):
        client.read((1 << 28) - 1, 2, lba48=False)


def test_window_keeps_that_many_requests_in_flight():
    fake = FakeTarget(Peer(0, 1, buffer_count=16))
    client = client_for(fake, window=4, timeout=1.0)
    fake.hold_until = 4
    client.read(0, 64)
    assert fake.max_held == 4
    assert client.retransmits == 0


def test_a_lost_frame_is_sent_again_under_a_new_tag():
    fake = FakeTarget()
    client = client_for(fake)
    first = len(fake.requests)
    fake.drop = lambda n, _frame: n == first + 1  # lose the second read frame once
    data = client.read(0, 8)
    assert data == bytes(8 * SECTOR_SIZE)
    assert client.retransmits == 1
    reads = [r for r in fake.requests[first:]]
    lost, again = reads[1], reads[-1]
    assert lost.arg == again.arg
    assert lost.header.tag != again.header.tag


def test_a_silent_peer_raises_device_timeout_after_the_retries():
    fake = FakeTarget()
    client = client_for(fake, retries=3)
    first = len(fake.requests)
    fake.drop = lambda _n, _frame: True
    with pytest.raises(DeviceTimeout, match="after 4 tries"):
        client.read(0, 1)
    assert len(fake.requests) - first == 4


def test_ata_error_status_raises_ata_error():
    fake = FakeTarget(Peer(0, 1, sectors=100))
    client = client_for(fake)
    with pytest.raises(AtaError) as err:
        client.read(99, 2)
    assert err.value.error == ata.ERR_IDNF
    assert err.value.status & ata.STATUS_ERR
    with pytest.raises(AtaError) as err:
        client.ata(0xB0)
    assert err.value.error == ata.ERR_ABRT


def test_error_flag_raises_aoe_error_reply():
    fake = FakeTarget()
    client = client_for(fake)

    def refuse(_n: int, frame: Frame) -> bool:
        fake.deliver(error_reply(frame, AoeErrorCode.RESERVED))
        return True

    fake.drop = refuse
    with pytest.raises(AoeErrorReply) as err:
        client.write(0, bytes(SECTOR_SIZE))
    assert err.value.code == AoeErrorCode.RESERVED


def test_answers_from_strangers_and_for_stale_tags_are_ignored():
    fake = FakeTarget()
    client = client_for(fake)
    stranger = bytes.fromhex("02000000bbbb")

    def confuse(_n: int, frame: Frame) -> bool:
        assert isinstance(frame.arg, AtaArg)
        bogus = AtaArg(0, 0, 0, ata.STATUS_DRDY, 0, b"\x66" * SECTOR_SIZE)
        reply = frame.header.reply(TARGET_MAC)
        fake.deliver(Frame(frame.header.reply(stranger), bogus).pack())  # wrong source
        fake.deliver(Frame(replace(reply, tag=reply.tag ^ 1), bogus).pack())  # unknown tag
        fake.deliver(Frame(replace(reply, dst=stranger), bogus).pack())  # someone else's
        fake.deliver(Frame(replace(reply, slot=9), bogus).pack())  # another slot
        return False  # and then the real answer

    fake.drop = confuse
    assert client.read(0, 1) == bytes(SECTOR_SIZE)
    assert client.retransmits == 0


def test_short_ata_answers_are_protocol_errors():
    fake = FakeTarget()
    client = client_for(fake)

    def truncate(_n: int, frame: Frame) -> bool:
        header = frame.header.reply(TARGET_MAC)
        fake.deliver(header.pack() + ATA_HDR.pack(0, 0, 0, ata.STATUS_DRDY, bytes(6)) + b"x")
        return True

    fake.drop = truncate
    with pytest.raises(ProtocolError, match="read at LBA 0: 1 data bytes for 2 sectors"):
        client.read(0, 2)


def test_config_test_that_does_not_match_returns_none():
    fake = FakeTarget(Peer(0, 1, config=b"owner=a"))
    client = client_for(fake)
    assert client.config().config == b"owner=a"
    fake.drop = lambda _n, frame: getattr(frame.arg, "ccmd", None) == ConfigCommand.TEST
    assert client.config(ConfigCommand.TEST, b"owner=b") is None


def test_identify_parses_size():
    fake = FakeTarget(Peer(0, 1, sectors=12345))
    identity = client_for(fake).identify()
    assert identity.sectors == 12345
    assert identity.lba48


def test_write_needs_whole_sectors():
    client = client_for(FakeTarget())
    with pytest.raises(ValueError):
        client.write(0, b"abc")


def test_read_many_returns_each_extent_in_order():
    fake = FakeTarget()
    client = client_for(fake)
    data = os.urandom(100 * SECTOR_SIZE)
    client.write(0, data)
    extents = [(50, 3), (0, 1), (97, 3), (10, 8)]
    got = client.read_many(extents)
    assert got == [data[lba * SECTOR_SIZE:(lba + n) * SECTOR_SIZE] for lba, n in extents]


def test_read_into_and_read_many_into_fill_the_callers_buffer():
    fake = FakeTarget(Peer(0, 1, sectors_per_frame=2))
    client = client_for(fake)
    data = os.urandom(20 * SECTOR_SIZE)
    client.write(0, memoryview(data))  # any buffer, not only bytes
    into = bytearray(7 * SECTOR_SIZE)
    client.read_into(5, into)
    assert into == data[5 * SECTOR_SIZE:12 * SECTOR_SIZE]
    many = bytearray(4 * SECTOR_SIZE)
    client.read_many_into([(19, 1), (0, 3)], many)
    assert many == data[19 * SECTOR_SIZE:] + data[:3 * SECTOR_SIZE]
    with pytest.raises(ValueError, match="buffer of 512 bytes for 1024"):
        client.read_many_into([(0, 2)], bytearray(SECTOR_SIZE))
    with pytest.raises(ValueError, match="whole number of sectors"):
        client.read_into(0, bytearray(100))
