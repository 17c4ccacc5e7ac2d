"""AoE discovery on initiators: the interface list, the discover trigger, the wait.

Facts come from the live kernel (never under ``--root``): the aoe module's
``aoe_iflist`` parameter and the ``etherd!eX.Y`` block devices in sysfs with their
``state``. A spec disk that is missing or not ``up`` gets a discover trigger and a
``WaitForDevice`` barrier; until then it is in the state as predicted with
unknown contents, so the partition and filesystem planners plan provisionally and
decide after the device appeared. Disks given with ``--device`` are not
discovered. Under ``--root`` the live kernel is left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aoeprov.reconciler.actions import Action, Noop, Op, ResourcePlan, RunCommand, WaitForDevice
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import BlockDeviceState, State
from aoeprov.resources._blockdev import human_size
from aoeprov.spec.queries import aoe_iflist, mapped_path, parse_iflist

LOG = logging.getLogger(__name__)

KIND = "discovery"
IFLIST = "/sys/module/aoe/parameters/aoe_iflist"
ETHERD = "/dev/etherd"
DISCOVER = f"{ETHERD}/discover"
SYS_BLOCK = "/sys/block"
DEVICE_TIMEOUT = 30.0


@dataclass(frozen=True)
class AoeDevice:
    name: str                  # e0.1
    state: tuple[str, ...] = ()  # ("up",), ("down", "closewait")...
    size: int | None = None    # bytes

    @property
    def up(self) -> bool:
        return self.state[:1] == ("up",)


@dataclass(frozen=True)
class DiscoveryFacts:
    aoe_loaded: bool = False
    iflist: tuple[str, ...] | None = None   # None: parameter not readable
    devices: tuple[AoeDevice, ...] = ()

    def device(self, name: str) -> AoeDevice | None:
        return next((d for d in self.devices if d.name == name), None)


def parse_aoe_device(sysfs_name: str, state_text: str, size_text: str | None) -> AoeDevice:
    """``etherd!e0.1`` + its ``state`` and ``size`` (512-byte sectors) files."""
    name = sysfs_name.removeprefix("etherd!")
    size = int(size_text) * 512 if size_text and size_text.strip().isdigit() else None
    return AoeDevice(name, tuple(w for w in state_text.strip().split(",") if w), size)


def gather_live(system_root: Path = Path("/")) -> DiscoveryFacts:
    def real(p: str) -> Path:
        return system_root / p.lstrip("/")
    loaded = real("/sys/module/aoe").is_dir()
    try:
        iflist: tuple[str, ...] | None = parse_iflist(real(IFLIST).read_text())
    except OSError:
        iflist = None
    devices = []
    sys_block = real(SYS_BLOCK)
    names = sorted(n for n in os.listdir(sys_block) if n.startswith("etherd!")) \
        if sys_block.is_dir() else []
    for n in names:
        try:
            state = (sys_block / n / "state").read_text()
        except OSError:
            state = ""
        try:
            size: str | None = (sys_block / n / "size").read_text()
        except OSError:
            size = None
        devices.append(parse_aoe_device(n, state, size))
    return DiscoveryFacts(loaded, iflist, tuple(devices))


def gather(ctx: GatherContext) -> DiscoveryFacts:
    if not ctx.me.is_initiator or not ctx.spec.disks_on(ctx.me.name):
        return DiscoveryFacts()
    return gather_live()


def plan(ctx: PlanContext, facts: DiscoveryFacts, state: State) -> ResourcePlan:
    disks = ctx.spec.disks_on(ctx.me.name) if ctx.me.is_initiator else ()
    if not disks:
        return ResourcePlan()
    mapped = [Noop(KIND, disk.device_path, f"given as {local} with --device: not discovered")
              for disk in disks if (local := mapped_path(ctx.device_map, disk))]
    names = [d.aoe_name for d in disks if not mapped_path(ctx.device_map, d)]
    if ctx.sandboxed:
        steps = discovery_steps(facts, None, names)
        waits = [_sandbox_wait(a, state) for a in steps.actions if isinstance(a, WaitForDevice)]
        return ResourcePlan(tuple(waits), (*mapped, *steps.noops))
    steps = discovery_steps(facts, aoe_iflist(ctx.me), names)
    for action in steps.actions:
        if isinstance(action, WaitForDevice):   # later planners plan on it provisionally
            state.devices[action.target] = BlockDeviceState(
                path=action.target, exists=True, predicted=True, contents_known=False)
    return ResourcePlan(steps.actions, (*mapped, *steps.noops))


def discovery_steps(facts: DiscoveryFacts, want: tuple[str, ...] | None, names: Sequence[str],
                    *, trigger: bool = False, system_root: Path = Path("/")) -> ResourcePlan:
    """Set ``aoe_iflist`` to ``want`` (None: leave it), trigger discovery, wait for each device
    of ``names`` (eX.Y) that is not up; ``trigger``: trigger even when every one is up.

    The one implementation of discovery: ``apply`` plans it (``plan``), the boot unit's
    ``aoeprov discover`` runs it at once (paths then under ``system_root``).
    """
    actions: list[Action] = []
    noops: list[Noop] = []
    missing = []
    for name in names:
        dev = facts.device(name)
        if dev is not None and dev.up:
            noops.append(Noop(KIND, f"{ETHERD}/{name}", f"{name} is up "
                                                        f"({human_size(dev.size or 0)})"))
        else:
            missing.append((name, dev))
    # the module resource leaves a differing aoe_iflist to this step (it is writable live);
    # an unloaded module (None) is loaded by this plan, then gets the list if discovery is due
    if want is not None and facts.iflist is not None and set(facts.iflist) == set(want):
        noops.append(Noop(KIND, IFLIST, f"aoe_iflist is {' '.join(want)!r}"))
    elif want is not None and (facts.iflist is not None or missing):
        actions.append(RunCommand(
            kind=KIND, target=IFLIST, op=Op.CHANGE,
            summary=f"set aoe_iflist to {' '.join(want)!r} (was "
                    f"{' '.join(facts.iflist) if facts.iflist is not None else 'unreadable'!r})",
            argv=("tee", _under(system_root, IFLIST)), stdin=" ".join(want) + "\n"))
    if missing or trigger:
        actions.append(RunCommand(kind=KIND, target=DISCOVER, op=Op.RUN,
                                  summary="trigger AoE discovery",
                                  argv=("tee", _under(system_root, DISCOVER)), stdin="\n"))
    for name, dev in missing:
        seen = f" (now {','.join(dev.state) or 'no state'})" if dev is not None else ""
        actions.append(WaitForDevice(
            kind=KIND, target=f"{ETHERD}/{name}", op=Op.WAIT, aoe_name=name,
            timeout=DEVICE_TIMEOUT, summary=f"wait for {name} to be up{seen}"))
    return ResourcePlan(tuple(actions), tuple(noops))


def _under(system_root: Path, path: str) -> str:
    return path if system_root == Path("/") else str(system_root / path.lstrip("/"))


def _sandbox_wait(wait: WaitForDevice, state: State) -> WaitForDevice:
    """Under --root nothing discovers the device: its wait fails at once, the rest is
    provisional."""
    state.devices[wait.target] = BlockDeviceState(
        path=wait.target, exists=True, predicted=True, contents_known=False)
    name = wait.aoe_name
    return replace(
        wait, summary=f"wait for {name} to be up (--root: nothing discovers it, apply stops "
                      f"here; rehearse with --device {name}=IMAGE)",
        unavailable=f"--root gives a sandbox without AoE discovery; run with --device "
                    f"{name}=IMAGE to rehearse on an image")
