"""systemd side effects of a plan: one ``daemon-reload``, placed where it is needed.

Resources write units and ``/etc/fstab`` without reloading; the engine marks
those writes as owing a reload (journaled before they run) and inserts a single
``systemctl daemon-reload`` before the first ``systemctl`` command that needs
the new units, or at the end of the plan. Only where systemd is PID 1 and files
are not redirected with ``--root``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from aoeprov.reconciler.actions import Action, Op, RemoveFile, RunCommand, WriteFile

DAEMON_RELOAD = "daemon-reload"
UNIT_DIR = "/etc/systemd/system"
# systemctl verbs that act on a unit's definition, so must see the reloaded one
_NEEDS_RELOAD = frozenset({"start", "restart", "reload", "try-restart", "reload-or-restart",
                           "try-reload-or-restart", "condrestart", "isolate"})


def systemd_running(system_root: Path = Path("/")) -> bool:
    """systemd is PID 1 on this machine (sd_booted's test)."""
    return (system_root / "run/systemd/system").is_dir()


def owes_reload(action: Action) -> bool:
    """A write that systemd only sees after a daemon-reload: a unit file or /etc/fstab."""
    if not isinstance(action, (WriteFile, RemoveFile)):
        return False
    return action.target == "/etc/fstab" or action.target.startswith(UNIT_DIR + "/")


def needs_reload(action: Action) -> bool:
    if not isinstance(action, RunCommand) or not action.argv:
        return False
    if Path(action.argv[0]).name != "systemctl":
        return False
    words = [a for a in action.argv[1:] if not a.startswith("-")]
    return bool(words) and (words[0] in _NEEDS_RELOAD or "--now" in action.argv)


def reload_action() -> RunCommand:
    return RunCommand(kind="systemd", target=DAEMON_RELOAD, op=Op.RUN,
                      summary="systemctl daemon-reload (units or fstab changed)",
                      argv=("systemctl", DAEMON_RELOAD), settles=DAEMON_RELOAD)


def place_daemon_reload(actions: Sequence[Action], *, owed: bool,
                        systemd: bool) -> tuple[Action, ...]:
    """Mark writes owing a reload and insert the reload where it is needed.

    ``owed``: a reload is owed before this plan starts (journal of an interrupted
    run, or a planner put it in ``State.pending``).
    """
    if not systemd:
        return tuple(actions)
    out: list[Action] = []
    for action in actions:
        if needs_reload(action) and owed:
            out.append(reload_action())
            owed = False
        if owes_reload(action):
            action = dataclasses.replace(action, owes=(*action.owes, DAEMON_RELOAD))
            owed = True
        out.append(action)
    if owed:
        out.append(reload_action())
    return tuple(out)
