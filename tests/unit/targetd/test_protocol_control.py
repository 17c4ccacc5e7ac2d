"""Config queries, config strings, mask and reserve lists, addressing rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import (
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    AoeErrorCode,
    Command,
    ConfigArg,
    ConfigCommand,
    MacDirective,
    MacMaskArg,
    ReserveArg,
    decode_frame,
)
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import FIRMWARE_VERSION, TargetProtocol

from .frames import (
    CLIENT_MAC,
    OTHER_MAC,
    SHELF,
    SLOT,
    TARGET_MAC,
    FakeLink,
    Harness,
    ata_request,
    config_request,
    make_backing,
    request,
)


def kernel_discovery() -> bytes:
    """What the Linux driver broadcasts: tag 0, all-zero argument, padded to 60 bytes."""
    return request(Command.CONFIG, bytes(36), shelf=BROADCAST_SHELF, slot=BROADCAST_SLOT,
                   dst=BROADCAST_MAC, tag=0)


@pytest.mark.parametrize("mtu, scnt", [(1500, 2), (9000, 17), (65536, 127), (1024 * 200, 255)])
def test_discovery_reply_has_real_address_and_link_payload(target: Harness, mtu: int,
                                                           scnt: int) -> None:
    target.link = FakeLink(mtu=mtu)
    reply = target.one(kernel_discovery())
    assert (reply.header.shelf, reply.header.slot) == (SHELF, SLOT)
    assert (reply.header.dst, reply.header.src, reply.header.tag) == (CLIENT_MAC, TARGET_MAC, 0)
    assert reply.header.is_response and not reply.header.is_error and reply.header.version == 1
    assert reply.arg == ConfigArg(64, FIRMWARE_VERSION, scnt, ConfigCommand.READ, b"")


def test_targeted_query_to_the_broadcast_mac(target: Harness) -> None:
    reply = target.one(config_request(ConfigCommand.READ, dst=BROADCAST_MAC))
    assert isinstance(reply.arg, ConfigArg) and reply.arg.buffer_count == 64


def test_buffer_count_comes_from_the_export(make_target: Callable[..., Harness]) -> None:
    reply = make_target(buffer_count=64).one(kernel_discovery())
    assert isinstance(reply.arg, ConfigArg) and reply.arg.buffer_count == 64


def test_config_string_commands(target: Harness) -> None:
    def config(reply_frames: list) -> bytes | None:  # type: ignore[type-arg]
        if not reply_frames:
            return None
        (reply,) = reply_frames
        assert isinstance(reply.arg, ConfigArg)
        return reply.arg.config

    assert config(target.send(config_request(ConfigCommand.SET, b"owner=a"))) == b"owner=a"
    # set again with the same string is fine; with another it fails with error 4
    assert config(target.send(config_request(ConfigCommand.SET, b"owner=a"))) == b"owner=a"
    (refused,) = target.send(config_request(ConfigCommand.SET, b"owner=b"))
    assert refused.header.is_error and refused.header.error == AoeErrorCode.CONFIG_STRING_PRESENT
    assert isinstance(refused.arg, bytes)
    # test: answered only on an exact match; prefix: only if a prefix
    assert config(target.send(config_request(ConfigCommand.TEST, b"owner=a"))) == b"owner=a"
    assert target.send(config_request(ConfigCommand.TEST, b"owner")) == []
    assert config(target.send(config_request(ConfigCommand.TEST_PREFIX, b"own"))) == b"owner=a"
    assert target.send(config_request(ConfigCommand.TEST_PREFIX, b"x")) == []
    assert config(target.send(config_request(ConfigCommand.FORCE_SET, b"owner=b"))) == b"owner=b"
    assert config(target.send(config_request(ConfigCommand.READ))) == b"owner=b"
    (bad,) = target.send(config_request(9))
    assert bad.header.is_error and bad.header.error == AoeErrorCode.BAD_ARGUMENT


def test_config_string_longer_than_1024_is_a_bad_argument(target: Harness) -> None:
    arg = ConfigArg(0, 0, 0, ConfigCommand.FORCE_SET).pack()[:6] + (1025).to_bytes(2, "big")
    reply = target.one(request(Command.CONFIG, arg + b"x" * 1025))
    assert reply.header.is_error and reply.header.error == AoeErrorCode.BAD_ARGUMENT
    assert target.export.config_string == b""


def test_broadcast_answers_config_only(target: Harness) -> None:
    before = target.path.read_bytes()
    bcast = {"shelf": BROADCAST_SHELF, "slot": BROADCAST_SLOT, "dst": BROADCAST_MAC}
    assert target.send(ata_request(ata.ATA_WRITE_EXT, 0, 1, b"\x01" * 512, **bcast)) == []
    assert target.send(ata_request(ata.ATA_IDENTIFY, **bcast)) == []
    assert target.send(config_request(ConfigCommand.FORCE_SET, b"mine", **bcast)) == []
    assert target.send(request(Command.RESERVE, ReserveArg(2, (OTHER_MAC,)).pack(),
                               **bcast)) == []  # type: ignore[arg-type]
    assert target.path.read_bytes() == before
    assert target.export.config_string == b"" and target.export.reserve == []
    assert target.engine.counters.broadcast_ignored == 4
    # a wildcard slot on our shelf answers, a wildcard on another shelf does not
    assert len(target.send(config_request(0, shelf=SHELF, slot=BROADCAST_SLOT))) == 1
    assert target.send(config_request(0, shelf=SHELF + 1, slot=BROADCAST_SLOT)) == []


def test_broadcast_test_prefix_selects_exports(target: Harness) -> None:
    target.export.config_string = b"group=a"
    bcast = {"shelf": BROADCAST_SHELF, "slot": BROADCAST_SLOT, "dst": BROADCAST_MAC}
    assert len(target.send(config_request(ConfigCommand.TEST_PREFIX, b"group=",
                                          **bcast))) == 1  # type: ignore[arg-type]
    assert target.send(config_request(ConfigCommand.TEST_PREFIX, b"group=b",
                                      **bcast)) == []  # type: ignore[arg-type]


def test_frames_not_for_us_are_ignored(target: Harness) -> None:
    ignored = [
        ata_request(ata.ATA_IDENTIFY, verfl=0x18),             # a response
        ata_request(ata.ATA_IDENTIFY, dst=OTHER_MAC),          # unicast to another MAC
        ata_request(ata.ATA_IDENTIFY, shelf=SHELF + 1),        # another shelf.slot
        ata_request(ata.ATA_IDENTIFY, slot=SLOT + 1),
        request(0xF5, b"vendor"),                              # vendor specific
        b"\x00" * 20,                                          # runt
    ]
    assert target.send(*ignored) == []
    counters = target.engine.counters
    assert (counters.not_ours, counters.vendor_ignored, counters.malformed) == (4, 1, 1)


def test_unknown_command_and_version(target: Harness) -> None:
    reply = target.one(request(7, b"abc"))
    assert reply.header.is_error and reply.header.error == AoeErrorCode.BAD_COMMAND
    reply = target.one(ata_request(ata.ATA_IDENTIFY, verfl=0x20))
    assert reply.header.is_error and reply.header.error == AoeErrorCode.UNSUPPORTED_VERSION


def test_mask_list_is_seeded_and_filters_senders(make_target: Callable[..., Harness]) -> None:
    target = make_target(allowed_macs=("02:00:00:00:00:02",))
    assert target.send(ata_request(ata.ATA_IDENTIFY, src=OTHER_MAC)) == []
    assert target.send(config_request(0, src=OTHER_MAC, dst=BROADCAST_MAC)) == []
    assert target.send(kernel_discovery()) != []
    assert target.export.counters.masked == 2
    reply = target.one(request(Command.MAC_MASK, MacMaskArg(0, 0).pack()))
    assert reply.arg == MacMaskArg(0, 0, (MacDirective(0, CLIENT_MAC),))


def test_mask_list_edit(target: Harness) -> None:
    edit = MacMaskArg(1, 0, (MacDirective(1, CLIENT_MAC), MacDirective(1, OTHER_MAC),
                             MacDirective(2, OTHER_MAC), MacDirective(0, OTHER_MAC)))
    reply = target.one(request(Command.MAC_MASK, edit.pack()))
    assert reply.arg == MacMaskArg(1, 0, (MacDirective(0, CLIENT_MAC),))
    assert target.export.masks == [CLIENT_MAC]
    # a bad directive stops the edit and says where
    bad = MacMaskArg(1, 0, (MacDirective(1, OTHER_MAC), MacDirective(7, CLIENT_MAC)))
    reply = target.one(request(Command.MAC_MASK, bad.pack()))
    assert reply.arg == MacMaskArg(1, 2, failed_index=1)
    assert target.export.masks == [CLIENT_MAC, OTHER_MAC]


def test_mask_list_full(target: Harness) -> None:
    macs = [bytes([2, 0, 0, 0, 1, i]) for i in range(33)]
    edit = MacMaskArg(1, 0, tuple(MacDirective(1, m) for m in macs))
    # the sender itself is not in the list, so keep it: send as the first mac
    reply = target.one(request(Command.MAC_MASK, edit.pack(), src=macs[0]))
    assert reply.arg == MacMaskArg(1, 3, failed_index=32)
    assert len(target.export.masks) == 32


def test_mask_command_errors(target: Harness) -> None:
    reply = target.one(request(Command.MAC_MASK, b"\x00\x05\x00\x00"))
    assert reply.header.is_error and reply.header.error == AoeErrorCode.BAD_ARGUMENT
    reply = target.one(request(Command.MAC_MASK, b"\x00\x01\x00\x03" + bytes(8)))
    assert reply.header.is_error and reply.header.error == AoeErrorCode.BAD_ARGUMENT


def test_reserve_release(target: Harness) -> None:
    reply = target.one(request(Command.RESERVE, ReserveArg(1, (CLIENT_MAC,)).pack()))
    assert reply.arg == ReserveArg(1, (CLIENT_MAC,))
    # another host can neither do I/O nor take the reservation, but can read it
    refused = target.one(ata_request(ata.ATA_READ_EXT, 0, 1, src=OTHER_MAC))
    assert refused.header.is_error and refused.header.error == AoeErrorCode.RESERVED
    refused = target.one(request(Command.RESERVE, ReserveArg(1, (OTHER_MAC,)).pack(),
                                 src=OTHER_MAC))
    assert refused.header.is_error and refused.header.error == AoeErrorCode.RESERVED
    assert target.one(request(Command.RESERVE, ReserveArg(0).pack(), src=OTHER_MAC)).arg == (
        ReserveArg(0, (CLIENT_MAC,)))
    # force set always works; an empty set releases
    target.one(request(Command.RESERVE, ReserveArg(2, (OTHER_MAC,)).pack(), src=OTHER_MAC))
    assert target.export.reserve == [OTHER_MAC]
    target.one(request(Command.RESERVE, ReserveArg(1, ()).pack(), src=OTHER_MAC))
    assert target.export.reserve == []
    bad = target.one(request(Command.RESERVE, ReserveArg(9).pack()))
    assert bad.header.is_error and bad.header.error == AoeErrorCode.BAD_ARGUMENT


def test_announcements(make_target: Callable[..., Harness]) -> None:
    target = make_target()
    (frame,) = target.engine.announcements(target.link)
    ad = decode_frame(frame)
    assert (ad.header.dst, ad.header.shelf, ad.header.slot, ad.header.tag) == (
        BROADCAST_MAC, SHELF, SLOT, 0)
    assert ad.header.is_response and isinstance(ad.arg, ConfigArg)
    masked = make_target(allowed_macs=("02:00:00:00:00:02", "02:00:00:00:00:03"))
    dsts = [decode_frame(f).header.dst for f in masked.engine.announcements(masked.link)]
    assert dsts == [CLIENT_MAC, OTHER_MAC]
    assert target.engine.announcements(FakeLink(ifname="eth9")) == []


def test_exports_are_reachable_only_on_their_interfaces(tmp_path: Path) -> None:
    a = make_backing(tmp_path / "a.img")
    b = make_backing(tmp_path / "b.img")
    exports = [Export(ExportConfig(0, 1, str(a), ("eth0",)), hostname="h"),
               Export(ExportConfig(0, 2, str(b), ("eth0", "eth1")), hostname="h")]
    engine = TargetProtocol(exports)
    try:
        def answered(ifname: str) -> list[tuple[int, int]]:
            replies = engine.handle_batch([kernel_discovery()], FakeLink(ifname=ifname))
            return sorted((decode_frame(r).header.shelf, decode_frame(r).header.slot)
                          for r in replies)

        assert answered("eth0") == [(0, 1), (0, 2)]
        assert answered("eth1") == [(0, 2)]
        assert answered("eth2") == []
        assert engine.interfaces == {"eth0", "eth1"}
    finally:
        for exp in exports:
            exp.close()
