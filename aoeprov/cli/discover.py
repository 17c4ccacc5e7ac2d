"""``aoeprov discover``: find AoE devices at boot or by hand, with deadlines, no sleeps.

Used by the initiator's boot unit (``aoeprov-initiator.service``): wait for each
interface's link (carrier, i.e. LOWER_UP), set the aoe driver's interface list,
trigger discovery, then wait for each named device to exist and be ``up``. The
device waiter is started before the trigger so no udev event is missed. One
deadline (``--timeout``) covers the whole run.
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

from aoeprov.errors import DeviceTimeout, HostError
from aoeprov.reconciler.waiting import DeviceWaiter

# aoeprov.resources.discovery (and with it the runner and sh) is imported in discover():
# the boot unit runs this command early, and the other commands never need it

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
             system_root: Path = Path("/"), waiter: DeviceWaiter | None = None) -> DiscoverReport:
    for name in waits:
        if not AOE_NAME.match(name):
            raise HostError(f"--wait {name!r}: expected an AoE name like e0.1")
    from aoeprov.resources.discovery import DISCOVER, IFLIST, parse_iflist

    deadline = time.monotonic() + timeout
    waiter = waiter or DeviceWaiter(system_root=system_root)
    report = DiscoverReport()
    with waiter:  # listening before anything is triggered
        for iface in ifaces:
            report.interfaces[iface] = wait_link(system_root, iface, deadline)
        iflist_path = system_root / IFLIST.lstrip("/")
        if ifaces:
            if not iflist_path.exists():
                raise HostError(f"{IFLIST} is missing: the aoe module is not loaded")
            if set(parse_iflist(iflist_path.read_text())) != set(ifaces):
                iflist_path.write_text(" ".join(ifaces) + "\n")
        if iflist_path.exists():
            report.iflist = list(parse_iflist(iflist_path.read_text()))
        trigger = system_root / DISCOVER.lstrip("/")
        if not trigger.exists():
            raise HostError(f"{DISCOVER} is missing: the aoe module is not loaded")
        with trigger.open("w") as fh:
            fh.write("\n")
        for name in waits:
            remaining = max(0.0, deadline - time.monotonic())
            report.devices[name] = waiter.wait(f"/dev/etherd/{name}", remaining, aoe_name=name)
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
