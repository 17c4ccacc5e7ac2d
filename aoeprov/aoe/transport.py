"""AoE on an Ethernet link: the raw socket each side opens, and the frames it keeps.

A target (``responses=False``) keeps only requests, a client (``responses=True``)
only responses: the test is the response flag in byte ``VERFL_OFFSET``, run by the
kernel (``link.bpf``) so the other half of the traffic never wakes us.
"""

from __future__ import annotations

from aoeprov.aoe.wire import AOE_HDR, ETH_P_AOE, FLAG_RESPONSE, VERFL_OFFSET
from aoeprov.link.bpf import ByteFilter
from aoeprov.link.packet import DEFAULT_SOCKET_BUFFER, PacketSocket


def side_filter(responses: bool) -> ByteFilter:
    """The AoE frames one side keeps: responses (a client) or requests (a target)."""
    return ByteFilter(offset=VERFL_OFFSET, bit=FLAG_RESPONSE, set=responses,
                      min_length=AOE_HDR.size)


class EthernetTransport(PacketSocket):
    """An AF_PACKET socket on ``ifname`` for ethertype 0x88A2, keeping one side's half."""

    def __init__(self, ifname: str, *, responses: bool,
                 buffer_bytes: int = DEFAULT_SOCKET_BUFFER) -> None:
        self.responses = responses
        super().__init__(ifname, ETH_P_AOE, side_filter(responses), protocol="AoE",
                         buffer_bytes=buffer_bytes)
