"""The lab's private networks: a network namespace holding one bridge per network
(``br0``, ``br1``...) and one tap per VM on each.

AoE frames of the lab never leave this namespace: qemu runs inside it and opens its
tap there, and nothing in it is connected to an interface of the host.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aoeprov.errors import CommandError, LabError
from aoeprov.runner import Runner

LOG = logging.getLogger(__name__)

BRIDGE = "br0"  # the first network's


def bridge(network: int) -> str:
    return f"br{network}"


@dataclass(frozen=True)
class LabNetwork:
    netns: str
    mtu: int

    def exec_argv(self, *argv: str) -> tuple[str, ...]:
        """``argv`` run inside the namespace."""
        return ("ip", "netns", "exec", self.netns, *argv)

    def create(self, runner: Runner, networks: Sequence[Sequence[str]]) -> None:
        """One bridge per entry of ``networks``, holding that entry's taps."""
        if self.exists(runner):
            raise LabError(f"network: namespace {self.netns} already exists "
                           "(is a lab running? `aoeprov lab down` removes it)")
        runner.run(("ip", "netns", "add", self.netns))
        try:
            ns = ("ip", "-n", self.netns)
            runner.run((*ns, "link", "set", "lo", "up"))
            for index, taps in enumerate(networks):
                br = bridge(index)
                runner.run((*ns, "link", "add", br, "mtu", str(self.mtu), "type", "bridge"))
                for tap in taps:
                    runner.run((*ns, "tuntap", "add", "dev", tap, "mode", "tap"))
                    runner.run((*ns, "link", "set", tap, "mtu", str(self.mtu), "master", br,
                                "up"))
                # no STP and no forwarding delay: taps forward at once
                runner.run((*ns, "link", "set", br, "type", "bridge", "stp_state", "0",
                            "forward_delay", "0"))
                runner.run((*ns, "link", "set", br, "up"))
        except CommandError:
            self.remove(runner)
            raise

    def exists(self, runner: Runner) -> bool:
        out = runner.run(("ip", "netns", "list")).stdout
        return any(line.split()[0] == self.netns for line in out.splitlines() if line.strip())

    def remove(self, runner: Runner) -> None:
        if self.exists(runner):
            # deleting the namespace deletes the bridge and taps in it
            runner.run(("ip", "netns", "delete", self.netns))
