"""rtnetlink link messages: parsed from bytes, and read live from this namespace."""

from __future__ import annotations

import socket

import pytest

from aoeprov.errors import ProtocolError
from aoeprov.targetd import netlink
from aoeprov.targetd.netlink import (
    IFF_LOWER_UP,
    IFF_UP,
    IFINFOMSG,
    NLMSGHDR,
    RTATTR,
    RTM_DELLINK,
    RTM_NEWLINK,
    LinkEvent,
    parse_messages,
)


def attr(kind: int, value: bytes) -> bytes:
    raw = RTATTR.pack(RTATTR.size + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def message(kind: int, index: int, flags: int, name: str, mtu: int | None) -> bytes:
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 1, index, flags, 0xFFFFFFFF)
    body += attr(netlink.IFLA_IFNAME, name.encode() + b"\0")
    if mtu is not None:
        body += attr(netlink.IFLA_MTU, netlink.U32.pack(mtu))
    body += attr(99, b"\x01\x02\x03")  # unknown attributes are skipped
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, 0, 0, 0) + body


def test_link_messages_are_parsed() -> None:
    data = (message(RTM_NEWLINK, 5, IFF_UP | IFF_LOWER_UP, "veth0", 9000)
            + message(RTM_NEWLINK, 6, IFF_UP, "tap1", 1500)
            + message(RTM_DELLINK, 7, 0, "gone0", None)
            + NLMSGHDR.pack(NLMSGHDR.size, netlink.NLMSG_DONE, 0, 0, 0))
    events = parse_messages(data)
    assert events == [LinkEvent("veth0", 5, IFF_UP | IFF_LOWER_UP, 9000),
                      LinkEvent("tap1", 6, IFF_UP, 1500),
                      LinkEvent("gone0", 7, 0, None, deleted=True)]
    assert [e.up for e in events] == [True, False, False]  # up needs a carrier too


@pytest.mark.parametrize("cut", [NLMSGHDR.size + 4, 40])
def test_truncated_messages_raise(cut: int) -> None:
    data = message(RTM_NEWLINK, 5, IFF_UP, "veth0", 1500)
    broken = NLMSGHDR.pack(len(data), RTM_NEWLINK, 0, 0, 0) + data[NLMSGHDR.size:cut]
    with pytest.raises(ProtocolError, match="overruns"):
        parse_messages(broken)


def test_a_bad_attribute_length_raises() -> None:
    body = IFINFOMSG.pack(0, 1, 5, 0, 0) + RTATTR.pack(200, netlink.IFLA_MTU) + bytes(4)
    with pytest.raises(ProtocolError, match="attribute"):
        parse_messages(NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWLINK, 0, 0, 0) + body)


def test_the_live_dump_lists_loopback() -> None:
    links = netlink.dump()
    assert links["lo"].index == socket.if_nametoindex("lo") and links["lo"].mtu
