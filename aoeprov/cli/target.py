"""``aoeprov target``: the built-in AoE target.

Three ways to say what to serve:

- ``aoeprov target SHELF SLOT NETIF PATH [-r] [-s] [-b N] [-m MACS] [-o N] [-l N]``:
  vblade's arguments with vblade's meaning, so it drops into existing units.
  Like vblade, writes are buffered (``writeback``) unless ``-s`` is given; ``-d``
  (vblade's O_DIRECT) is accepted and served as ``-s``.
- ``aoeprov target --config FILE``: the JSON export list of
  ``aoeprov.targetd.config`` (what the reconciler renders); SIGHUP re-reads it.
- ``aoeprov target --spec SPEC --host NAME``: every built-in export of that host
  in the spec; SIGHUP re-reads the spec.

Runs in the foreground until SIGTERM/SIGINT. SIGUSR1 prints the counters (one
JSON line on stderr, and ``--stats-file`` if given); they are printed at exit too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aoeprov.errors import TargetError
from aoeprov.targetd.config import ExportConfig, exports_from_spec, parse_config
from aoeprov.targetd.server import DEFAULT_BATCH, TargetServer

NAME = "target"
HELP = "serve files or block devices over AoE (the built-in target, vblade-compatible)"


def _number(text: str) -> int:
    """Integers as vblade's strtoll(.., 0) reads them: decimal, 0x hex, 0 octal."""
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shelf", nargs="?", type=_number, metavar="SHELF",
                        help="AoE shelf (major) number, 0-65534")
    parser.add_argument("slot", nargs="?", type=_number, metavar="SLOT",
                        help="AoE slot (minor) number, 0-254")
    parser.add_argument("netif", nargs="?", metavar="NETIF", help="interface to serve on")
    parser.add_argument("path", nargs="?", metavar="PATH", help="file or block device to export")
    parser.add_argument("-r", dest="read_only", action="store_true", help="export read-only")
    parser.add_argument("-s", dest="sync", action="store_true",
                        help="sync writes: data is on stable storage before the reply "
                             "(default without -s: writeback, like vblade)")
    parser.add_argument("-d", dest="direct", action="store_true",
                        help="vblade's O_DIRECT; accepted for drop-in use and served as -s "
                             "(sync), which also makes writes durable")
    parser.add_argument("-b", dest="bufcnt", type=_number, default=16, metavar="BUFCNT",
                        help="buffer count advertised to initiators (default: 16)")
    parser.add_argument("-m", dest="macs", default="", metavar="MAC[,MAC...]",
                        help="only these initiator MACs may use the export (Mac Mask List)")
    parser.add_argument("-o", dest="offset", type=_number, default=0, metavar="OFFSET",
                        help="sectors to skip at the start of PATH")
    parser.add_argument("-l", dest="length", type=_number, default=0, metavar="LENGTH",
                        help="sectors to export (default: up to the end)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="serve the JSON export list in FILE (re-read on SIGHUP)")
    parser.add_argument("--spec", type=Path, metavar="SPEC",
                        help="serve the exports of --host in this spec (re-read on SIGHUP)")
    parser.add_argument("--host", metavar="NAME", help="the spec host this target is")
    parser.add_argument("--stats-file", type=Path, metavar="FILE",
                        help="write the counters as JSON here on SIGUSR1 and at exit")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    # the frame-by-frame path only (for comparisons; the fast path is the same protocol)
    parser.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                        help=argparse.SUPPRESS)
    parser.epilog = ("signals: SIGTERM stops, SIGHUP reloads --config/--spec keeping unchanged "
                     "exports, SIGUSR1 prints the counters")


def vblade_export(args: argparse.Namespace) -> ExportConfig:
    if args.length < 0 or args.offset < 0:
        raise TargetError("-o and -l take a number of sectors >= 0")
    macs = tuple(m.strip().lower() for m in args.macs.split(",") if m.strip())
    return ExportConfig(shelf=args.shelf, slot=args.slot, path=args.path,
                        interfaces=(args.netif,), read_only=args.read_only, offset=args.offset,
                        length=args.length or None, allowed_macs=macs,
                        write_mode="sync" if args.sync or args.direct else "writeback",
                        buffer_count=args.bufcnt)


def export_source(args: argparse.Namespace) -> Callable[[], Sequence[ExportConfig]]:
    """A function returning the export list; called at start and on every SIGHUP."""
    positional = [args.shelf, args.slot, args.netif, args.path]
    sources = [any(v is not None for v in positional), args.config is not None,
               args.spec is not None]
    if sum(sources) != 1:
        raise TargetError("give exactly one of: SHELF SLOT NETIF PATH, --config FILE, "
                          "--spec SPEC --host NAME")
    if sources[0]:
        if any(v is None for v in positional):
            raise TargetError("vblade-style use needs all of SHELF SLOT NETIF PATH")
        export = vblade_export(args)
        return lambda: [export]
    vblade_only = (args.read_only or args.sync or args.direct or args.macs or args.offset
                   or args.length)
    if vblade_only or args.bufcnt != 16:
        raise TargetError("-r -s -b -m -o -l apply to SHELF SLOT NETIF PATH only; "
                          "put them in the config or spec instead")
    if args.config is not None:
        path: Path = args.config

        def from_config() -> list[ExportConfig]:
            try:
                text = path.read_text()
            except OSError as exc:
                raise TargetError(f"cannot read {path}: {exc.strerror}") from exc
            return parse_config(text)

        return from_config
    if not args.host:
        raise TargetError("--spec needs --host NAME")
    spec_path: Path = args.spec
    host: str = args.host

    def from_spec() -> list[ExportConfig]:
        from aoeprov.spec import load_spec  # only this mode needs the YAML/schema deps

        spec = load_spec(spec_path)
        try:
            spec.host(host)
        except KeyError:
            raise TargetError(f"host {host!r} is not in {spec_path}") from None
        return exports_from_spec(spec, host)

    return from_spec


def stats_reporter(stats_file: Path | None) -> Callable[[dict[str, object]], None]:
    def report(stats: dict[str, object]) -> None:
        text = json.dumps(stats, sort_keys=True)
        print(f"aoeprov target: counters {text}", file=sys.stderr, flush=True)
        if stats_file is not None:
            tmp = stats_file.with_name(f".{stats_file.name}.tmp")
            tmp.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, stats_file)

    return report


def run(args: argparse.Namespace) -> int:
    source = export_source(args)
    configs = list(source())
    if not configs:
        print("aoeprov target: the export list is empty; waiting for SIGHUP", file=sys.stderr)
    server = TargetServer(configs, reload=source, on_stats=stats_reporter(args.stats_file),
                          batch=args.batch, fast_path=args.fast_path)
    try:
        server.install_signal_handlers()
        server.start()
        for exp in server.engine.exports:
            mode = "O_RDONLY" if exp.read_only else f"O_RDWR {exp.config.write_mode}"
            print(f"pid {os.getpid()}: {exp.config.aoe_name}, {exp.sectors} sectors {mode} "
                  f"on {','.join(exp.config.interfaces)}", flush=True)
        server.run()
        server.report_stats()
    finally:
        server.close()
    return 0
