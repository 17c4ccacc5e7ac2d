"""``aoeprov schema``: print the JSON Schema of a spec."""

from __future__ import annotations

import argparse
import json
import sys

from aoeprov.spec.schema import load_schema

NAME = "schema"
HELP = "print the JSON Schema (2020-12) that spec files follow"


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults()


def run(args: argparse.Namespace) -> int:
    json.dump(load_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
