"""``aoeprov probe``: list the AoE targets that answer on some interfaces.

Broadcasts a config query on each interface (all non-loopback interfaces that are
up when none is given), IDENTIFYs every responder and prints one line per
(interface, MAC, shelf.slot): size, payload per frame, buffer count, firmware and
config string. A shelf.slot answered by several MACs is reported as MULTIPATH when
they are one target (same identity, from a target that makes its serial unique:
aoeprov's) and as a CONFLICT otherwise (exit status 1), with the reason.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

NAME = "probe"
HELP = "broadcast an AoE config query and list every target that answers"

IFF_UP = 0x1


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--interface", action="append", dest="interfaces", default=[],
                        metavar="IFACE",
                        help="interface to probe (repeatable; default: every interface that "
                             "is up, except loopback)")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="S",
                        help="seconds to wait for answers (default: 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.epilog = ("exit status: 0 listed (possibly nothing, or MULTIPATH: one target seen "
                     "through several MACs), 1 error or a CONFLICT (two targets answering for "
                     "one shelf.slot, or two MACs that cannot be told to be one target)")


def default_interfaces(sys_class_net: Path = Path("/sys/class/net")) -> list[str]:
    names = []
    for _index, name in socket.if_nameindex():
        try:
            flags = int((sys_class_net / name / "flags").read_text(), 16)
        except (OSError, ValueError):
            continue
        if name != "lo" and flags & IFF_UP:
            names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    from aoeprov.client.probe import format_table, probe  # raw sockets: this command only

    interfaces = args.interfaces or default_interfaces()
    if not interfaces:
        print("aoeprov: error: no interface is up to probe on", file=sys.stderr)
        return 1
    result = probe(interfaces, args.timeout)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif result.responders:
        print(format_table(result))
    else:
        print(f"no AoE target answered on {', '.join(interfaces)} within {args.timeout}s")
    for conflict in result.conflicts:
        print(f"aoeprov: error: {conflict}", file=sys.stderr)
    return 1 if result.conflicts else 0
