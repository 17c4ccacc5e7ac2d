"""The window's I/O: an answer that arrives while the window waits is handed over at once."""

from __future__ import annotations

import threading
import time

import pytest

from aoeprov.aoe.wire import AOE_HDR, ETH_P_AOE, RESPONSE_VERFL
from aoeprov.client.window import WindowIO
from tests.unit.memory_link import MemoryTransport


@pytest.mark.parametrize("spin", [0.0, 0.02, 1.0], ids=["sleeping", "spin-then-sleep", "spinning"])
def test_an_answer_arriving_during_the_wait_is_returned_by_that_receive(spin: float) -> None:
    # otherwise the caller looks at its deadlines first, and with no retries left an
    # answer sitting in the socket would be reported as a timeout
    target, client = MemoryTransport.pair()
    with target, client:
        io = WindowIO(client, 4, spin=spin)
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


@pytest.mark.parametrize("spin", [0.005, 10.0])
def test_a_spinning_receive_still_ends_with_its_timeout(spin: float) -> None:
    # the spin is part of the wait, never added to it
    target, client = MemoryTransport.pair()
    with target, client:
        started = time.monotonic()
        assert list(WindowIO(client, 4, spin=spin).receive(0.05)) == []
        assert time.monotonic() - started < 5.0
