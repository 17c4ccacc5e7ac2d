"""Waiting for block devices with a deadline, never a fixed sleep.

``DeviceWaiter`` is created and started at the start of an apply (or of
``aoeprov discover``), before anything triggers a device: where udevd runs
(``/run/udev/control`` exists) it opens a pyudev monitor on the ``udev`` netlink
source filtered to ``block``, so no event between the trigger and the wait is
lost. Each ``wait`` checks the path first, then sleeps in the monitor's
``poll`` until an event or the deadline. Without udevd (no one would send those
events) it polls the path at a short interval on the same deadline. For AoE
devices the device also has to be ``up`` in sysfs (``down,closewait`` is a real
state). A timeout raises ``DeviceTimeout`` saying what was there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from aoeprov.errors import DeviceTimeout

LOG = logging.getLogger(__name__)

UDEV_CONTROL = "run/udev/control"
ETHERD_DIR = "dev/etherd"


class Monitor(Protocol):
    def start(self) -> None: ...

    def poll(self, timeout: float | None = None) -> Any: ...


def udev_monitor() -> Monitor:
    """A started pyudev monitor of udev-processed block events."""
    import pyudev

    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source="udev")
    monitor.filter_by(subsystem="block")
    monitor.start()
    return monitor


def aoe_sysfs_name(aoe_name: str) -> str:
    """``e0.1`` -> ``etherd!e0.1`` (the kernel turns ``/`` in disk names into ``!``)."""
    return f"etherd!{aoe_name}"


def parse_aoe_state(text: str) -> tuple[str, ...]:
    """sysfs ``state`` (``up``, ``down,closewait``, ``up,kickme``...) -> its words."""
    return tuple(w for w in text.strip().split(",") if w)


class DeviceWaiter:
    """Waits for block devices on this machine. Paths are real (devices are never under --root).

    ``system_root`` exists for tests (a fake /dev and /sys tree); ``monitor_factory``
    None means: a pyudev monitor when udevd runs, plain polling otherwise.
    """

    def __init__(self, *, system_root: Path = Path("/"), poll_interval: float = 0.02,
                 monitor_factory: Callable[[], Monitor] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.system_root = system_root
        self.poll_interval = poll_interval
        self._monitor_factory = monitor_factory
        self._monitor: Monitor | None = None
        self._clock = clock
        self._sleep = sleep

    @property
    def udev_running(self) -> bool:
        return (self.system_root / UDEV_CONTROL).exists()

    @property
    def uses_monitor(self) -> bool:
        return self._monitor is not None

    def start(self) -> None:
        """Start listening; call before the action that triggers devices."""
        if self._monitor is not None:
            return
        if self._monitor_factory is not None:
            self._monitor = self._monitor_factory()
        elif self.udev_running:
            try:
                self._monitor = udev_monitor()
            except (ImportError, OSError) as exc:
                LOG.warning("no udev monitor (%s); polling device paths instead", exc)
        LOG.debug("device waiter: %s", "udev monitor" if self._monitor else "polling")

    def stop(self) -> None:
        self._monitor = None

    def __enter__(self) -> DeviceWaiter:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _real(self, path: str) -> Path:
        return self.system_root / path.lstrip("/")

    def ready(self, path: str, aoe_name: str | None = None) -> bool:
        if not self._real(path).exists():
            return False
        if aoe_name is None:
            return True
        state = self.aoe_state(aoe_name)
        return bool(state) and state[0] == "up"

    def aoe_state(self, aoe_name: str) -> tuple[str, ...]:
        try:
            text = (self.system_root / "sys/block" / aoe_sysfs_name(aoe_name) / "state").read_text()
        except OSError:
            return ()
        return parse_aoe_state(text)

    def wait(self, path: str, timeout: float, aoe_name: str | None = None) -> float:
        """Seconds until ``path`` existed (and, for AoE, was up); ``DeviceTimeout`` otherwise."""
        self.start()
        begin = self._clock()
        deadline = begin + timeout
        while True:
            if self.ready(path, aoe_name):
                waited = self._clock() - begin
                LOG.info("%s ready after %.3fs", path, waited)
                return waited
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeviceTimeout(self.diagnose(path, timeout, aoe_name))
            if self._monitor is not None:
                # an event wakes us at once; the bound re-checks sysfs state, which changes
                # without a block event
                event = self._monitor.poll(timeout=min(remaining, 0.5))
                if event is not None:
                    LOG.debug("udev event %s %s", getattr(event, "action", "?"),
                              getattr(event, "device_node", event))
            else:
                self._sleep(min(remaining, self.poll_interval))

    def diagnose(self, path: str, timeout: float, aoe_name: str | None) -> str:
        """What was there when a wait timed out."""
        parts = [f"{path} not ready after {timeout:g}s"]
        if self._real(path).exists() and aoe_name:
            parts.append(f"it exists but its state is {','.join(self.aoe_state(aoe_name)) or '?'}")
        else:
            parts.append("it does not exist")
        etherd = self.system_root / ETHERD_DIR
        names = sorted(p.name for p in etherd.iterdir()) if etherd.is_dir() else []
        parts.append(f"/dev/etherd has: {', '.join(names) or 'nothing'}")
        states = []
        sys_block = self.system_root / "sys/block"
        if sys_block.is_dir():
            for d in sorted(sys_block.glob("etherd!*")):
                try:
                    state = (d / "state").read_text().strip()
                except OSError:
                    state = "?"
                states.append(f"{d.name.removeprefix('etherd!')}={state}")
        parts.append(f"AoE devices in sysfs: {', '.join(states) or 'none'}")
        parts.append("udev monitor" if self._monitor else "no udevd: polled the path")
        return "; ".join(parts)
