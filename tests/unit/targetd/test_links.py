"""Links that change under a running target, driven by a stand-in for rtnetlink."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.aoe import ata
from aoeprov.aoe.wire import ConfigArg, decode_frame
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.netlink import IFF_LOWER_UP, IFF_RUNNING, IFF_UP, LinkEvent
from aoeprov.targetd.server import TargetServer

from .frames import ata_request, make_backing
from .test_server import Links

UP_FLAGS = IFF_UP | IFF_RUNNING | IFF_LOWER_UP


class FakeMonitor:
    """``LinkMonitor``'s interface: a state table and queued events with a real fd."""

    def __init__(self, **links: LinkEvent) -> None:
        self.links = dict(links)
        self.queued: list[LinkEvent] = []
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)

    def fileno(self) -> int:
        return self._r

    def current(self) -> dict[str, LinkEvent]:
        return dict(self.links)

    def push(self, event: LinkEvent) -> None:
        self.links[event.ifname] = event
        self.queued.append(event)
        os.write(self._w, b"\0")

    def read(self) -> list[LinkEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        events, self.queued = self.queued, []
        return events

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def link(name: str, up: bool = True, mtu: int = 1500, index: int = 7) -> LinkEvent:
    return LinkEvent(name, index, UP_FLAGS if up else IFF_UP, mtu)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return make_backing(tmp_path / "disk.img")


@pytest.fixture
def servers() -> Iterator[list[TargetServer]]:
    made: list[TargetServer] = []
    yield made
    for server in made:
        server.close()


def start(servers: list[TargetServer], links: Links, monitor: FakeMonitor, image: Path,
          interfaces: tuple[str, ...] = ("eth0",)) -> TargetServer:
    server = TargetServer([ExportConfig(1, 2, str(image), interfaces)], open_link=links.open,
                          hostname="h", monitor=monitor)  # type: ignore[arg-type]
    servers.append(server)
    server.start()
    return server


def spf(frames: list[bytes]) -> list[int]:
    """Sectors per frame of each config announcement among ``frames``."""
    out = []
    for frame in frames:
        arg = decode_frame(frame).arg
        if isinstance(arg, ConfigArg):
            out.append(arg.sectors_per_frame)
    return out


def test_a_link_down_at_start_is_waited_for_and_announced_when_up(
        servers, image: Path, caplog: pytest.LogCaptureFixture) -> None:
    links = Links()
    monitor = FakeMonitor(eth0=link("eth0", up=False), eth1=link("eth1"))
    with caplog.at_level(logging.WARNING):
        server = start(servers, links, monitor, image, ("eth0", "eth1"))
    assert set(server.links) == {"eth1"} and spf(links.replies("eth1")) == [2]
    assert caplog.text.count("link eth0 is down: waiting for it to come up, serving the "
                             "other links meanwhile") == 1
    assert "Traceback" not in caplog.text
    # the other link serves meanwhile
    links.client["eth1"].send(ata_request(ata.ATA_IDENTIFY))
    server.step(1.0)
    assert len(links.replies("eth1")) == 1
    monitor.push(link("eth0", up=False))  # nothing new: said once only
    server.step(0.1)
    assert caplog.text.count("link eth0 is down") == 1
    monitor.push(link("eth0"))
    server.step(1.0)
    assert set(server.links) == {"eth0", "eth1"}
    assert spf(links.replies("eth0")) == [2]  # announced again when it came up
    assert "link eth0 is up: serving it, exports announced" in caplog.text
    snapshot = server.snapshot()
    assert [(lk["interface"], lk["state"]) for lk in snapshot["links"]] == [  # type: ignore[index]
        ("eth0", "up"), ("eth1", "up")]


def test_down_then_up_announces_again(servers, image: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    links = Links()
    monitor = FakeMonitor(eth0=link("eth0"))
    server = start(servers, links, monitor, image)
    links.replies("eth0")
    with caplog.at_level(logging.INFO):
        monitor.push(link("eth0", up=False))
        server.step(1.0)
        assert server.snapshot()["links"][0]["state"] == "down"  # type: ignore[index]
        monitor.push(link("eth0"))
        server.step(1.0)
    assert spf(links.replies("eth0")) == [2]
    assert "SIGHUP" not in caplog.text


def test_an_mtu_change_is_announced_at_once(servers, image: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    links = Links()
    monitor = FakeMonitor(eth0=link("eth0"))
    server = start(servers, links, monitor, image)
    links.replies("eth0")
    target = links.target["eth0"]

    def lowered() -> int:
        target.mtu = 9000
        return 9000

    target.refresh_mtu = lowered  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        monitor.push(link("eth0", mtu=9000))
        server.step(1.0)
    assert spf(links.replies("eth0")) == [17]
    assert "link eth0: MTU 1500 -> 9000 (changed): now 17 sectors per frame" in caplog.text


def test_a_reply_too_large_for_the_link_makes_it_reread_its_mtu(
        servers, image: Path, caplog: pytest.LogCaptureFixture) -> None:
    links = Links(mtu=9000)
    monitor = FakeMonitor(eth0=link("eth0", mtu=9000))
    server = start(servers, links, monitor, image)
    links.replies("eth0")
    target = links.target["eth0"]

    def too_big(max_frames: int, timeout: float | None) -> list[bytes]:
        raise OSError(errno.EMSGSIZE, "Message too long")

    def smaller() -> int:
        target.mtu = 1500
        return 1500

    target.recv_batch = too_big  # type: ignore[method-assign]
    target.refresh_mtu = smaller  # type: ignore[method-assign]
    server._batch_io.clear()  # the frame-by-frame path reads with recv_batch
    os.write(target._wfd, b"\0")  # wake the poll
    with caplog.at_level(logging.WARNING):
        server.step(1.0)
    assert spf(links.replies("eth0")) == [2]
    assert "a reply of this size no longer fits" in caplog.text
    assert server.snapshot()["links"][0]["state"] == "up"  # type: ignore[index]


def test_an_interface_created_anew_is_reopened(servers, image: Path) -> None:
    links = Links()
    monitor = FakeMonitor(eth0=link("eth0", index=7))
    server = start(servers, links, monitor, image)
    first = links.target["eth0"]
    monitor.push(LinkEvent("eth0", 7, 0, 1500, deleted=True))
    server.step(1.0)
    assert "eth0" not in server.links and first.closed
    monitor.push(link("eth0", index=9))
    server.step(1.0)
    assert server.links["eth0"] is links.target["eth0"] is not first
    assert spf(links.replies("eth0")) == [2]


def test_snapshot_shape(servers, image: Path) -> None:
    links = Links()
    server = start(servers, links, FakeMonitor(eth0=link("eth0")), image)
    links.client["eth0"].send(ata_request(ata.ATA_READ_EXT, 0, 2))
    links.client["eth0"].send(ata_request(ata.ATA_READ_EXT, 2, 2))
    server.step(1.0)
    server.settle()  # the image is on a disk: reads may finish in the disk queue
    snap = server.snapshot()
    assert snap["version"] == 1 and snap["link_errors"] == 0 and snap["state_errors"] == 0
    assert snap["links"] == [{"interface": "eth0", "state": "up", "mtu": 1500,
                              "sectors_per_frame": 2, "rx_dropped": 0}]
    (exp,) = snap["exports"]  # type: ignore[misc]
    assert (exp["reads"], exp["in_flight"], exp["in_flight_max"], exp["queue_full"]) == (
        2, 2, 2, 0)
    assert exp["buffer_count"] == 64 and exp["aoe"] == "e1.2"


def test_reload_rereads_the_state_files(servers, image: Path, tmp_path: Path) -> None:
    links = Links()
    config = ExportConfig(1, 2, str(image), ("eth0",))
    server = TargetServer([config], open_link=links.open, hostname="h", reload=lambda: [config],
                          state_dir=tmp_path / "state")
    servers.append(server)
    server.start()
    (exp,) = server.engine.exports
    exp.config_string = b"before"
    server.state.save(exp)
    # an operator restores an older file (or edits it): SIGHUP takes it, same Export object
    saved = tmp_path / "state" / "e1.2.json"
    saved.write_text(saved.read_text().replace('"before"', '"restored"'))
    assert server.reload()
    assert server.engine.exports[0] is exp and exp.config_string == b"restored"
