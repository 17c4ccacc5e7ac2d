"""The client's window: requests in flight, retransmission with back-off, answers by tag.

Every exchange of ``AoeClient`` runs here, one config query as much as a read of
thousands of frames (``client.bulk``). The rules:

- Tags have bit 31 set, the tag space the Linux driver leaves to userland (it drops
  responses carrying such tags, so a kernel initiator on the same host never
  mistakes our answers for its own); they start at a random point, so other
  clients on the link (raw sockets see every frame) do not walk in step with us.
- At most ``Policy.window`` requests are in flight.
- A request not answered within its timeout is sent again under a new tag, with the
  timeout doubled up to ``max_timeout``; after ``retries`` resends ``DeviceTimeout``.
  A late answer to an abandoned tag is ignored, like the kernel's "unexpected rsp".
- An answer is ours only if every field says so: a response, to our MAC, from the
  peer's MAC (any, for a broadcast), for its shelf.slot (any, for a wildcard), to
  the command sent, under a tag in flight. Anything else is ignored.
- An answer with the error flag raises ``AoeErrorReply`` at once; requests still in
  flight are abandoned.

Requests are built in place in the slots of a ``ReplyBuffer`` and leave together
(``sendmmsg`` where the link has it); answers arrive in the fixed slots of a batch
receiver (``recvmmsg``). What a request holds and what an answer means is the
business of a ``Requests`` object.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import select
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from aoeprov.aoe.wire import (
    AOE_HDR,
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    ETH_P_AOE,
    FLAG_ERROR,
    FLAG_RESPONSE,
    USER_TAG_BIT,
    VERSION_BITS,
    mac_to_str,
)
from aoeprov.errors import AoeErrorReply, DeviceTimeout
from aoeprov.link.batch import BatchReceiver, ReplyBuffer, TransportReceiver
from aoeprov.link.transport import Transport, slot_size

LOG = logging.getLogger(__name__)

TAG_MASK = USER_TAG_BIT - 1

# a received frame: bytes, or a view of a receive slot (valid until the next receive)
Frame = bytes | memoryview


@dataclass(frozen=True)
class Peer:
    """Both ends of an exchange: our MAC, and the target's MAC (broadcast until known)
    and shelf.slot (either may be the wildcard)."""

    src: bytes
    dst: bytes
    shelf: int
    slot: int

    @property
    def name(self) -> str:
        return f"e{self.shelf}.{self.slot}"

    def header(self, command: int, tag: int) -> bytes:
        """The Ethernet and AoE header of a request to this peer."""
        return AOE_HDR.pack(self.dst, self.src, ETH_P_AOE, VERSION_BITS, 0, self.shelf,
                            self.slot, command, tag)

    @property
    def any_mac(self) -> bool:
        """Answers may come from any MAC (we asked the broadcast address)."""
        return self.dst == BROADCAST_MAC

    @property
    def any_address(self) -> bool:
        """Answers may come for any shelf.slot (we asked a wildcard)."""
        return self.shelf == BROADCAST_SHELF or self.slot == BROADCAST_SLOT


@dataclass(frozen=True)
class Policy:
    window: int          # requests in flight at most
    timeout: float       # seconds before the first resend
    max_timeout: float   # the doubling stops here
    retries: int         # resends before DeviceTimeout


def new_tags() -> Iterator[int]:
    """Fresh tags in the userland half of the tag space (bit 31 set), from a random start
    (an iterator of C calls only: the bulk path takes one per frame)."""
    start = secrets.randbelow(1 << 31)
    return map(USER_TAG_BIT.__or__, map(TAG_MASK.__and__, itertools.count(start)))


@dataclass
class Counters:
    """Frames of every run so far, for the benchmark and for tests of retransmission."""

    sent: int = 0
    received: int = 0      # answers accepted as ours (error replies included)
    retransmits: int = 0


class Requests(Protocol):
    """One run's requests, all of ``command`` to ``peer``, known by index 0..count-1."""

    peer: Peer
    command: int
    count: int

    def put(self, index: int, tag: int, out: ReplyBuffer) -> None:
        """Build request ``index`` under ``tag`` in the next slot of ``out`` (there is one)."""

    def accept(self, index: int, frame: Frame) -> None:
        """The answer to request ``index``: checked to be ours and not an error reply.
        May raise (ATA status, short answer); ``frame`` is valid during the call only."""


class WindowIO:
    """The send and receive buffers of one window, made again when the transport, the
    window or the MTU changes (``key``)."""

    def __init__(self, transport: Transport, slots: int, spin: float = 0.0) -> None:
        self.transport = transport  # held, so no other object can take its id() meanwhile
        self.spin = spin
        self.key = self.key_of(transport, slots)
        make = getattr(transport, "batch_io", None)
        io = make(slots) if make is not None else None
        if io is None:
            io = (TransportReceiver(transport, slots),
                  ReplyBuffer(slots, slot_size(transport.mtu), transport.send))
        self.receiver: BatchReceiver = io[0]
        self.out: ReplyBuffer = io[1]
        self._poll = select.poll()
        self._poll.register(transport.fileno(), select.POLLIN)

    @staticmethod
    def key_of(transport: Transport, slots: int) -> tuple[int, int, int]:
        return id(transport), slots, transport.mtu

    def receive(self, timeout: float) -> Sequence[Frame]:
        """The answers queued now, else those that arrive within ``timeout`` seconds.

        What arrived during the wait is returned at once, before the caller looks at
        its deadlines: an answer that lands just before one is taken, not resent.
        """
        frames = self.receiver.recv()
        if not frames and self.spin > 0:
            frames, timeout = self._spin(timeout)
        if not frames and self._poll.poll(max(0, int(min(timeout, 3600.0) * 1000) + 1)):
            frames = self.receiver.recv()
        return frames

    def _spin(self, timeout: float) -> tuple[Sequence[Frame], float]:
        """Look again without sleeping for up to ``spin`` seconds: what came, and the
        part of ``timeout`` left to wait.

        A client that never sleeps never needs waking. Over a veth link the sender's CPU
        delivers each frame and wakes the process waiting for it, so there a sleeping
        client puts the cost of its wakeups on the server's CPU, which two hosts never
        do (the benchmark's ``--client-spin``). It costs the client a core meanwhile.
        """
        started = time.monotonic()
        end = started + min(self.spin, timeout)
        recv = self.receiver.recv
        while True:
            frames = recv()
            now = time.monotonic()
            if frames or now >= end:
                return frames, max(0.0, timeout - (now - started))
            os.sched_yield()  # kernel work queued on this CPU (a disk's completions) goes first


def run_window(requests: Requests, io: WindowIO, policy: Policy, tags: Iterator[int],
               counters: Counters) -> None:
    """Send every request and settle every answer (see the module's rules)."""
    _Run(requests, io, policy, tags, counters).run()


class _Run:
    """The state of one ``run_window``: which tags are in flight for which request, until when."""

    def __init__(self, requests: Requests, io: WindowIO, policy: Policy, tags: Iterator[int],
                 counters: Counters) -> None:
        self.requests = requests
        self.io = io
        self.policy = policy
        self.tags = tags
        self.counters = counters
        total = requests.count
        self.timeouts = [policy.timeout] * total  # per request: its current timeout
        self.resends = [0] * total                # per request: resends so far
        self.flights: dict[int, tuple[int, float]] = {}  # tag -> (request, deadline)
        self.next_index = 0     # the first request never sent
        self.next_expiry = float("inf")
        self.sent = self.done = 0

    def run(self) -> None:
        total, io = self.requests.count, self.io
        try:
            while self.done < total:
                now = time.monotonic()
                if now >= self.next_expiry:
                    self._resend_expired(now)
                self._fill(now)
                io.out.flush()
                frames = io.receive(self.next_expiry - time.monotonic())
                if frames:
                    self._settle(frames)
        finally:
            self.counters.sent += self.sent
            self.counters.received += self.done

    def _put(self, indexes: Sequence[int], deadline: float) -> None:
        """Requests ``indexes`` into the send buffer, each under a fresh tag."""
        out, put, flights, tags = self.io.out, self.requests.put, self.flights, self.tags
        lengths, slots = out.lengths, out.slots
        for index in indexes:
            if len(lengths) == slots:
                out.flush()
            tag = next(tags)
            put(index, tag, out)
            flights[tag] = (index, deadline)
        self.sent += len(indexes)

    def _fill(self, now: float) -> None:
        """New requests into the room the window has."""
        room = min(self.policy.window - len(self.flights), self.requests.count - self.next_index)
        if room <= 0:
            return
        deadline = now + self.policy.timeout
        self.next_expiry = min(self.next_expiry, deadline)
        self._put(range(self.next_index, self.next_index + room), deadline)
        self.next_index += room

    def _resend_expired(self, now: float) -> None:
        """Every request whose deadline passed again, under a new tag and a doubled timeout."""
        self.next_expiry = float("inf")
        for tag, (index, deadline) in list(self.flights.items()):
            if deadline > now:
                self.next_expiry = min(self.next_expiry, deadline)
                continue
            del self.flights[tag]
            if self.resends[index] >= self.policy.retries:
                requests = self.requests
                raise DeviceTimeout(f"{requests.peer.name} did not answer (command "
                                    f"{requests.command}) after {self.resends[index] + 1} tries")
            self.resends[index] += 1
            self.timeouts[index] = min(self.timeouts[index] * 2, self.policy.max_timeout)
            self.counters.retransmits += 1
            LOG.debug("retransmitting request %d (try %d)", index, self.resends[index] + 1)
            deadline = now + self.timeouts[index]
            self.next_expiry = min(self.next_expiry, deadline)
            self._put((index,), deadline)

    def _settle(self, frames: Sequence[Frame]) -> None:
        """Hand every answer of ours to the requests; ignore the rest.

        An answer is ours when it is a response, to our MAC, from the peer's (any, for
        a broadcast), for its shelf.slot (any, for a wildcard), to the command sent,
        under a tag in flight. This runs once per frame: the peer's fields are locals.
        """
        requests, flights = self.requests, self.flights
        command, accept, peer = requests.command, requests.accept, requests.peer
        me, them, address = peer.src, peer.dst, (peer.shelf, peer.slot)
        any_mac, any_address = peer.any_mac, peer.any_address
        unpack_from, header_size = AOE_HDR.unpack_from, AOE_HDR.size
        for frame in frames:
            if len(frame) < header_size:
                continue
            dst, src, ethertype, verfl, error, shelf, slot, a_command, tag = unpack_from(frame)
            flight = flights.get(tag)
            if (flight is None or dst != me or ethertype != ETH_P_AOE
                    or not verfl & FLAG_RESPONSE or a_command != command
                    or (src != them and not any_mac)
                    or ((shelf, slot) != address and not any_address)):
                continue  # not ours, a stranger's, or an answer to a tag we gave up on
            del flights[tag]
            self.done += 1
            if verfl & FLAG_ERROR:
                raise AoeErrorReply(f"e{shelf}.{slot} ({mac_to_str(src)}) refused command "
                                    f"{a_command}", error)
            accept(flight[0], frame)


class OneRequest:
    """A single request with a body ready made, as ``Requests``; keeps its answer."""

    count = 1

    def __init__(self, peer: Peer, command: int, body: bytes) -> None:
        self.peer = peer
        self.command = command
        self.body = body
        self.answer: bytes | None = None

    def put(self, index: int, tag: int, out: ReplyBuffer) -> None:
        out.put(self.peer.header(self.command, tag) + self.body)

    def accept(self, index: int, frame: Frame) -> None:
        self.answer = bytes(frame)
