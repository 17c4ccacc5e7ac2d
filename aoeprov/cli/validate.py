"""``aoeprov validate SPEC...``: check spec files and report every problem."""

from __future__ import annotations

import argparse
import json
import sys

from aoeprov.errors import SpecError, SpecIssue
from aoeprov.spec import load_spec

NAME = "validate"
HELP = "check spec files against the schema and the semantic rules"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="spec files to check (- reads standard input)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON document with every error instead of text lines")


def run(args: argparse.Namespace) -> int:
    issues: list[SpecIssue] = []
    summaries: dict[str, str] = {}
    for path in args.specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            issues.extend(exc.issues)  # already sorted by position within the file
            continue
        summaries[path] = (f"{len(spec.hosts)} hosts, {len(spec.targets)} targets, "
                           f"{len(spec.exports)} exports, {len(spec.disks)} disks, "
                           f"{len(spec.mounts)} mounts")
    if args.json:
        report = {"valid": not issues,
                  "files": [{"file": p, "valid": p in summaries} for p in args.specs],
                  "errors": [i.to_json() for i in issues]}
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for issue in issues:
            print(issue)
        for path, summary in summaries.items():
            print(f"{path}: valid ({summary})")
    return 1 if issues else 0
