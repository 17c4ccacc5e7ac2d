"""Interface state from rtnetlink: which links are up, and their MTU, as they change.

The target follows its links instead of finding out from failed sends: a link
that goes down is waited for, a link that comes back is announced again, an MTU
change is advertised at once (rather than after a SIGHUP), so initiators never
keep sending frames the link can no longer carry. The kernel tells every
``NETLINK_ROUTE`` socket subscribed to ``RTMGRP_LINK`` about each change with an
``RTM_NEWLINK``/``RTM_DELLINK`` message; ``dump`` asks for the current state of
every interface once (``RTM_GETLINK`` with ``NLM_F_DUMP``).

Message layout (``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``),
native byte order, every part aligned to 4 bytes::

    nlmsghdr   u32 len, u16 type, u16 flags, u32 seq, u32 pid
    ifinfomsg  u8 family, pad, u16 type, s32 index, u32 flags, u32 change
    rtattr     u16 len, u16 type, payload (IFLA_IFNAME: NUL-terminated, IFLA_MTU: u32)

``parse_messages`` is a pure function of the bytes read, so the unit tests feed
it captured and hand-built messages.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from aoeprov.errors import ProtocolError

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
RTATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTMGRP_LINK = 0x1
IFLA_IFNAME, IFLA_MTU = 3, 4
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
RECV_SIZE = 1 << 16
DUMP_TIMEOUT = 2.0  # seconds; the kernel answers a link dump at once


def _align(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True)
class LinkEvent:
    """One interface as an RTM_NEWLINK/RTM_DELLINK message describes it."""

    ifname: str
    index: int
    flags: int
    mtu: int | None
    deleted: bool = False

    @property
    def up(self) -> bool:
        """Administratively up with a carrier: frames can go out and come in."""
        return (not self.deleted and bool(self.flags & IFF_UP)
                and bool(self.flags & (IFF_RUNNING | IFF_LOWER_UP)))


def _attributes(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:
            raise ProtocolError(f"netlink attribute of length {length} at byte {offset} "
                                f"overruns its message")
        yield kind, data[offset + RTATTR.size:offset + length]
        offset += _align(length)


def parse_messages(data: bytes) -> list[LinkEvent]:
    """The link messages in one datagram read from an rtnetlink socket.

    Other message types (NLMSG_DONE, errors, anything else) are skipped;
    a message whose lengths do not add up raises ``ProtocolError``.
    """
    events = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise ProtocolError(f"netlink message of length {length} at byte {offset} "
                                f"overruns the {len(data)} bytes read")
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            body = offset + NLMSGHDR.size
            if length < NLMSGHDR.size + IFINFOMSG.size:
                raise ProtocolError(f"link message of {length} bytes is too short")
            _family, _type, index, flags, _change = IFINFOMSG.unpack_from(data, body)
            name, mtu = "", None
            for attr, value in _attributes(data, body + IFINFOMSG.size, offset + length):
                if attr == IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif attr == IFLA_MTU and len(value) >= U32.size:
                    mtu = U32.unpack_from(value)[0]
            if name:
                events.append(LinkEvent(name, index, flags, mtu, kind == RTM_DELLINK))
        offset += _align(length)
    return events


def dump_request(seq: int) -> bytes:
    """An RTM_GETLINK dump request (every interface)."""
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                         seq, 0) + body


def _open(groups: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def dump() -> dict[str, LinkEvent]:
    """Every interface of this network namespace, now, by name."""
    with _open(0) as sock:
        sock.settimeout(DUMP_TIMEOUT)
        sock.send(dump_request(1))
        found: dict[str, LinkEvent] = {}
        while True:
            data = sock.recv(RECV_SIZE)
            for event in parse_messages(data):
                found[event.ifname] = event
            if _done(data):
                return found


def _done(data: bytes) -> bool:
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, *_rest = NLMSGHDR.unpack_from(data, offset)
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if length < NLMSGHDR.size:
            return True
        offset += _align(length)
    return False


class LinkMonitor:
    """Link changes as they happen: register ``fileno`` for reading, then ``read``."""

    def __init__(self) -> None:
        self._sock = _open(RTMGRP_LINK)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def current(self) -> dict[str, LinkEvent]:
        """Every interface now (a dump on a socket of its own)."""
        return dump()

    def read(self) -> list[LinkEvent]:
        """The changes queued since the last call (none: an empty list); never waits.

        An overrun socket (ENOBUFS: changes were lost) answers with the full current
        state instead, which is what the changes would have led to.
        """
        events: list[LinkEvent] = []
        while True:
            try:
                data = self._sock.recv(RECV_SIZE)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                return events + list(dump().values())
            events.extend(parse_messages(data))

    def close(self) -> None:
        self._sock.close()
