"""The window's I/O: an answer that arrives while the window waits is handed over at once."""

from __future__ import annotations

import threading

from aoeprov.aoe.wire import AOE_HDR, ETH_P_AOE, RESPONSE_VERFL
from aoeprov.client.window import WindowIO
from tests.unit.memory_link import MemoryTransport


def test_an_answer_arriving_during_the_wait_is_returned_by_that_receive() -> None:
    # otherwise the caller looks at its deadlines first, and with no retries left an
    # answer sitting in the socket would be reported as a timeout
    target, client = MemoryTransport.pair()
    with target, client:
        io = WindowIO(client, 4)
        answer = AOE_HDR.pack(client.mac, target.mac, ETH_P_AOE, RESPONSE_VERFL, 0, 1, 2, 1,
                              0x8000_0001)
        late = threading.Timer(0.05, target.send, (answer,))
        late.start()
        try:
            frames = io.receive(30.0)
        finally:
            late.join()
        assert [bytes(f) for f in frames] == [answer]


def test_nothing_arriving_returns_nothing() -> None:
    target, client = MemoryTransport.pair()
    with target, client:
        assert list(WindowIO(client, 4).receive(0.01)) == []
