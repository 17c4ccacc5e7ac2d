"""``aoeprov plan``: show what apply would change, without changing anything.

Exit codes: 0 nothing apply would do (drift alone is reported, not counted: apply
leaves it), 2 with ``--detailed-exitcode`` when apply would carry out changes, 1 on
errors and when the plan holds a blocked change (apply would refuse the whole
plan; the reason goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from aoeprov.cli import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from aoeprov.reconciler.options import add_change_options, add_engine_options

if TYPE_CHECKING:
    from aoeprov.reconciler.engine import Plan

NAME = "plan"
HELP = "show the changes apply would make on this host"


def register(parser: argparse.ArgumentParser) -> None:
    add_engine_options(parser)
    parser.add_argument("--detailed-exitcode", action="store_true",
                        help="exit 0 when apply has nothing to do, 2 when it would carry out "
                             "changes, 1 on errors and when a pending change is blocked")
    add_change_options(parser, planning=True)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show commands and every check that needs no change")


def run(args: argparse.Namespace) -> int:
    # imported here: building the command line needs none of the reconciler
    from aoeprov.reconciler.options import engine_from_args
    from aoeprov.reconciler.render import plan_to_json, render_plan

    engine = engine_from_args(args, allow_destroy=args.allow_destroy, prune=args.prune)
    plan = engine.plan()
    if args.json:
        json.dump(plan_to_json(plan), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_plan(plan, verbose=args.verbose))
    return exit_code(plan, detailed=args.detailed_exitcode)


def exit_code(plan: Plan, *, detailed: bool) -> int:
    from aoeprov.reconciler.apply import describe_blocked

    if plan.blocked:   # apply would refuse the whole plan: not "changes pending"
        print(f"aoeprov: {describe_blocked(plan.blocked)}", file=sys.stderr)
        return EXIT_ERROR
    if detailed and plan.runnable:
        return EXIT_CHANGES
    return EXIT_OK
