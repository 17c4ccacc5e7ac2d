"""``aoeprov discover``: find AoE devices at boot or by hand, with deadlines, no sleeps.

Used by the initiator's boot unit (``aoeprov-initiator.service``): wait for each
interface's link (carrier, i.e. LOWER_UP), set the aoe driver's interface list,
trigger discovery, then wait for each named device to exist and be ``up``. The
device waiter is started before the trigger so no udev event is missed. One
deadline (``--timeout``) covers the whole run. The steps after the links are
``resources.discovery.discovery_steps``, the ones ``apply`` plans, run at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aoeprov.errors import DeviceTimeout, HostError
from aoeprov.reconciler.waiting import DeviceWaiter

if TYPE_CHECKING:
    from aoeprov.runner import Runner

# aoeprov.resources.discovery, the runner and sh are imported in discover(): the other
# commands never need them

NAME = "discover"
HELP = "set the AoE interface list, trigger discovery and wait for devices (boot unit)"
LOG = logging.getLogger(__name__)

AOE_NAME = re.compile(r"^e\d+\.\d+$")
LINK_POLL = 0.05


@dataclass
class DiscoverReport:
    interfaces: dict[str, float] = field(default_factory=dict)  # iface -> seconds until carrier
    iflist: list[str] = field(default_factory=list)
    devices: dict[str, float] = field(default_factory=dict)     # eX.Y -> seconds until up


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iface", action="append", default=[], metavar="IF",
                        help="interface AoE may use (repeatable); waits for its link, then "
                             "sets aoe_iflist")
    parser.add_argument("--wait", action="append", default=[], metavar="eX.Y",
                        help="device to wait for until it is up (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="deadline for the whole run, seconds (default 30)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def carrier(system_root: Path, iface: str) -> bool:
    """Link up at the physical layer (LOWER_UP): sysfs ``carrier`` reads 1."""
    try:
        return (system_root / "sys/class/net" / iface / "carrier").read_text().strip() == "1"
    except OSError:  # EINVAL while the interface is administratively down
        return False


def wait_link(system_root: Path, iface: str, deadline: float,
              clock: Callable[[], float] = time.monotonic) -> float:
    begin = clock()
    if not (system_root / "sys/class/net" / iface).exists():
        raise HostError(f"interface {iface} does not exist")
    while not carrier(system_root, iface):
        if clock() >= deadline:
            raise DeviceTimeout(f"interface {iface} has no link (LOWER_UP) before the deadline")
        time.sleep(LINK_POLL)
    return clock() - begin


def discover(ifaces: Sequence[str], waits: Sequence[str], timeout: float, *,
             system_root: Path = Path("/"), waiter: DeviceWaiter | None = None,
             runner: Runner | None = None) -> DiscoverReport:
    """Wait for the links, then run the discovery steps ``apply`` would plan, at once."""
    for name in waits:
        if not AOE_NAME.match(name):
            raise HostError(f"--wait {name!r}: expected an AoE name like e0.1")
    from aoeprov.reconciler.actions import RunCommand, WaitForDevice
    from aoeprov.resources.discovery import DISCOVER, IFLIST, discovery_steps, gather_live
    from aoeprov.runner import ShRunner

    runner = runner or ShRunner()
    deadline = time.monotonic() + timeout
    waiter = waiter or DeviceWaiter(system_root=system_root)
    report = DiscoverReport()
    with waiter:  # listening before anything is triggered
        for iface in ifaces:
            report.interfaces[iface] = wait_link(system_root, iface, deadline)
        facts = gather_live(system_root)
        if ifaces and facts.iflist is None:
            raise HostError(f"{IFLIST} is missing: the aoe module is not loaded")
        if not (system_root / DISCOVER.lstrip("/")).exists():
            raise HostError(f"{DISCOVER} is missing: the aoe module is not loaded")
        steps = discovery_steps(facts, tuple(ifaces) or None, waits, trigger=True,
                                system_root=system_root)
        report.devices = {name: 0.0 for name in waits}   # up already unless waited for below
        for action in steps.actions:
            if isinstance(action, WaitForDevice) and action.aoe_name:
                remaining = max(0.0, deadline - time.monotonic())
                report.devices[action.aoe_name] = waiter.wait(action.target, remaining,
                                                              aoe_name=action.aoe_name)
            elif isinstance(action, RunCommand):
                runner.run(action.argv, stdin=action.stdin, ok_codes=action.ok_codes)
        report.iflist = list(gather_live(system_root).iflist or ())
    return report


def run(args: argparse.Namespace) -> int:
    report = discover(args.iface, args.wait, args.timeout)
    if args.json:
        json.dump(asdict(report), sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    for iface, took in report.interfaces.items():
        sys.stdout.write(f"link {iface}: up after {took:.3f}s\n")
    sys.stdout.write(f"aoe_iflist: {' '.join(report.iflist) or '(all interfaces)'}\n")
    for name, took in report.devices.items():
        sys.stdout.write(f"/dev/etherd/{name}: up after {took:.3f}s\n")
    return 0
