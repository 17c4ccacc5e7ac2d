"""The built-in target on a real disk: cold page cache, concurrency, errors, O_DIRECT.

Images live under /var/tmp (a real filesystem: tmpfs would always be cached) and
their page cache is dropped with ``posix_fadvise(DONTNEED)`` before the reads that
must reach the disk. What a test checks is bytes and statuses, never timings.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import SECTOR_SIZE, decode_frame, mac_to_bytes
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError
from tests.bench.disk_bench import RAMFS_MAGIC, TMPFS_MAGIC, evict, filesystem_type, read_bytes
from tests.net import netlab
from tests.unit.targetd.frames import ata_request

pytestmark = pytest.mark.net

IMAGE_MIB = 64
SECTORS = IMAGE_MIB << 20 >> 9


@pytest.fixture
def disk_dir() -> Iterator[Path]:
    """A private directory on a disk (/var/tmp), removed afterwards."""
    base = Path("/var/tmp")
    if filesystem_type(base) in (TMPFS_MAGIC, RAMFS_MAGIC):
        pytest.fail("/var/tmp is in memory here: these tests need a filesystem on a disk",
                    pytrace=False)
    path = base / f"aoeprov-disk-test-{secrets.token_hex(4)}"
    path.mkdir()
    yield path
    subprocess.run(("rm", "-rf", str(path)), check=False)


@pytest.fixture
def disk_image(disk_dir: Path) -> Path:
    return netlab.make_image(disk_dir / "disk.img", IMAGE_MIB << 20)


def expected(lba: int, count: int) -> bytes:
    return netlab.sector_pattern(lba, count)


@pytest.mark.parametrize("window", [16, 64])
def test_reads_after_eviction_return_the_right_bytes(lab, serve, connect, disk_image: Path,
                                                     window: int) -> None:
    server = serve(lab, "builtin", netlab.Export(0, 1, disk_image, bufcnt=window))
    client: AoeClient = connect(lab, 0, 1, window=window)
    rng = random.Random(window)
    extents = [(rng.randrange(SECTORS // 8) * 8, 8) for _ in range(1024)]
    buffer = bytearray(len(extents) * 8 * SECTOR_SIZE)
    evict(disk_image)
    before = read_bytes(server.pid)
    client.read_many_into(extents, buffer)
    asked = len(buffer)
    for i, (lba, count) in enumerate(extents):
        assert buffer[i * 4096:(i + 1) * 4096] == expected(lba, count), f"extent {i} at {lba}"
    # each read reaches the disk for its own pages, not hundreds of KiB of read-around
    # (the mapping's page faults read ~200 bytes per byte asked)
    assert read_bytes(server.pid) - before < 4 * asked
    evict(disk_image)
    assert client.read(1000, 4000) == expected(1000, 4000)  # sequential, unaligned


def _raw_exchange(lab: netlab.Lab, frames: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Send ``frames`` back to back (all in flight together); the replies by tag order."""
    with netlab.open_transport(lab) as transport:
        tags = [int.from_bytes(f[20:24], "big") for f in frames]
        for frame in frames:
            transport.send(frame)
        replies: dict[int, bytes] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(frames) and time.monotonic() < deadline:
            for reply in transport.recv_batch(64, 0.2):
                tag = int.from_bytes(reply[20:24], "big")
                if tag in tags and reply[14] & 0x08:
                    replies[tag] = bytes(reply)
    assert len(replies) == len(frames), f"{len(frames) - len(replies)} requests unanswered"
    return [replies[tag] for tag in tags]


def _frame(lab: netlab.Lab, opcode: int, lba: int, count: int, data: bytes = b"") -> bytes:
    return ata_request(opcode, lba, count, data, shelf=0, slot=1,
                       src=mac_to_bytes(lab.client_mac), dst=mac_to_bytes(lab.server_mac()))


@pytest.mark.parametrize("sync", [False, True])
def test_overlapping_requests_in_one_window_complete_in_arrival_order(
        make_lab, serve, disk_image: Path, sync: bool) -> None:
    lab = make_lab(9000)
    serve(lab, "builtin", netlab.Export(0, 1, disk_image, sync=sync, bufcnt=64))
    lba = 4099  # 1 KiB at a sector inside an uncached page: the write must read first
    new = b"\x5a" * 1024
    evict(disk_image)
    old_read, write, new_read, other = _raw_exchange(lab, [
        _frame(lab, ata.ATA_READ_EXT, lba, 2),
        _frame(lab, ata.ATA_WRITE_EXT, lba, 2, new),
        _frame(lab, ata.ATA_READ_EXT, lba - 3, 8),
        _frame(lab, ata.ATA_READ_EXT, 20000, 8),
    ])
    statuses = [decode_frame(r).arg.cmd_status for r in (old_read, write, new_read, other)]  # type: ignore[union-attr]
    assert statuses == [ata.STATUS_DRDY] * 4
    assert old_read[36:36 + 1024] == expected(lba, 2)     # arrived before the write
    assert new_read[36:36 + 4096] == expected(lba - 3, 3) + new + expected(lba + 2, 3)
    assert other[36:36 + 4096] == expected(20000, 8)


def test_sigterm_with_io_in_flight_loses_no_acknowledged_write(lab, serve, connect,
                                                              disk_image: Path) -> None:
    server = serve(lab, "builtin", netlab.Export(0, 1, disk_image, sync=True, bufcnt=64))
    client: AoeClient = connect(lab, 0, 1, window=64, timeout=0.2, retries=2)
    rng = random.Random(7)
    slots = rng.sample(range(SECTORS // 8), 64 * 40)
    acknowledged: list[tuple[int, bytes]] = []
    stopped = threading.Event()

    def writer() -> None:
        for call in range(40):
            batch = [(slot * 8, 8) for slot in slots[call * 64:(call + 1) * 64]]
            data = os.urandom(64 * 4096)
            try:
                client.write_many(batch, data)
            except AoeprovError:
                return  # the target stopped mid-call: these writes are not acknowledged
            acknowledged.extend((lba, data[i * 4096:(i + 1) * 4096])
                                for i, (lba, _count) in enumerate(batch))
            if stopped.is_set():
                return

    thread = threading.Thread(target=writer)
    thread.start()
    netlab.wait_until(lambda: len(acknowledged) >= 128, 30, "writes to be acknowledged")
    server.proc.send_signal(signal.SIGTERM)
    stopped.set()
    assert server.proc.wait(30) == 0, server.logtext()
    thread.join(60)
    assert acknowledged
    with open(disk_image, "rb") as f:
        for lba, data in acknowledged:
            assert os.pread(f.fileno(), 4096, lba * SECTOR_SIZE) == data, f"LBA {lba}"
    server.restart()
    netlab.wait_until(lambda: netlab.answers(client), 15, "the restarted target")
    evict(disk_image)
    for lba, data in acknowledged[::17]:
        assert client.read(lba, 8) == data


@pytest.mark.parametrize("sync", [False, True])
def test_a_direct_export_round_trips(lab, serve, connect, disk_image: Path, sync: bool) -> None:
    server = serve(lab, "builtin", netlab.Export(0, 1, disk_image, sync=sync, direct=True,
                                                 bufcnt=64))
    client: AoeClient = connect(lab, 0, 1, window=64)
    data = os.urandom(3 << 20)
    client.write(12345, data)                       # unaligned start, 3 MiB
    client.write(7, b"\x11" * 1024)                 # 1 KiB inside a page
    assert client.read(12345, len(data) // SECTOR_SIZE) == data
    assert client.read(6, 4) == expected(6, 1) + b"\x11" * 1024 + expected(9, 1)
    with open(disk_image, "rb") as f:
        assert os.pread(f.fileno(), len(data), 12345 * SECTOR_SIZE) == data
    assert server.alive()


def test_a_filesystem_refusing_o_direct_gets_a_clear_error(lab, tmp_path: Path) -> None:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    subprocess.run(("mount", "-t", "ramfs", "ramfs", str(mount)), check=True)
    try:
        image = netlab.make_image(mount / "disk.img", 1 << 20)
        log = tmp_path / "target.log"
        proc = netlab.start_server(lab, "builtin", netlab.Export(0, 1, image, direct=True),
                                   log=log)
        assert proc.wait(30) != 0
        text = log.read_text()
        assert "direct I/O (O_DIRECT, direct: true / -d) is not supported" in text, text
        assert "Traceback" not in text
    finally:
        subprocess.run(("umount", str(mount)), check=False)


def test_write_errors_fail_only_their_own_requests(make_lab, serve, tmp_path: Path) -> None:
    """ENOSPC from a full ext4 (on a loop device) while reads are in flight."""
    lab = make_lab(9000)
    fs_image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    with open(fs_image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(fs_image)),
                   check=True)
    subprocess.run(("mount", "-o", "loop", str(fs_image), str(mount)), check=True)
    try:
        image = mount / "disk.img"
        netlab.make_image(image, 4 << 20)
        with open(image, "r+b") as f:  # sparse up to 64 MiB: more than the filesystem holds
            f.truncate(64 << 20)
        _fill(mount)
        serve(lab, "builtin", netlab.Export(0, 1, image, sync=True, bufcnt=64))
        frames = []
        for i in range(48):
            frames.append(_frame(lab, ata.ATA_READ_EXT, i * 8, 8))
            frames.append(_frame(lab, ata.ATA_WRITE_EXT, 16384 + i * 2048, 16, b"\x77" * 8192))
        replies = _raw_exchange(lab, frames[:64])
        replies += _raw_exchange(lab, frames[64:])
        reads, writes = replies[0::2], replies[1::2]
        for i, reply in enumerate(reads):
            assert decode_frame(reply).arg.cmd_status == ata.STATUS_DRDY  # type: ignore[union-attr]
            assert reply[36:36 + 4096] == expected(i * 8, 8)
        statuses = [decode_frame(r).arg.cmd_status for r in writes]  # type: ignore[union-attr]
        assert ata.STATUS_DRDY | ata.STATUS_ERR in statuses  # the filesystem filled up
        with open(image, "rb") as f:
            for i, status in enumerate(statuses):
                if status == ata.STATUS_DRDY:
                    assert os.pread(f.fileno(), 8192, (16384 + i * 2048) * 512) == b"\x77" * 8192
    finally:
        subprocess.run(("umount", str(mount)), check=False)


@pytest.fixture
def thin_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A loop device whose 64 MiB backing file is sparse on an 8 MiB tmpfs: writes into
    its page cache succeed, and writeback fails with ENOSPC once the tmpfs is full, as
    on a thin-provisioned volume out of space. Yields the device and its backing file
    (what reached the device); the tmpfs is its parent, to be grown.

    The tmpfs fills at a multiple of 512 KiB (a window of the test below): writing
    straight to such a device, a sync covering a write that straddled the end of the
    room succeeded with part of the write missing (the loop driver appears to complete
    a short write as done), so a test's writeback must not straddle it."""
    lower = tmp_path / "lower"
    lower.mkdir()
    subprocess.run(("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(lower)), check=True)
    loop = ""
    try:
        backing = lower / "device.img"
        with open(backing, "wb") as f:
            f.truncate(64 << 20)
        loop = subprocess.run(("losetup", "--find", "--show", str(backing)), check=True,
                              capture_output=True, text=True).stdout.strip()
        yield Path(loop), backing
    finally:
        if loop:
            subprocess.run(("losetup", "-d", loop), check=False)
        subprocess.run(("umount", str(lower)), check=True)


def test_durable_writes_on_a_failing_disk_lose_no_acknowledged_write(
        make_lab, serve, thin_device: tuple[Path, Path]) -> None:
    """Group commit through a disk that fails for a while (writeback ENOSPC: a thin
    volume out of space, then grown) with a full window in flight: failed syncs become
    ATA errors, later ones succeed, and every write the target acknowledged is on the
    device (read from its backing file once the target has stopped).

    The kernel reports a writeback error once, to the first sync that asks: writes
    held for the next sync when one fails may be the ones whose pages were lost, and
    the next sync, finding them clean, would succeed."""
    lab = make_lab(9000)
    device, backing = thin_device
    server = serve(lab, "builtin", netlab.Export(0, 1, device, sync=True, bufcnt=64))
    rng = random.Random(7)
    written: dict[int, bytes] = {}     # LBA -> data, of the writes acknowledged
    statuses: list[int] = []
    grown_at = -1
    for window in range(24):           # 12 MiB in windows of 64 writes of 8 KiB
        lbas = [(window * 64 + i) * 16 for i in range(64)]
        data = [rng.randbytes(8192) for _ in lbas]
        replies = _raw_exchange(lab, [_frame(lab, ata.ATA_WRITE_EXT, lba, 16, chunk)
                                      for lba, chunk in zip(lbas, data, strict=True)])
        for lba, chunk, reply in zip(lbas, data, replies, strict=True):
            status = decode_frame(reply).arg.cmd_status  # type: ignore[union-attr]
            statuses.append(status)
            if status == ata.STATUS_DRDY:
                written[lba] = chunk
        if grown_at < 0 and ata.STATUS_DRDY | ata.STATUS_ERR in statuses:
            grown_at = window          # the volume gets room again
            subprocess.run(("mount", "-o", "remount,size=32m", str(backing.parent)),
                           check=True)
    assert server.alive()
    server.stop()
    assert grown_at >= 0, "the device never failed"
    assert statuses[-64:] == [ata.STATUS_DRDY] * 64, "writes still fail once there is room"
    with open(backing, "rb") as f:
        lost = [lba for lba, chunk in written.items()
                if os.pread(f.fileno(), 8192, lba * SECTOR_SIZE) != chunk]
    assert lost == [], (f"{len(lost)} of {len(written)} acknowledged writes not on the "
                        f"device, the first at LBAs {lost[:5]}")


def _fill(mount: Path) -> None:
    """Take the free space of ``mount`` (but a few blocks) with files of 1 MiB, then 16 KiB."""
    count = 0
    for size in (1 << 20, 16 << 10):
        while True:
            count += 1
            with open(mount / f"filler-{count}", "wb") as f:
                try:
                    os.posix_fallocate(f.fileno(), 0, size)
                except OSError:
                    break


def test_a_file_shrinking_under_the_target_reads_as_zeros(make_lab, serve, connect,
                                                          disk_image: Path) -> None:
    lab = make_lab(9000)
    server = serve(lab, "builtin", netlab.Export(0, 1, disk_image, bufcnt=64))
    client: AoeClient = connect(lab, 0, 1, window=64)
    assert client.read(SECTORS - 16, 16) == expected(SECTORS - 16, 16)  # cached, mapped
    os.truncate(disk_image, (SECTORS // 2) * SECTOR_SIZE + 1024)
    evict(disk_image)
    extents = [(SECTORS // 2 - 8, 16), (SECTORS - 16, 16), (SECTORS // 4, 8)]
    buffer = bytearray(40 * SECTOR_SIZE)
    client.read_many_into(extents, buffer)
    assert buffer[:5120] == expected(SECTORS // 2 - 8, 10)  # up to the new end, then zeros
    assert buffer[5120:16 * 512] == bytes(16 * 512 - 5120)
    assert buffer[16 * 512:32 * 512] == bytes(16 * 512)
    assert buffer[32 * 512:] == expected(SECTORS // 4, 8)
    assert server.alive()
