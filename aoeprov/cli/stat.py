"""``aoeprov stat``: the kernel initiator's AoE devices, like ``aoe-stat``, and whether they answer.

Read from sysfs ``/sys/block/etherd!eX.Y`` (size, netif, payload, state, mac);
then each device's target is asked for its config with the userspace client
(a config query to that shelf.slot and MAC on its interface): "yes" with the
answering MAC, "no" when nothing answered in time, "unknown" when it could not
be asked (no interface, no raw socket).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from aoeprov.cli import EXIT_OK
from aoeprov.errors import AoeprovError, DeviceTimeout

NAME = "stat"
HELP = "show the kernel's AoE devices (like aoe-stat) and whether their targets answer"
SYS_BLOCK = Path("/sys/block")


@dataclass(frozen=True)
class AoeDeviceStat:
    device: str                 # e0.1
    size: int | None            # bytes
    netif: tuple[str, ...]
    payload: int | None         # bytes per frame
    state: str
    macs: tuple[str, ...] = ()  # target MACs the driver talks to
    answers: str = "unknown"    # "yes", "no", "unknown"
    detail: str = ""


def _attr(dev_dir: Path, name: str) -> str | None:
    try:
        return (dev_dir / name).read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _mac(text: str) -> str:
    digits = text.lower().replace(":", "")
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2)) if len(digits) == 12 \
        else text


def read_devices(sys_block: Path = SYS_BLOCK) -> list[AoeDeviceStat]:
    """Every ``etherd!eX.Y`` in sysfs, sorted by shelf and slot."""
    out = []
    for d in sys_block.glob("etherd!e*"):
        name = d.name.removeprefix("etherd!")
        sectors = _int(_attr(d, "size"))
        netif = tuple(n for n in (_attr(d, "netif") or "").replace(",", " ").split() if n)
        macs = tuple(_mac(m) for m in (_attr(d, "mac") or "").replace(",", " ").split() if m)
        out.append(AoeDeviceStat(device=name, size=None if sectors is None else sectors * 512,
                                 netif=netif, payload=_int(_attr(d, "payload")),
                                 state=_attr(d, "state") or "?", macs=macs))
    return sorted(out, key=lambda s: _sort_key(s.device))


def _sort_key(name: str) -> tuple[int, int]:
    shelf, _, slot = name.removeprefix("e").partition(".")
    return (_int(shelf) or 0, _int(slot) or 0)


def ask_target(dev: AoeDeviceStat, timeout: float) -> AoeDeviceStat:
    """A config query to the device's shelf.slot on its interface."""
    if not dev.netif:
        return replace(dev, answers="unknown", detail="no interface in sysfs")
    from aoeprov.aoe.transport import EthernetTransport
    from aoeprov.client import AoeClient

    shelf, slot = _sort_key(dev.device)
    try:
        with EthernetTransport(dev.netif[0], responses=True) as transport:
            client = AoeClient(transport, shelf, slot,
                               target_mac=dev.macs[0] if dev.macs else None,
                               timeout=timeout / 3, max_timeout=timeout, retries=2)
            info = client.config()
    except DeviceTimeout as exc:
        return replace(dev, answers="no", detail=str(exc))
    except AoeprovError as exc:
        return replace(dev, answers="unknown", detail=str(exc))
    if info is None:
        return replace(dev, answers="no", detail="no config answer")
    return replace(dev, answers="yes", detail=f"{info.mac} on {dev.netif[0]}")


def format_table(devs: list[AoeDeviceStat]) -> str:
    if not devs:
        return "no AoE devices (is the aoe module loaded and discovery done?)\n"
    lines = []
    for d in devs:
        size = f"{d.size / 1e9:.3f}GB" if d.size is not None else "?"
        payload = str(d.payload) if d.payload is not None else "?"
        lines.append(f"{d.device:>10} {size:>12} {','.join(d.netif) or '?':>8} {payload:>5} "
                     f"{d.state:<14} answers: {d.answers}"
                     + (f" ({d.detail})" if d.detail else ""))
    return "\n".join(lines) + "\n"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not ask the targets (sysfs only)")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                        help="how long each target has to answer (default: 1)")


def run(args: argparse.Namespace, sys_block: Path = SYS_BLOCK,
        asker: Callable[[AoeDeviceStat, float], AoeDeviceStat] = ask_target) -> int:
    devs = read_devices(sys_block)
    if not args.no_probe:
        devs = [asker(d, args.timeout) for d in devs]
    if args.json:
        json.dump({"schema": "aoeprov.stat/1", "devices": [asdict(d) for d in devs]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(devs))
    return EXIT_OK
