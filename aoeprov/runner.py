"""The one runner for external commands.

Every program aoeprov runs goes through ``Runner.run`` with an argv tuple (never a
shell string). ``ShRunner`` uses ``sh`` baked with ``_tty_out=False`` and ``LC_ALL=C``
so output parses the same everywhere, logs argv, exit code and output to the
``aoeprov.cmd`` logger, and turns failures into ``CommandError``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sh

from aoeprov.errors import CommandError, CommandNotFound

LOG = logging.getLogger("aoeprov.cmd")


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def run(self, argv: Sequence[str], *, stdin: str | bytes | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result: ...


def command_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LANG": "C"}


class ShRunner:
    """Runs commands on this machine through ``sh``."""

    def run(self, argv: Sequence[str], *, stdin: str | bytes | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result:
        argv = tuple(argv)
        LOG.debug("run %s", argv)
        try:
            cmd = sh.Command(argv[0]).bake(_tty_out=False, _env=command_env())
        except sh.CommandNotFound as exc:
            raise CommandNotFound(argv) from exc
        try:
            done = cmd(*argv[1:], _in=stdin, _ok_code=list(ok_codes), _timeout=timeout,
                       _return_cmd=True, _decode_errors="replace")
        except sh.ErrorReturnCode as exc:
            out = exc.stdout.decode(errors="replace")
            err = exc.stderr.decode(errors="replace")
            LOG.debug("rc=%s stdout=%r stderr=%r", exc.exit_code, out, err)
            raise CommandError(argv, exc.exit_code, out, err) from exc
        except sh.TimeoutException as exc:
            raise CommandError(argv, None, reason=f"timed out after {timeout}s") from exc
        out = done.stdout.decode(errors="replace")
        err = done.stderr.decode(errors="replace")
        LOG.debug("rc=%s stdout=%r stderr=%r", done.exit_code, out, err)
        return Result(argv, done.exit_code, out, err)
