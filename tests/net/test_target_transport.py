"""EthernetTransport on a real veth pair: each side hears only its half of the traffic."""

from __future__ import annotations

import pytest

from aoeprov.aoe.transport import EthernetTransport
from aoeprov.aoe.wire import (
    BROADCAST_MAC,
    AoeHeader,
    Command,
    ConfigArg,
    Frame,
    decode_frame,
    mac_to_str,
)
from aoeprov.errors import HostError
from tests.net import netlab

pytestmark = pytest.mark.net


def config_frame(src: bytes, *, tag: int, response: bool) -> bytes:
    header = AoeHeader(BROADCAST_MAC, src, 1, 1, Command.CONFIG, tag,
                       flags=0x08 if response else 0)
    return Frame(header, ConfigArg(16, 1, 2, 0)).pack()


def target_side(lab: netlab.Lab) -> EthernetTransport:
    with netlab.in_netns(lab.server_ns):
        return EthernetTransport(lab.server_if, responses=False)


def test_each_side_keeps_only_its_half(lab: netlab.Lab) -> None:
    with target_side(lab) as target, netlab.open_transport(lab) as client:
        assert mac_to_str(target.mac) == lab.server_mac()
        assert mac_to_str(client.mac) == lab.client_mac
        assert target.mtu == client.mtu == 1500
        # the client sends a response-flagged frame and a request: the target hears the request
        client.send(config_frame(client.mac, tag=1, response=True))
        client.send(config_frame(client.mac, tag=2, response=False))
        got = target.recv_batch(10, 1.0)
        assert [decode_frame(f).header.tag for f in got] == [2]
        # the target answers; it never hears its own frame, the client hears only the response
        target.send(config_frame(target.mac, tag=3, response=True))
        target.send(config_frame(target.mac, tag=4, response=False))
        got = client.recv_batch(10, 1.0)
        assert [decode_frame(f).header.tag for f in got] == [3]
        assert target.recv(0.2) is None and client.recv(0.2) is None


def test_a_burst_is_drained_in_one_call(lab: netlab.Lab) -> None:
    with target_side(lab) as target, netlab.open_transport(lab) as client:
        for tag in range(50):
            client.send(config_frame(client.mac, tag=tag, response=False))
        assert target.recv(1.0) is not None
        rest = target.recv_batch(100, 0)
        assert len(rest) == 49 and [decode_frame(f).header.tag for f in rest] == list(range(1, 50))


def test_missing_interface_is_a_host_error(lab: netlab.Lab) -> None:
    with netlab.in_netns(lab.server_ns), pytest.raises(HostError, match="nosuchif"):
        EthernetTransport("nosuchif", responses=False)
