"""The target dies and comes back mid-stream: the client retransmits, no acked write is lost."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from aoeprov.aoe.wire import SECTOR_SIZE
from tests.net import netlab

pytestmark = pytest.mark.net

CHUNK_SECTORS = 128          # 64 KiB per write call
CHUNKS = 96                  # 6 MiB in all, within the 8 MiB image
KILL_AT_FRAME = 500          # well inside the stream (6 MiB is 6144 frames at MTU 1500)
DOWN_SECONDS = 0.5


def test_target_killed_and_restarted_mid_stream(lab, serve, connect, image, kind):
    server = serve(lab, kind, netlab.Export(0, 1, image))
    # short first timeout so the outage is crossed quickly; enough retries for a
    # python target to start again (the default deadline would do, only slower)
    client = connect(lab, 0, 1, timeout=0.1, max_timeout=0.5, retries=40)
    events: list[str] = []
    restarter = threading.Timer(DOWN_SECONDS, lambda: (server.restart(), events.append("up")))

    class KillOnFrame:
        """Wraps the client's link: SIGKILLs the target as request KILL_AT_FRAME goes out."""

        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.sent = 0

        def send(self, frame: bytes) -> None:
            self.sent += 1
            if self.sent == KILL_AT_FRAME:
                server.kill()  # with a window of requests in flight
                events.append("killed")
                restarter.start()
            self.inner.send(frame)  # type: ignore[attr-defined]

        def batch_io(self, _slots: int) -> None:
            return None  # no sendmmsg behind our back: every frame goes through send()

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    client.transport = KillOnFrame(client.transport)  # type: ignore[assignment]
    chunks = [os.urandom(CHUNK_SECTORS * SECTOR_SIZE) for _ in range(CHUNKS)]
    acked: list[int] = []
    for i, data in enumerate(chunks):
        client.write(i * CHUNK_SECTORS, data)
        acked.append(i)  # write() returned: every frame of this chunk was acknowledged
    restarter.join(30)
    assert events == ["killed", "up"]
    assert client.retransmits > 0, "the outage should have forced retransmissions"
    assert len(acked) == CHUNKS
    # through the restarted target, and straight from the backing file
    assert client.read(0, CHUNKS * CHUNK_SECTORS) == b"".join(chunks)
    server.stop()
    with open(image, "rb") as f:
        on_disk = f.read(CHUNKS * CHUNK_SECTORS * SECTOR_SIZE)
    for i in acked:
        part = on_disk[i * len(chunks[0]):(i + 1) * len(chunks[0])]
        assert hashlib.sha256(part).digest() == hashlib.sha256(chunks[i]).digest(), i
