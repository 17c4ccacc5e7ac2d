"""DeviceWaiter: deadlines, sysfs state for AoE, udev monitor vs polling, timeout diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aoeprov.errors import DeviceTimeout
from aoeprov.reconciler.waiting import DeviceWaiter, aoe_sysfs_name, parse_aoe_state


class Clock:
    """Fake time: ``sleep`` advances it and runs a hook (the device appearing meanwhile)."""

    def __init__(self, on_sleep: Any = None) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def make_aoe(root: Path, name: str, state: str) -> None:
    (root / "dev/etherd").mkdir(parents=True, exist_ok=True)
    (root / "dev/etherd" / name).touch()
    sys_dir = root / "sys/block" / aoe_sysfs_name(name)
    sys_dir.mkdir(parents=True, exist_ok=True)
    (sys_dir / "state").write_text(state + "\n")


def test_parse_state() -> None:
    assert parse_aoe_state("up\n") == ("up",)
    assert parse_aoe_state("down,closewait\n") == ("down", "closewait")
    assert aoe_sysfs_name("e0.1") == "etherd!e0.1"


def test_polls_until_the_device_is_up(tmp_path: Path) -> None:
    def appear(n: int) -> None:
        if n == 3:
            make_aoe(tmp_path, "e0.1", "down,closewait")
        if n == 5:
            make_aoe(tmp_path, "e0.1", "up")
    clock = Clock(appear)
    waiter = DeviceWaiter(system_root=tmp_path, poll_interval=0.05, clock=clock, sleep=clock.sleep)
    waited = waiter.wait("/dev/etherd/e0.1", timeout=2, aoe_name="e0.1")
    assert not waiter.uses_monitor   # no /run/udev/control here
    assert len(clock.sleeps) == 5 and waited == pytest.approx(0.25)


def test_timeout_says_what_was_seen(tmp_path: Path) -> None:
    make_aoe(tmp_path, "e0.1", "down,closewait")
    make_aoe(tmp_path, "e9.9", "up")
    clock = Clock()
    waiter = DeviceWaiter(system_root=tmp_path, poll_interval=0.1, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeviceTimeout) as info:
        waiter.wait("/dev/etherd/e0.1", timeout=1, aoe_name="e0.1")
    msg = str(info.value)
    assert "/dev/etherd/e0.1 not ready after 1s" in msg
    assert "its state is down,closewait" in msg
    assert "/dev/etherd has: e0.1, e9.9" in msg
    assert "AoE devices in sysfs: e0.1=down,closewait, e9.9=up" in msg
    assert sum(clock.sleeps) == pytest.approx(1.0)   # the deadline, not a fixed sleep count


def test_timeout_with_nothing_there(tmp_path: Path) -> None:
    clock = Clock()
    waiter = DeviceWaiter(system_root=tmp_path, clock=clock, sleep=clock.sleep)
    with pytest.raises(DeviceTimeout, match="it does not exist; /dev/etherd has: nothing; "
                                            "AoE devices in sysfs: none"):
        waiter.wait("/dev/etherd/e0.1", timeout=0.5, aoe_name="e0.1")


class FakeMonitor:
    def __init__(self, root: Path, clock: Clock) -> None:
        self.root, self.clock = root, clock
        self.started = False
        self.polls: list[float | None] = []

    def start(self) -> None:
        self.started = True

    def poll(self, timeout: float | None = None) -> Any:
        self.polls.append(timeout)
        self.clock.now += 0.01
        if len(self.polls) == 2:
            make_aoe(self.root, "e0.1", "up")
            return object()   # an event
        return None


def test_monitor_started_before_the_wait_and_used(tmp_path: Path) -> None:
    clock = Clock()
    monitors: list[FakeMonitor] = []

    def factory() -> FakeMonitor:
        m = FakeMonitor(tmp_path, clock)
        m.start()
        monitors.append(m)
        return m

    waiter = DeviceWaiter(system_root=tmp_path, monitor_factory=factory, clock=clock,
                          sleep=clock.sleep)
    waiter.start()
    assert monitors and monitors[0].started and waiter.uses_monitor
    waiter.wait("/dev/etherd/e0.1", timeout=3, aoe_name="e0.1")
    assert len(monitors) == 1 and clock.sleeps == []
    assert monitors[0].polls[0] == 0.5   # bounded, so a sysfs state change is seen too


def test_plain_path_without_aoe_state(tmp_path: Path) -> None:
    (tmp_path / "img").touch()
    assert DeviceWaiter(system_root=tmp_path).wait("/img", timeout=0.1) == pytest.approx(0, abs=0.1)


def test_udev_running_detection(tmp_path: Path) -> None:
    assert not DeviceWaiter(system_root=tmp_path).udev_running
    (tmp_path / "run/udev").mkdir(parents=True)
    (tmp_path / "run/udev/control").touch()
    assert DeviceWaiter(system_root=tmp_path).udev_running
