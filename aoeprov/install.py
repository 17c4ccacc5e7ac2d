"""Where aoeprov is installed: the stable command generated units run.

Units must survive an upgrade: they run the installed ``aoeprov`` console
script (``/opt/aoeprov/bin/aoeprov`` for the venv install the README
documents, ``/usr/local/bin/aoeprov`` for a system-wide pip install), never
``<the python that ran apply> -m aoeprov``, which breaks when that venv is
rebuilt or removed. A unit whose program no longer exists is reported by plan.
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
from pathlib import Path

LOG = logging.getLogger(__name__)

INSTALL_DIR = "/opt/aoeprov"   # the documented install location (a venv)


def aoeprov_command() -> tuple[str, ...]:
    """The installed console script of the aoeprov running now; ``python -m aoeprov`` (with a
    warning) only when it runs from a source tree without one."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        script = Path(scripts) / "aoeprov"
        if script.is_file() and os.access(script, os.X_OK):
            return (str(script),)
    LOG.warning("no installed aoeprov command next to %s: units run it as `python -m aoeprov`, "
                "which breaks when this interpreter goes (install it: README, 'Installing, "
                "upgrading, removing')", sys.executable)
    return (sys.executable, "-m", "aoeprov")


def unit_program(unit: bytes | None) -> str | None:
    """The program a unit's (first) ``ExecStart=`` runs, without systemd's prefixes."""
    for line in (unit or b"").decode("utf-8", "replace").split("\n"):
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "ExecStart" and value.split():
            return value.split()[0].lstrip("@-:+!")
    return None


def missing_program(unit: bytes | None) -> str | None:
    """The unit's program when it no longer exists (a removed or rebuilt venv), else None."""
    program = unit_program(unit)
    if program and program.startswith("/") and not os.path.exists(program):
        return program
    return None
