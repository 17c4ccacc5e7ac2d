"""``aoeprov facts``: what aoeprov sees on this host, per resource kind.

With a SPEC, facts are gathered for that host's part of the spec (the same
facts ``plan`` uses). Without one, for an empty spec naming this host as both
target and initiator: kernel AoE support, modules, fstab, mounts, units. A kind
whose gathering fails shows its error and the others are still shown.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aoeprov.cli import EXIT_ERROR, EXIT_OK
from aoeprov.errors import AoeprovError
from aoeprov.reconciler.kinds import parse_kinds, select_kinds

if TYPE_CHECKING:
    from aoeprov.spec.model import Spec

NAME = "facts"
HELP = "show what aoeprov sees on this host"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", nargs="?",
                        help="gather for this spec's host (default: an empty spec)")
    parser.add_argument("--host", metavar="NAME", help="the spec host (default: hostname)")
    parser.add_argument("--root", metavar="DIR", type=Path, default=Path("/"),
                        help="read files under DIR")
    parser.add_argument("--only", metavar="KIND[,KIND]", action="append", default=[])
    parser.add_argument("--skip", metavar="KIND[,KIND]", action="append", default=[])
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def bare_spec(name: str) -> Spec:
    from aoeprov.spec.model import HostSpec, Role, Spec

    return Spec(version=1, hosts=(HostSpec(name=name, roles=frozenset(Role), interfaces=()),),
                source="<no spec>")


def gather_facts(engine_args: dict[str, Any], kinds: tuple[str, ...]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    from aoeprov.reconciler.data import to_data
    from aoeprov.reconciler.engine import Reconciler, load_resource

    facts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for kind in kinds:
        try:
            engine = Reconciler(kinds=(kind,), resources={kind: load_resource(kind)}, **engine_args)
            facts[kind] = to_data(engine.gather()[kind])
        except AoeprovError as exc:
            errors[kind] = str(exc)
    return facts, errors


def run(args: argparse.Namespace) -> int:
    # imported here: building the command line needs none of these
    import yaml

    from aoeprov.host import Host
    from aoeprov.spec import load_spec

    host = Host(root=Path(args.root).resolve())
    name = args.host or host.hostname
    spec = load_spec(args.spec) if args.spec else bare_spec(name)
    only = frozenset().union(*(parse_kinds(t) for t in args.only))
    skip = frozenset().union(*(parse_kinds(t) for t in args.skip))
    kinds = select_kinds(only, skip)
    facts, errors = gather_facts({"spec": spec, "host": host, "host_name": name}, kinds)
    if args.json:
        json.dump({"schema": "aoeprov.facts/1", "host": name, "hostname": socket.gethostname(),
                   "facts": facts, "errors": errors}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for kind in kinds:
            sys.stdout.write(f"# {kind}\n")
            if kind in errors:
                sys.stdout.write(f"error: {errors[kind]}\n")
            else:
                sys.stdout.write(yaml.safe_dump(facts[kind], sort_keys=False,
                                                default_flow_style=False))
    return EXIT_ERROR if errors and not facts else EXIT_OK
