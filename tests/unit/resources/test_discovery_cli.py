"""Discovery facts and ``aoeprov discover`` against a fake /sys and /dev tree."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aoeprov.cli.discover import discover
from aoeprov.errors import DeviceTimeout, HostError
from aoeprov.resources.discovery import AoeDevice, gather_live


def fake_system(root: Path, *, carrier: str = "1", loaded: bool = True) -> Path:
    net = root / "sys/class/net/eth0"
    net.mkdir(parents=True)
    (net / "carrier").write_text(carrier + "\n")
    if loaded:
        params = root / "sys/module/aoe/parameters"
        params.mkdir(parents=True)
        (params / "aoe_iflist").write_text("\n")
        (root / "dev/etherd").mkdir(parents=True)
        (root / "dev/etherd/discover").write_text("")
    (root / "sys/block").mkdir(parents=True, exist_ok=True)
    return root


def add_device(root: Path, name: str, state: str) -> None:
    sysdir = root / "sys/block" / f"etherd!{name}"
    sysdir.mkdir(parents=True, exist_ok=True)
    (sysdir / "size").write_text("41943040\n")
    (sysdir / "state").write_text(state + "\n")
    (root / "dev/etherd" / name).write_text("")


def test_gather_live(tmp_path: Path) -> None:
    root = fake_system(tmp_path)
    add_device(root, "e0.1", "up")
    facts = gather_live(root)
    assert facts.aoe_loaded and facts.iflist == ()
    assert facts.devices == (AoeDevice("e0.1", ("up",), 41943040 * 512),)


def test_discover_sets_iflist_triggers_and_waits(tmp_path: Path) -> None:
    root = fake_system(tmp_path)
    trigger = root / "dev/etherd/discover"

    def target_answers() -> None:
        # the "kernel": a device appears only after the discover trigger was written
        while trigger.read_text() != "\n":
            threading.Event().wait(0.005)
        add_device(root, "e0.1", "up")

    answer = threading.Thread(target=target_answers, daemon=True)
    answer.start()
    report = discover(["eth0"], ["e0.1"], 5.0, system_root=root)
    answer.join(1)
    assert (root / "sys/module/aoe/parameters/aoe_iflist").read_text() == "eth0\n"
    assert report.iflist == ["eth0"]
    assert set(report.devices) == {"e0.1"} and report.devices["e0.1"] < 5.0


def test_device_that_stays_down_times_out_saying_what_was_seen(tmp_path: Path) -> None:
    root = fake_system(tmp_path)
    add_device(root, "e0.1", "down,closewait")
    with pytest.raises(DeviceTimeout, match="down,closewait"):
        discover([], ["e0.1"], 0.2, system_root=root)


def test_no_link_times_out(tmp_path: Path) -> None:
    root = fake_system(tmp_path, carrier="0")
    with pytest.raises(DeviceTimeout, match="eth0 has no link"):
        discover(["eth0"], [], 0.2, system_root=root)


def test_without_the_aoe_module(tmp_path: Path) -> None:
    root = fake_system(tmp_path, loaded=False)
    with pytest.raises(HostError, match="aoe module is not loaded"):
        discover(["eth0"], [], 1.0, system_root=root)
    with pytest.raises(HostError, match="expected an AoE name"):
        discover([], ["sda"], 1.0, system_root=root)
