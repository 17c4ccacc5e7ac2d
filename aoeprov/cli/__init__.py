"""The ``aoeprov`` command.

Each subcommand is its own module in this package, named as the command, exposing
``NAME``, ``HELP``, ``register(parser)`` and ``run(args) -> int``; modules are
found automatically, so adding a command never touches this file. A run imports
only its command's module (all of them for ``--help``, ``--version`` or a word that
is no command): importing every command (the lab, the target) was a third of
``aoeprov validate``'s time here (0.37 s against 0.25), and seconds of every run in
the lab's emulated guests.

Exit codes: 0 ok, 1 error or invalid input (a command-line mistake too), 2
changes pending that apply would carry out (``plan --detailed-exitcode``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from aoeprov import __version__
from aoeprov.errors import AoeprovError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


def _command_modules(only: str | None = None) -> list[ModuleType]:
    """The command modules, or only the one for command ``only`` where there is one."""
    names = [info.name for info in pkgutil.iter_modules(__path__)
             if not info.name.startswith("_")]
    if only in names:
        names = [only]
    mods = []
    for name in names:
        mod = importlib.import_module(f"{__name__}.{name}")
        if hasattr(mod, "register") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: its first word that is no option (nor an option's value)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors exiting 1: 2 means "changes pending" (plan
    --detailed-exitcode), and a script must never read a mistyped flag as that."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``only``) of that command alone."""
    parser = ArgumentParser(
        prog="aoeprov",
        description="Declarative provisioning of ATA over Ethernet storage.",
        epilog="exit codes: 0 ok, 1 error or invalid input, 2 changes pending that apply "
               "would carry out (plan --detailed-exitcode)")
    parser.add_argument("--version", action="version", version=f"aoeprov {__version__}")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"],
                        help="how much to log on stderr (default: warning)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules(only):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.register(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return int(args._run(args))
    except AoeprovError as exc:
        print(f"aoeprov: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aoeprov: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`aoeprov schema | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
