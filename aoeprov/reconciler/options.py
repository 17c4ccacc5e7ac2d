"""Command-line options shared by ``aoeprov plan`` and ``aoeprov apply``.

Only ``aoeprov.reconciler.kinds`` is imported to build the parser; the engine,
the host and the spec loader are imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from aoeprov.errors import PlanError
from aoeprov.reconciler.kinds import RESOURCE_ORDER, parse_kinds, select_kinds

if TYPE_CHECKING:
    from aoeprov.reconciler.engine import Reconciler
    from aoeprov.spec import Spec


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the spec file (YAML; - reads standard input)")
    parser.add_argument("--host", metavar="NAME",
                        help="the spec host to act as (default: this machine's hostname)")
    parser.add_argument("--root", metavar="DIR", type=Path, default=Path("/"),
                        help="read and write every file under DIR, mount under DIR too "
                             "(a sandbox: kernel modules and systemd are left alone)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--only", metavar="KIND[,KIND]", action="append", default=[],
                        help=f"only these resource kinds ({', '.join(RESOURCE_ORDER)})")
    parser.add_argument("--skip", metavar="KIND[,KIND]", action="append", default=[],
                        help="leave these resource kinds out")
    parser.add_argument("--device", metavar="NAME=PATH", action="append", default=[],
                        help="use local block device or image PATH for spec disk NAME (disk "
                             "name or eX.Y; repeatable); fstab keeps the /dev/etherd name")


def add_change_options(parser: argparse.ArgumentParser, *, planning: bool) -> None:
    """``--allow-destroy`` and ``--prune``, for ``apply`` and for ``plan`` (as apply would)."""
    also = "plan as apply would with it: " if planning else ""
    parser.add_argument("--allow-destroy", action="store_true",
                        help=f"{also}allow destructive actions on disks and filesystems whose "
                             "spec says `wipe: true` (nothing else is ever destroyed)")
    parser.add_argument("--prune", action="store_true",
                        help=f"{also}carry out removals: what aoeprov set up that left the spec "
                             "(fstab lines, mounts, exports, units, rc.local duplicates) is "
                             "undone; data (LVs, image files, filesystems) is always kept")


def engine_from_args(args: argparse.Namespace, *, allow_destroy: bool = False,
                     prune: bool = False, spec: Spec | None = None) -> Reconciler:
    from aoeprov.host import Host
    from aoeprov.reconciler.engine import Reconciler, parse_device_map
    from aoeprov.spec import load_spec

    only = frozenset().union(*(parse_kinds(t) for t in args.only))
    skip = frozenset().union(*(parse_kinds(t) for t in args.skip))
    root = Path(args.root).resolve()
    if not root.exists():
        raise PlanError(f"--root {args.root}: does not exist (create it, or give another "
                        f"directory)")
    if not root.is_dir():
        raise PlanError(f"--root {args.root}: not a directory")
    return Reconciler(spec=spec or load_spec(args.spec), host=Host(root=root),
                  host_name=args.host, kinds=select_kinds(only, skip),
                  device_map=parse_device_map(args.device), allow_destroy=allow_destroy,
                  prune=prune)
