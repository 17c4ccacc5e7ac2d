"""systemd side effects of a plan: one ``daemon-reload``, placed where it is needed.

Resources write units and ``/etc/fstab`` without reloading; the engine marks
those writes as owing a reload (journaled before they run) and inserts a single
``systemctl daemon-reload`` before the first ``systemctl`` command that needs
the new units, or at the end of the plan. ``systemctl enable`` and its kin reload
the manager themselves unless told ``--no-reload``: the engine tells them, and
they owe the plan's one reload too (under the lab's emulation a reload costs 7-9
seconds; a converge that enabled a unit paid two). Only where systemd is PID 1 and
files are not redirected with ``--root``.
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
# verbs that change unit files' enablement on disk, after which systemctl reloads the
# manager itself (unless --no-reload)
_ENABLEMENT = frozenset({"enable", "disable", "reenable", "preset", "mask", "unmask"})
NO_RELOAD = "--no-reload"


def systemd_running(system_root: Path = Path("/")) -> bool:
    """systemd is PID 1 on this machine (sd_booted's test)."""
    return (system_root / "run/systemd/system").is_dir()


def owes_reload(action: Action) -> bool:
    """A change systemd only sees after a daemon-reload: a unit file or /etc/fstab
    written or removed, or an enablement changed with ``--no-reload``."""
    argv = _systemctl(action)
    if argv:
        return _verb(argv) in _ENABLEMENT and NO_RELOAD in argv
    if not isinstance(action, (WriteFile, RemoveFile)):
        return False
    return action.target == "/etc/fstab" or action.target.startswith(UNIT_DIR + "/")


def needs_reload(action: Action) -> bool:
    argv = _systemctl(action)
    return bool(argv) and (_verb(argv) in _NEEDS_RELOAD or "--now" in argv)


def _systemctl(action: Action) -> tuple[str, ...]:
    """The argv of a ``systemctl`` command (empty for any other action)."""
    if isinstance(action, RunCommand) and action.argv and \
            Path(action.argv[0]).name == "systemctl":
        return action.argv
    return ()


def _verb(argv: tuple[str, ...]) -> str:
    words = [a for a in argv[1:] if not a.startswith("-")]
    return words[0] if words else ""


def _deferring_reload(action: Action) -> Action:
    """An enablement change (not ``--now``: its start needs the reload) told to leave the
    reload to the plan."""
    if not isinstance(action, RunCommand):
        return action
    argv = _systemctl(action)
    if not argv or _verb(argv) not in _ENABLEMENT or "--now" in argv or NO_RELOAD in argv:
        return action
    return dataclasses.replace(action, argv=(argv[0], NO_RELOAD, *argv[1:]))


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
        action = _deferring_reload(action)
        if owes_reload(action):
            action = dataclasses.replace(action, owes=(*action.owes, DAEMON_RELOAD))
            owed = True
        out.append(action)
    if owed:
        out.append(reload_action())
    return tuple(out)
