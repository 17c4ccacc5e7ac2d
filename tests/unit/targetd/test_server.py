"""The target process logic over in-memory links: loop, announce, reload, signals."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import AtaArg, ConfigArg, ConfigCommand, decode_frame
from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.server import TargetServer
from tests.unit.memory_link import MemoryTransport

from .frames import CLIENT_MAC, TARGET_MAC, ata_request, config_request, make_backing


class Links:
    """Opens MemoryTransport pairs on demand; tests talk through the client ends."""

    def __init__(self, mtu: int = 1500) -> None:
        self.mtu = mtu
        self.target: dict[str, MemoryTransport] = {}
        self.client: dict[str, MemoryTransport] = {}
        self.fail: set[str] = set()

    def open(self, ifname: str) -> MemoryTransport:
        if ifname in self.fail:
            raise TargetError(f"no interface {ifname}")
        t, c = MemoryTransport.pair(mtu=self.mtu, target_mac=TARGET_MAC, client_mac=CLIENT_MAC,
                                    ifname=ifname)
        self.target[ifname], self.client[ifname] = t, c
        return t

    def replies(self, ifname: str) -> list[bytes]:
        return self.client[ifname].recv_batch(1000, 0)


@pytest.fixture
def links() -> Links:
    return Links()


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_backing(tmp_path / f"{i}.img") for i in range(3)]


def export(path: Path, slot: int = 2, interfaces: tuple[str, ...] = ("eth0",),
           **kw: object) -> ExportConfig:
    return ExportConfig(shelf=1, slot=slot, path=str(path), interfaces=interfaces,
                        **kw)  # type: ignore[arg-type]


@pytest.fixture
def make_server(links: Links) -> Iterator[object]:
    servers: list[TargetServer] = []

    def make(configs: list[ExportConfig], **kw: object) -> TargetServer:
        server = TargetServer(configs, open_link=links.open, hostname="h",
                              **kw)  # type: ignore[arg-type]
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


def test_start_announces_and_serves(make_server, links: Links, images: list[Path]) -> None:
    server = make_server([export(images[0])])
    (announcement,) = links.replies("eth0")
    assert decode_frame(announcement).header.slot == 2
    links.client["eth0"].send(ata_request(ata.ATA_IDENTIFY))
    assert server.step(1.0) == 1
    (reply,) = links.replies("eth0")
    arg = decode_frame(reply).arg
    assert isinstance(arg, AtaArg) and ata.parse_identify(arg.data).sectors == 64


def test_a_burst_is_drained_in_batches(make_server, links: Links, images: list[Path]) -> None:
    # 100 requests at once: within the buffer count the export advertises (beyond it,
    # requests to an export on a disk are dropped and counted as overruns)
    server = make_server([export(images[0], buffer_count=128)], batch=16)
    links.replies("eth0")
    for i in range(100):
        links.client["eth0"].send(ata_request(ata.ATA_READ_EXT, i % 32, 1))
    handled = 0
    while handled < 100:
        handled += server.step(1.0)
    server.settle()  # the image is on a disk: reads that miss the cache finish in workers
    assert len(links.replies("eth0")) == 100


def test_reload_keeps_unchanged_exports(make_server, links: Links, images: list[Path]) -> None:
    configs = [export(images[0], slot=1), export(images[1], slot=2)]
    server = make_server(configs, reload=lambda: configs)
    links.replies("eth0")
    links.client["eth0"].send(config_request(ConfigCommand.SET, b"keep me", slot=1))
    server.step(1.0)
    links.replies("eth0")
    kept = server.engine.exports[0]
    replaced = server.engine.exports[1]
    configs = [export(images[0], slot=1), export(images[1], slot=2, read_only=True),
               export(images[2], slot=3, interfaces=("eth1",))]
    assert server.reload()
    assert server.engine.exports[0] is kept and kept.config_string == b"keep me"
    assert server.engine.exports[1] is not replaced and replaced.closed
    assert server.engine.exports[1].read_only
    # the changed and the new export are announced, each on its link
    assert [decode_frame(f).header.slot for f in links.replies("eth0")] == [2]
    (ad,) = links.replies("eth1")
    assert decode_frame(ad).header.slot == 3
    # and dropping eth1's export closes that link
    configs = configs[:2]
    assert server.reload()
    assert set(server.links) == {"eth0"} and links.target["eth1"].closed


def test_failed_reload_keeps_serving(make_server, links: Links, images: list[Path]) -> None:
    configs = [export(images[0])]
    server = make_server(configs, reload=lambda: configs)
    before = server.engine.exports[0]
    configs = [export(images[0]), export(Path("/nonexistent/disk"), slot=5)]
    assert not server.reload()
    configs = [export(images[0]), export(images[1], slot=5, interfaces=("eth7",))]
    links.fail.add("eth7")
    assert not server.reload()
    assert server.engine.exports == [before] and not before.closed
    links.client["eth0"].send(ata_request(ata.ATA_IDENTIFY))
    server.step(1.0)
    assert links.replies("eth0")


def test_start_fails_cleanly(links: Links, images: list[Path]) -> None:
    server = TargetServer([export(images[0]), export(images[1], slot=3, length=10_000)],
                          open_link=links.open)
    with pytest.raises(TargetError, match="length 10000 exceeds"):
        server.start()
    server.close()
    with pytest.raises(TargetError, match="both claim"):
        TargetServer([export(images[0]), export(images[1])], open_link=links.open)


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                              signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
def test_signals(make_server, links: Links, images: list[Path]) -> None:
    configs = [export(images[0])]
    stats: list[dict[str, object]] = []
    reloads: list[int] = []

    def reload() -> list[ExportConfig]:
        reloads.append(1)
        return configs

    server = make_server(configs, reload=reload, on_stats=stats.append)
    server.install_signal_handlers()
    os.kill(os.getpid(), signal.SIGUSR1)
    server.step(1.0)
    assert stats and stats[0]["exports"][0]["name"] == "e1.2"  # type: ignore[index]
    os.kill(os.getpid(), signal.SIGHUP)
    server.step(1.0)
    assert reloads == [1]
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    server.run()  # returns once SIGTERM is handled
    timer.join()


@pytest.mark.parametrize("fast_path", [True, False])
def test_counters(make_server, links: Links, images: list[Path], fast_path: bool) -> None:
    server = make_server([export(images[0])], fast_path=fast_path)
    links.client["eth0"].send(ata_request(ata.ATA_WRITE_EXT, 0, 1, b"\x01" * 512))
    links.client["eth0"].send(ata_request(ata.ATA_READ_EXT, 64, 1))
    server.step(1.0)
    server.settle()
    (exp,) = server.stats()["exports"]  # type: ignore[misc]
    assert (exp["writes"], exp["bytes_written"], exp["ata_errors"], exp["frames_in"]) == (
        1, 512, 1, 2)


def test_config_reply_uses_each_links_mtu(make_server, images: list[Path]) -> None:
    jumbo = Links(mtu=9000)
    server = TargetServer([export(images[0])], open_link=jumbo.open)
    try:
        server.start()
        jumbo.replies("eth0")
        jumbo.client["eth0"].send(config_request(0))
        server.step(1.0)
        (reply,) = jumbo.replies("eth0")
        arg = decode_frame(reply).arg
        assert isinstance(arg, ConfigArg) and arg.sectors_per_frame == 17
    finally:
        server.close()


def test_a_failed_link_is_reopened_on_reload(make_server, links: Links,
                                             images: list[Path]) -> None:
    configs = [export(images[0])]
    server = make_server(configs, reload=lambda: configs)
    links.replies("eth0")
    broken = links.target["eth0"]

    def down(max_frames: int, timeout: float | None) -> list[bytes]:
        raise OSError(100, "Network is down")

    broken.recv_batch = down  # type: ignore[method-assign]
    links.client["eth0"].send(ata_request(ata.ATA_IDENTIFY))
    server.step(1.0)
    assert server.link_errors == 1
    assert server.reload()
    assert broken.closed and server.links["eth0"] is links.target["eth0"]
    (announcement,) = links.replies("eth0")  # the new link announces the export
    assert decode_frame(announcement).header.slot == 2
    links.client["eth0"].send(ata_request(ata.ATA_IDENTIFY))
    server.step(1.0)
    assert len(links.replies("eth0")) == 1


def test_run_waits_in_the_receive_call_of_a_sole_link(make_server, links: Links,
                                                      images: list[Path]) -> None:
    server = make_server([export(images[0])])
    links.replies("eth0")
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        links.client["eth0"].send(ata_request(ata.ATA_READ_EXT, 0, 2))
        reply = links.client["eth0"].recv(5.0)
        assert reply is not None
        arg = decode_frame(reply).arg
        assert isinstance(arg, AtaArg) and arg.cmd_status == ata.STATUS_DRDY
        assert len(arg.data) == 1024
    finally:
        server.request_stop()
        thread.join(5.0)
    assert not thread.is_alive()
