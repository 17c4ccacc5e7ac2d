"""Discovery, IDENTIFY and sector I/O over real frames, against both targets."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import SECTOR_SIZE
from aoeprov.client import AoeClient
from aoeprov.errors import AtaError
from tests.net import netlab

pytestmark = pytest.mark.net

SECTORS = 8 << 20 >> 9


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_discovery_reports_address_buffers_and_frame_size(make_lab, serve, connect, image,
                                                          kind, mtu):
    lab = make_lab(mtu)
    serve(lab, kind, netlab.Export(3, 7, image))
    client = connect(lab, 3, 7)
    info = client.info
    assert (info.shelf, info.slot) == (3, 7)
    assert info.mac == lab.server_mac()
    assert info.buffer_count >= 16
    assert info.aoe_version == 1
    assert info.sectors_per_frame == min(255, (mtu - 36) // 512)
    assert client.sectors_per_frame == {1500: 2, 9000: 17}[mtu]


def test_identify_reports_the_export_size(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    identity = connect(lab, 0, 1).identify()
    assert identity.sectors == SECTORS
    assert identity.lba48


def test_identify_and_reads_honour_offset_and_length(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image, offset=100, length=1000))
    client = connect(lab, 0, 1)
    assert client.identify().sectors == 1000
    assert client.read(0, 4) == netlab.sector_pattern(100, 4)
    assert client.read(996, 4) == netlab.sector_pattern(1096, 4)
    with pytest.raises(AtaError):
        client.read(999, 2)


def test_round_trip_with_checksums(make_lab, serve, connect, image, kind, mtu):
    lab = make_lab(mtu)
    serve(lab, kind, netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    assert sha(client.read(0, SECTORS)) == sha(image.read_bytes())
    data = os.urandom(3 << 20)
    lba = 1001  # not aligned to any frame size
    client.write(lba, data)
    assert sha(client.read(lba, len(data) // SECTOR_SIZE)) == sha(data)
    with open(image, "rb") as f:
        f.seek(lba * SECTOR_SIZE)
        assert sha(f.read(len(data))) == sha(data)
    # neighbours untouched
    assert client.read(lba - 1, 1) == netlab.lba_sector(lba - 1)
    end = lba + len(data) // SECTOR_SIZE
    assert client.read(end, 1) == netlab.lba_sector(end)


@pytest.mark.parametrize("lba48", [False, True], ids=["lba28", "lba48"])
def test_lba28_and_lba48_commands(lab, serve, connect, image, kind, lba48):
    serve(lab, kind, netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    data = os.urandom(64 * SECTOR_SIZE)
    client.write(5000, data, lba48=lba48)
    assert client.read(5000, 64, lba48=lba48) == data
    assert client.read(5000, 64, lba48=not lba48) == data


def test_lba28_addresses_are_masked_to_28_bits(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    data = client.ata(ata.ATA_READ, lba=(1 << 28) | 42, count=1)
    assert data[:SECTOR_SIZE] == netlab.lba_sector(42)


def test_reads_and_writes_past_the_end_fail_with_idnf(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    assert client.read(SECTORS - 1, 1) == netlab.lba_sector(SECTORS - 1)
    with pytest.raises(AtaError) as err:
        client.read(SECTORS - 1, 2)
    assert err.value.error & ata.ERR_IDNF
    with pytest.raises(AtaError) as err:
        client.write(SECTORS, bytes(SECTOR_SIZE))
    assert err.value.error & ata.ERR_IDNF
    with pytest.raises(AtaError):
        client.read((1 << 40), 1)
    assert image.stat().st_size == SECTORS * SECTOR_SIZE


def test_read_only_export_refuses_writes(lab, serve, connect, image, kind):
    before = sha(image.read_bytes())
    serve(lab, kind, netlab.Export(0, 1, image, read_only=True))
    client = connect(lab, 0, 1)
    with pytest.raises(AtaError) as err:
        client.write(10, bytes(2 * SECTOR_SIZE))
    assert err.value.error & ata.ERR_ABRT
    assert client.read(10, 2) == netlab.sector_pattern(10, 2)
    assert sha(image.read_bytes()) == before


def test_flush_check_power_and_unknown_commands(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    client = connect(lab, 0, 1)
    client.write(0, b"\x55" * SECTOR_SIZE)
    client.flush()
    assert client.check_power() == ata.POWER_ACTIVE
    with pytest.raises(AtaError) as err:
        client.ata(0xB0, count=1)  # SMART: not implemented by either target
    assert err.value.error & ata.ERR_ABRT


def test_several_exports_in_one_builtin_target(lab, serve, connect, tmp_path: Path):
    """The built-in target serves many shelf.slot pairs from one process."""
    images = [netlab.make_image(tmp_path / f"d{i}.img", (1 + i) << 20) for i in range(3)]
    exports = [netlab.Export(1, i, img) for i, img in enumerate(images)]
    server = serve(lab, "builtin", exports[0], extra=exports[1:])
    for i, _img in enumerate(images):
        client = connect(lab, 1, i)
        assert client.identify().sectors == (1 + i) << 11
        client.write(7, bytes([i + 1]) * SECTOR_SIZE)
    for i, img in enumerate(images):
        with open(img, "rb") as f:
            f.seek(7 * SECTOR_SIZE)
            assert f.read(SECTOR_SIZE) == bytes([i + 1]) * SECTOR_SIZE
    assert server.alive()


def test_client_opens_its_own_socket(lab, serve, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    with netlab.in_netns(lab.client_ns):
        client = AoeClient.on_interface(lab.client_if, 0, 1)
    with client:
        assert client.read(3, 1) == netlab.lba_sector(3)
    with pytest.raises(OSError):
        client.read(3, 1)  # closed with the block
