"""``aoeprov lab``: the spec's hosts as qemu VMs with a stock Debian kernel, on a private bridge."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aoeprov.errors import LabError
from aoeprov.lab import vm as vmlib
from aoeprov.lab.lab import Lab, default_state_dir
from aoeprov.lab.up import parse_override, up

NAME = "lab"
HELP = "try a spec on real-kernel VMs (qemu, stock Debian kernel, systemd, udev)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(),
                        help="where a running lab keeps its state, disks and console logs "
                             "(default: %(default)s)")
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    p = sub.add_parser("up", help="boot one VM per spec host and run `aoeprov apply` in each")
    p.add_argument("spec", type=Path, metavar="SPEC")
    p.add_argument("--mtu", type=int, default=1500, help="MTU of the lab network (default 1500)")
    p.add_argument("--size-override", action="append", default=[], metavar="TARGET=SIZE",
                   help="use SIZE for the backing of TARGET in the lab's copy of the spec "
                        "(e.g. storage1=2G; the spec file is not changed); repeatable")
    p.add_argument("--export-server", choices=["builtin", "vblade"],
                   help="serve every export with this server in the lab's copy of the spec")
    p.add_argument("--no-apply", action="store_true",
                   help="boot and prepare the VMs, but do not run apply")
    p = sub.add_parser("exec", help="run a command in a VM: lab exec NAME -- CMD [ARG...]")
    p.add_argument("name", metavar="NAME")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD")
    p.add_argument("--timeout", type=float, default=600.0)
    p = sub.add_parser("reboot", help="reboot a VM and wait until it is up again")
    p.add_argument("name", metavar="NAME")
    sub.add_parser("down", help="stop every VM and remove the lab network")
    sub.add_parser("status", help="list the lab's VMs")


def _progress(start: float) -> Callable[[str], None]:
    def show(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)
    return show


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    show = _progress(start)
    command = args.lab_command
    if command == "up":
        sizes = dict(parse_override(o) for o in args.size_override)
        lab = Lab(args.state_dir, progress=show)
        report = up(lab, args.spec, mtu=args.mtu, sizes=sizes,
                    export_server=args.export_server, apply=not args.no_apply)
        for host, view in report.views.items():
            print(f"\n== {host} ==\n{view}")
        boots = ", ".join(f"{h} {s:.1f}s" for h, s in report.boot_seconds.items())
        applies = ", ".join(f"{h} {s:.1f}s" for h, s in report.apply_seconds.items())
        print(f"\nboot: {boots}" + (f"; apply: {applies}" if applies else ""))
        print(f"lab is up ({time.monotonic() - start:.1f}s): `aoeprov lab exec NAME -- CMD`, "
              "`aoeprov lab down`")
        return 0
    if command == "down" and not Lab(args.state_dir).state_file.exists():
        show(f"no lab is running from {args.state_dir}")
        return 0
    lab = Lab.load(args.state_dir, progress=show)
    if command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise LabError("lab exec: no command given (lab exec NAME -- CMD [ARG...])")
        result = lab.run(args.name, argv, ok_codes=range(256), timeout=args.timeout)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.rc
    if command == "reboot":
        seconds = lab.reboot(args.name)
        show(f"{args.name}: rebooted in {seconds:.1f}s")
        return 0
    if command == "down":
        lab.down()
        return 0
    for v in lab.vms.values():
        pid = vmlib.read_pid(v)
        state = "running" if vmlib.is_running(pid, v) else "stopped"
        print(f"{v.name:12} {state:8} pid {pid}  mac {v.mac}  console {v.console_log}")
    print(f"network namespace {lab.network.netns}, MTU {lab.network.mtu}")
    return 0
