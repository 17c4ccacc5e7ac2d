"""``aoeprov stat``'s "does the target still answer" against the built-in target over veth.

No kernel initiator exists on this machine, so the sysfs side is covered by unit
tests; here the question is asked for real: a config query to a shelf.slot on an
interface inside a test namespace, answered (or not) by ``aoeprov target``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aoeprov.cli.stat import AoeDeviceStat, ask_target
from tests.conftest import require_tools
from tests.net import netlab

pytestmark = pytest.mark.net


def test_answering_and_silent_targets(tmp_path: Path) -> None:
    require_tools("ip")
    image = netlab.make_image(tmp_path / "disk.img", 4 << 20, pattern=False)
    with netlab.lab_context() as lab:
        netlab.start_server(lab, "builtin", netlab.Export(3, 4, image), log=tmp_path / "t.log")

        def ask(name: str, timeout: float) -> AoeDeviceStat:
            dev = AoeDeviceStat(device=name, size=None, netif=(lab.client_if,), payload=None,
                                state="up")
            with netlab.in_netns(lab.client_ns):
                return ask_target(dev, timeout)

        netlab.wait_until(lambda: ask("e3.4", 0.3).answers == "yes", 15, "the target to answer")
        found = ask("e3.4", 1.0)
        assert found.answers == "yes" and found.detail == f"{lab.server_mac()} on {lab.client_if}"
        silent = ask("e3.5", 0.3)
        assert silent.answers == "no", silent
        gone = AoeDeviceStat("e3.4", None, ("nosuchif0",), None, "up")
        with netlab.in_netns(lab.client_ns):
            assert ask_target(gone, 0.3).answers == "unknown"
