"""``aoeprov plan``: show what apply would change, without changing anything."""

from __future__ import annotations

import argparse
import json
import sys

from aoeprov.cli import EXIT_CHANGES, EXIT_OK
from aoeprov.reconciler.options import add_engine_options

NAME = "plan"
HELP = "show the changes apply would make on this host"


def register(parser: argparse.ArgumentParser) -> None:
    add_engine_options(parser)
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 0 when there is nothing to do, 2 when changes are pending "
                             "(1 stays an error)")
    parser.add_argument("--allow-destroy", action="store_true",
                        help="plan as apply --allow-destroy would (destructive actions on disks "
                             "marked `wipe: true` are no longer blocked)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show commands and every check that needs no change")


def run(args: argparse.Namespace) -> int:
    # imported here: building the command line needs none of the reconciler
    from aoeprov.reconciler.options import engine_from_args
    from aoeprov.reconciler.render import plan_to_json, render_plan

    engine = engine_from_args(args, allow_destroy=args.allow_destroy)
    plan = engine.plan()
    if args.json:
        json.dump(plan_to_json(plan), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_plan(plan, verbose=args.verbose))
    if args.detailed_exitcode and plan.changes:
        return EXIT_CHANGES
    return EXIT_OK
