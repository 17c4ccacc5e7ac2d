"""``aoeprov target``: the built-in AoE target.

Three ways to say what to serve:

- ``aoeprov target SHELF SLOT NETIF PATH [-r] [-s] [-b N] [-m MACS] [-o N] [-l N]``:
  vblade's arguments with vblade's meaning, so it drops into existing units.
  Like vblade, writes are buffered (``writeback``) unless ``-s`` is given; ``-d``
  opens PATH with O_DIRECT, as vblade's does (``direct: true`` in a spec).
- ``aoeprov target --config FILE``: the JSON export list of
  ``aoeprov.targetd.config`` (what the reconciler renders); SIGHUP re-reads it.
- ``aoeprov target --spec SPEC --host NAME``: every built-in export of that host
  in the spec; SIGHUP re-reads the spec.

Runs in the foreground until SIGTERM/SIGINT. SIGUSR1 prints the counters (one
JSON line on stderr, and ``--stats-file`` if given, whose format is
``TargetServer.snapshot``); at exit the file is written once more and the log
gets one summary line. ``--metrics-dir`` keeps ``aoeprov-target.prom`` there
(Prometheus text for node_exporter's textfile collector), rewritten every
``--metrics-interval`` seconds and at exit.

What initiators set (config string, Mac Mask List, reserve list) is kept per
export in ``--state-dir`` (default ``/var/lib/aoeprov/target``) and survives a
restart; see ``aoeprov.targetd.state``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from aoeprov.errors import HostFileError, TargetError
from aoeprov.hostfile import atomic_write
from aoeprov.metrics import write_textfile
from aoeprov.targetd.config import ExportConfig, exports_from_spec, parse_config
from aoeprov.targetd.netlink import LinkMonitor
from aoeprov.targetd.promfile import PROM_FILE, target_metrics
from aoeprov.targetd.server import DEFAULT_BATCH, TargetServer
from aoeprov.targetd.state import DEFAULT_STATE_DIR

LOG = logging.getLogger(__name__)

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
                        help="O_DIRECT, as vblade's -d: no second copy of the data in this "
                             "host's page cache (writes are durable only with -s)")
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
    parser.add_argument("--metrics-dir", type=Path, metavar="DIR",
                        help=f"write the counters as Prometheus metrics ({PROM_FILE}) into DIR "
                             "every --metrics-interval and at exit, for node_exporter's textfile "
                             "collector (e.g. /var/lib/prometheus/node-exporter)")
    parser.add_argument("--metrics-interval", type=float, default=15.0, metavar="SECONDS",
                        help="seconds between metrics files (default: 15)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
                        help="keep what initiators set (config string, mask and reserve "
                             f"lists) here across restarts (default: {DEFAULT_STATE_DIR})")
    parser.add_argument("--force", action="store_true",
                        help="serve a shelf.slot even when another target already answers for "
                             "it, and a block device even when it is in use here (mounted, "
                             "swap, held by LVM or RAID); without: such exports are refused at "
                             "start and on SIGHUP")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    # the frame-by-frame path only (for comparisons; the fast path is the same protocol)
    parser.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                        help=argparse.SUPPRESS)
    parser.epilog = ("signals: SIGTERM stops, SIGHUP reloads --config/--spec keeping unchanged "
                     "exports and re-reads the state files, SIGUSR1 prints the counters "
                     "(and writes --stats-file)")


def vblade_export(args: argparse.Namespace) -> ExportConfig:
    if args.length < 0 or args.offset < 0:
        raise TargetError("-o and -l take a number of sectors >= 0")
    macs = tuple(m.strip().lower() for m in args.macs.split(",") if m.strip())
    return ExportConfig(shelf=args.shelf, slot=args.slot, path=args.path,
                        interfaces=(args.netif,), read_only=args.read_only, offset=args.offset,
                        length=args.length or None, allowed_macs=macs,
                        write_mode="sync" if args.sync else "writeback",
                        buffer_count=args.bufcnt, direct=args.direct)


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


def write_stats(stats_file: Path, stats: dict[str, object]) -> None:
    try:
        atomic_write(stats_file, json.dumps(stats, indent=2, sort_keys=True) + "\n")
    except (HostFileError, OSError) as exc:
        LOG.error("cannot write the counters to %s: %s", stats_file, exc)


def write_metrics(metrics_dir: Path, stats: dict[str, object]) -> None:
    try:
        write_textfile(metrics_dir / PROM_FILE, target_metrics(stats))
    except (HostFileError, OSError) as exc:
        LOG.error("cannot write the metrics to %s: %s", metrics_dir / PROM_FILE, exc)


class MetricsTicker:
    """Asks the server for its counters every ``interval`` seconds, from a thread.

    ``request_stats`` only sets a flag and wakes the serving loop (as SIGUSR1 does),
    so the counters are read and the file written in the serving thread.
    """

    def __init__(self, server: TargetServer, interval: float) -> None:
        self.server = server
        self.interval = max(0.1, interval)
        self.due = False   # the next report is a tick: metrics only, no stderr line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.due = True
            self.server.request_stats()


def stats_reporter(stats_file: Path | None, metrics_dir: Path | None = None,
                   ticker: Callable[[], MetricsTicker | None] = lambda: None,
                   ) -> Callable[[dict[str, object]], None]:
    """SIGUSR1: the counters as one JSON line on stderr, and in ``stats_file``; every report
    (SIGUSR1 or a tick of the metrics ticker) also rewrites the metrics file."""
    def report(stats: dict[str, object]) -> None:
        if metrics_dir is not None:
            write_metrics(metrics_dir, stats)
        tick = ticker()
        if tick is not None and tick.due:
            tick.due = False
            return
        text = json.dumps(stats, sort_keys=True)
        print(f"aoeprov target: counters {text}", file=sys.stderr, flush=True)
        if stats_file is not None:
            write_stats(stats_file, stats)

    return report


def link_monitor() -> LinkMonitor | None:
    try:
        return LinkMonitor()
    except OSError as exc:
        LOG.warning("cannot follow link changes (rtnetlink: %s): SIGHUP re-reads MTUs and "
                    "reopens links", exc.strerror or exc)
        return None


def refuse_in_use(source: Callable[[], Sequence[ExportConfig]],
                  force: bool) -> Callable[[], Sequence[ExportConfig]]:
    """``source``, refusing a block device that is in use on this host (unless ``force``)."""
    from aoeprov.resources._holders import users_of

    def checked() -> Sequence[ExportConfig]:
        configs = source()
        for config in configs:
            users = users_of(config.path)
            if users and not force:
                raise TargetError(f"refusing to export {config.path} as {config.aoe_name}: it "
                                  f"is in use here ({'; '.join(users)}), and initiators would "
                                  "write under it; --force exports it anyway")
            if users:
                LOG.warning("exporting %s although it is in use (--force): %s", config.path,
                            "; ".join(users))
        return configs

    return checked


def run(args: argparse.Namespace) -> int:
    source = refuse_in_use(export_source(args), args.force)
    configs = list(source())
    if not configs:
        print("aoeprov target: the export list is empty; waiting for SIGHUP", file=sys.stderr)
    ticker: list[MetricsTicker] = []
    server = TargetServer(configs, reload=source,
                          on_stats=stats_reporter(args.stats_file, args.metrics_dir,
                                                  lambda: ticker[0] if ticker else None),
                          batch=args.batch, fast_path=args.fast_path,
                          state_dir=args.state_dir, monitor=link_monitor(),
                          check_claims=True, force=args.force)
    try:
        server.install_signal_handlers()
        server.start()
        for exp in server.engine.exports:
            mode = "O_RDONLY" if exp.read_only else f"O_RDWR {exp.config.write_mode}"
            print(f"pid {os.getpid()}: {exp.config.aoe_name}, {exp.sectors} sectors {mode} "
                  f"on {','.join(exp.config.interfaces)}", flush=True)
        if args.metrics_dir is not None:
            ticker.append(MetricsTicker(server, args.metrics_interval))
            ticker[0].start()
        server.run()
        for tick in ticker:
            tick.stop()
        final = server.snapshot()
        if args.stats_file is not None:
            write_stats(args.stats_file, final)
        if args.metrics_dir is not None:
            write_metrics(args.metrics_dir, final)
        print(f"aoeprov target: stopped; {server.summary()}", file=sys.stderr, flush=True)
    finally:
        for tick in ticker:
            tick.stop()
        server.close()
    return 0
