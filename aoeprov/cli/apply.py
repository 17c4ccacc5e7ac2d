"""``aoeprov apply``: make this host as the spec says (safe to re-run, safe to kill).

The reconciler is imported in ``run``: building the command line of every
subcommand then costs no engine, host or spec loader import.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from aoeprov.cli import EXIT_OK
from aoeprov.reconciler.options import add_change_options, add_engine_options

if TYPE_CHECKING:
    from aoeprov.reconciler.actions import Action
    from aoeprov.reconciler.apply import ApplyReport

NAME = "apply"
HELP = "change this host to match the spec"


def register(parser: argparse.ArgumentParser) -> None:
    add_engine_options(parser)
    add_change_options(parser, planning=False)


def _print_progress(event: str, action: Action, seconds: float) -> None:
    from aoeprov.reconciler.actions import WaitForDevice
    from aoeprov.reconciler.render import action_symbol

    if event == "start" and isinstance(action, WaitForDevice) and not action.unavailable:
        print(f"… waiting up to {action.timeout:g}s for {action.target}", flush=True)
    if event == "done":
        print(f"{action_symbol(action)} {action.kind} {action.target}: {action.summary} "
              f"(done in {seconds:.2f}s)", flush=True)


def report_to_json(report: ApplyReport) -> dict[str, Any]:
    from aoeprov.reconciler.render import APPLY_SCHEMA

    return {
        "schema": APPLY_SCHEMA,
        "host": report.host,
        "changed": report.changed,
        "rounds": report.rounds,
        "recovered": sorted(report.recovered),
        "executed": [{**e.action.to_json(), "seconds": round(e.seconds, 6), "round": e.round}
                     for e in report.executed],
        "drift": [d.to_json() for d in report.drift],
    }


def run(args: argparse.Namespace) -> int:
    from aoeprov.reconciler.apply import apply
    from aoeprov.reconciler.options import engine_from_args
    from aoeprov.reconciler.render import plural, render_action

    engine = engine_from_args(args, allow_destroy=args.allow_destroy, prune=args.prune)
    report = apply(engine, listener=None if args.json else _print_progress)
    if args.json:
        json.dump(report_to_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if report.recovered:
        print(f"completed side effects owed by an interrupted run: "
              f"{', '.join(sorted(report.recovered))}")
    for drift in report.drift:
        print("\n".join(render_action(drift)))
    if report.changed:
        print(f"Apply complete: {plural(len(report.executed), 'action')} on {report.host}"
              + (f" in {report.rounds} rounds" if report.rounds > 1 else "") + ".")
    else:
        print(f"No changes: {report.host} is as the spec says.")
    return EXIT_OK
