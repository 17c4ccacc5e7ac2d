"""DeviceWaiter with a real pyudev monitor (libudev), here where no udevd sends events.

The monitor opens and starts, hears nothing, and the bounded polls still see a
device node appear before the deadline; a node that never appears times out
with the diagnostic, after the deadline and not much later.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aoeprov.errors import DeviceTimeout
from aoeprov.reconciler.waiting import DeviceWaiter, udev_monitor

pytestmark = pytest.mark.storage


def test_real_monitor_then_path_appears(tmp_path: Path) -> None:
    node = tmp_path / "e0.1"
    waiter = DeviceWaiter(monitor_factory=udev_monitor)
    waiter.start()                 # before the "trigger", as apply does
    assert waiter.uses_monitor
    timer = threading.Timer(0.3, node.touch)
    timer.start()
    try:
        waited = waiter.wait(str(node), timeout=5)
    finally:
        timer.cancel()
    assert 0.25 <= waited < 1.5


def test_real_monitor_deadline(tmp_path: Path) -> None:
    waiter = DeviceWaiter(monitor_factory=udev_monitor)
    begin = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"not ready after 0\.7s; it does not exist"):
        waiter.wait(str(tmp_path / "never"), timeout=0.7, aoe_name="e9.9")
    assert 0.7 <= time.monotonic() - begin < 1.5
