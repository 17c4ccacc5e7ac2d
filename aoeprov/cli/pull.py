"""``aoeprov pull REPO``: converge this host on the spec in a git repo (GitOps).

Run it from the timer ``--install`` writes, or by hand. ``--status`` prints the
record of the last run. Exit codes: 0 the run converged (or, in plan mode,
only reported), 1 the fetch, the commit or the apply failed (the record says
which), 2 changes pending (``--mode plan --detailed-exitcode``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aoeprov.cli import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from aoeprov.errors import AoeprovError
from aoeprov.install import aoeprov_command

if TYPE_CHECKING:
    from aoeprov.pull.state import PullRecord

NAME = "pull"
HELP = "fetch a config repo and converge this host on the spec in it"

STATE_DIR = "/var/lib/aoeprov/pull"
METRICS_DIR = "/var/lib/prometheus/node-exporter"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", metavar="REPO", nargs="?",
                        help="the config repo: any URL git takes (path, file://, ssh://, https://)")
    parser.add_argument("--ref", default="HEAD",
                        help="branch or tag to follow (default: the repo's HEAD)")
    parser.add_argument("--spec", default="aoeprov.yaml", metavar="PATH",
                        help="the spec's path inside the repo (default: aoeprov.yaml)")
    parser.add_argument("--host", metavar="NAME",
                        help="the spec host to act as (default: this machine's hostname)")
    parser.add_argument("--mode", choices=["apply", "plan"], default="apply",
                        help="apply: converge; plan: only report what is pending (drift)")
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 2 when changes are pending after the run")
    parser.add_argument("--require-signed", action="store_true",
                        help="refuse commits without a good signature (git verify-commit)")
    parser.add_argument("--gnupg-home", metavar="DIR", type=Path,
                        help="keyring of the trusted signers (default: $GNUPGHOME or ~/.gnupg)")
    parser.add_argument("--allow-destroy", action="store_true",
                        help="as for apply: allow destroying what the spec marks `wipe: true`")
    parser.add_argument("--root", metavar="DIR", type=Path, default=Path("/"),
                        help="read and write every file under DIR (a sandbox)")
    parser.add_argument("--state-dir", default=STATE_DIR, metavar="DIR",
                        help=f"mirror, checkouts and state record (default: {STATE_DIR})")
    parser.add_argument("--metrics-dir", default=METRICS_DIR, metavar="DIR",
                        help="where aoeprov-pull.prom is written for node_exporter's textfile "
                             f"collector (default: {METRICS_DIR})")
    parser.add_argument("--no-metrics", action="store_true", help="write no metrics file")
    parser.add_argument("--status", action="store_true",
                        help="print the record of the last run instead of running")
    parser.add_argument("--json", action="store_true", help="with --status: the record as JSON")
    parser.add_argument("--install", action="store_true",
                        help="write aoeprov-pull.service and .timer running this command "
                             "(without --install) every --interval, and enable the timer")
    parser.add_argument("--interval", default="15min",
                        help="with --install: time between runs (systemd time span)")
    parser.add_argument("--randomized-delay", default="5min",
                        help="with --install: RandomizedDelaySec, so a fleet does not fetch "
                             "at once")


def _install_argv(args: argparse.Namespace, root: Path) -> list[str]:
    # the console script of the installation running now (a venv's bin/ is not on PATH)
    argv = [*aoeprov_command(), "pull", args.repo, "--ref", args.ref,
            "--spec", args.spec, "--mode", args.mode]
    if args.host:
        argv += ["--host", args.host]
    if args.require_signed:
        argv.append("--require-signed")
    if args.gnupg_home:
        argv += ["--gnupg-home", str(args.gnupg_home)]
    if args.allow_destroy:
        argv.append("--allow-destroy")
    if root != Path("/"):
        argv += ["--root", str(root)]
    if args.state_dir != STATE_DIR:
        argv += ["--state-dir", args.state_dir]
    if args.no_metrics:
        argv.append("--no-metrics")
    elif args.metrics_dir != METRICS_DIR:
        argv += ["--metrics-dir", args.metrics_dir]
    return argv


def _when(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_status(rec: PullRecord) -> str:
    if not rec.last_run:
        return "aoeprov pull has not run yet.\n"
    lines = [
        f"repo:            {rec.repo} (ref {rec.ref}, spec {rec.spec}, host {rec.host})",
        f"last run:        {_when(rec.last_run)}: {rec.result} (mode {rec.mode})",
        f"last success:    {_when(rec.last_success)}",
        f"last fetch:      {_when(rec.last_fetch)}",
        f"commit seen:     {rec.seen_commit or '-'} {rec.seen_subject}".rstrip(),
        f"good spec:       {rec.good_commit or '-'}",
        f"commit applied:  {rec.applied_commit or '-'}",
        f"pending changes: {rec.pending}",
    ]
    if rec.last_error:
        err = rec.last_error
        lines.append(f"last error:      {_when(err.time)}, commit {err.commit[:12] or '-'}:")
        lines += [f"  {line}" for line in err.message.splitlines()]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from aoeprov.host import Host
    from aoeprov.pull.agent import PullOptions, pull
    from aoeprov.pull.state import APPLIED, CONVERGED, PENDING, load_record

    root = Path(args.root).resolve()
    if not root.is_dir():
        raise AoeprovError(f"--root {args.root}: not a directory")
    host = Host(root=root)
    if args.status:
        rec = load_record(host.path(args.state_dir) / "state.json")
        if args.json:
            json.dump(rec.to_json(), sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(render_status(rec))
        return EXIT_OK
    if not args.repo:
        raise AoeprovError("pull needs REPO (or --status)")
    opts = PullOptions(repo=args.repo, ref=args.ref, spec=args.spec, host_name=args.host,
                       mode=args.mode, require_signed=args.require_signed,
                       gnupg_home=args.gnupg_home, allow_destroy=args.allow_destroy,
                       state_dir=args.state_dir,
                       metrics_dir=None if args.no_metrics else args.metrics_dir)
    if args.install:
        from aoeprov.pull.units import install

        for line in install(host, _install_argv(args, root), args.interval,
                            args.randomized_delay):
            print(line)
        return EXIT_OK
    from aoeprov.cli.apply import _print_progress

    rec = pull(host, opts, listener=_print_progress)
    print(f"{rec.result}: commit {rec.seen_commit[:12] or '-'} seen, "
          f"{rec.applied_commit[:12] or '-'} applied, {rec.pending} changes pending")
    if rec.result not in (APPLIED, CONVERGED, PENDING):
        print(f"aoeprov: error: {rec.last_error.message if rec.last_error else rec.result}",
              file=sys.stderr)
        return EXIT_ERROR
    if args.detailed_exitcode and rec.pending:
        return EXIT_CHANGES
    return EXIT_OK
