"""Fixtures of the net tier: namespaces joined by veth, AoE servers, clients.

Every test gets its own namespaces (removed in teardown even when the test fails)
and its own server processes; the client runs in the test process, its raw socket
opened inside the client namespace.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aoeprov.aoe.transport import EthernetTransport
from aoeprov.aoe.wire import mac_to_bytes
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError
from tests.net import netlab

IMAGE_SIZE = 8 << 20


def require_tools(*names: str) -> None:
    """Like the top-level conftest's: a missing tool fails the test, never skips it."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run `make setup`", pytrace=False)


@dataclass
class Server:
    kind: str
    export: netlab.Export
    proc: subprocess.Popen[bytes]
    lab: netlab.Lab
    port: int
    log: Path
    extra: tuple[netlab.Export, ...] = ()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        return netlab.stop_process(self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def restart(self) -> None:
        """Start the same export again (after ``kill``/``stop``); does not wait."""
        self.proc = netlab.start_server(self.lab, self.kind, self.export, self.port, self.log,
                                        self.extra)

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(params=[1500, 9000], ids=["mtu1500", "mtu9000"])
def mtu(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    """One client and one server namespace, MTU 1500."""
    with netlab.lab_context(1500) as made:
        yield made


@pytest.fixture
def make_lab() -> Iterator[Callable[..., netlab.Lab]]:
    """Factory for labs with another MTU, several server ports or a bridge."""
    labs: list[netlab.Lab] = []

    def make(mtu: int = 1500, ports: int = 1, bridge: bool = False) -> netlab.Lab:
        labs.append(netlab.make_lab(mtu, ports, bridge))
        return labs[-1]

    yield make
    for made in labs:
        netlab.remove_lab(made)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """An 8 MiB image whose sectors each hold their own LBA."""
    return netlab.make_image(tmp_path / "disk.img", IMAGE_SIZE)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(lab, kind, export, port=0)`` starts a server and waits until it answers."""
    servers: list[Server] = []
    require_tools("ip")

    def start(lab: netlab.Lab, kind: str, export: netlab.Export, port: int = 0,
              wait: bool = True, extra: tuple[netlab.Export, ...] = ()) -> Server:
        if kind == "vblade":
            require_tools("vblade")
        log = tmp_path / f"{kind}-{export.shelf}.{export.slot}-{port}.log"
        proc = netlab.start_server(lab, kind, export, port, log, extra)
        server = Server(kind, export, proc, lab, port, log, tuple(extra))
        servers.append(server)
        if wait:
            wait_answering(lab, server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_answering(lab: netlab.Lab, server: Server, timeout: float = 15.0) -> None:
    """Until the server answers a config query for its shelf.slot from its own MAC."""
    mac = lab.server_mac(server.port)
    with netlab.open_transport(lab) as transport:
        # a target with a mask list only answers the MACs on it
        source = (netlab.SpoofedTransport(transport, mac_to_bytes(server.export.macs[0]))
                  if server.export.macs else transport)
        client = AoeClient(source, server.export.shelf, server.export.slot,  # type: ignore[arg-type]
                           target_mac=mac, timeout=0.1, retries=0)

        def answers() -> bool:
            if not server.alive():
                pytest.fail(f"{server.kind} exited with {server.proc.returncode}:\n"
                            f"{server.logtext()}")
            try:
                return client.config() is not None
            except AoeprovError:
                return False

        netlab.wait_until(answers, timeout, f"{server.kind} to answer")


@pytest.fixture
def connect() -> Iterator[Callable[..., AoeClient]]:
    """``connect(lab, shelf, slot, **client_options)``: a discovered client."""
    transports: list[EthernetTransport] = []

    def make(lab: netlab.Lab, shelf: int, slot: int, **options: object) -> AoeClient:
        transports.append(netlab.open_transport(lab))
        client = AoeClient(transports[-1], shelf, slot, **options)  # type: ignore[arg-type]
        client.discover()
        return client

    yield make
    for transport in transports:
        transport.close()


@pytest.fixture(params=netlab.TARGET_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The server under test: the built-in target, or Debian's vblade for interop."""
    return str(request.param)
