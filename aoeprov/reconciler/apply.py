"""The apply loop: lock, journal, execute, and re-plan after barriers.

Every round gathers facts and plans from scratch (level-triggered), so a run
killed at any point converges when re-run. Actions run in plan order up to and
including the first ``WaitForDevice`` that later provisional actions depend on;
then facts are gathered again and the rest re-planned against what actually
appeared, so nothing destructive is decided on a guess. A plan holding a blocked
destructive action is refused before anything runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.errors import AoeprovError, ApplyError, DestructiveActionBlocked
from aoeprov.host import Host
from aoeprov.reconciler.actions import (
    Action,
    Drift,
    MakeDirectory,
    RemoveFile,
    RunCommand,
    WaitForDevice,
    WriteFile,
)
from aoeprov.reconciler.engine import Plan, Reconciler
from aoeprov.reconciler.journal import JOURNAL_PATH, Journal
from aoeprov.reconciler.lock import LOCK_PATH, ApplyLock, DeviceLocks, devices_touched
from aoeprov.reconciler.systemd import DAEMON_RELOAD
from aoeprov.reconciler.waiting import DeviceWaiter

LOG = logging.getLogger(__name__)

MAX_ROUNDS = 6


@dataclass(frozen=True)
class Executed:
    action: Action
    seconds: float
    round: int


@dataclass
class ApplyReport:
    host: str
    executed: list[Executed] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    rounds: int = 0
    recovered: frozenset[str] = frozenset()   # owed side effects found in the journal

    @property
    def changed(self) -> bool:
        return bool(self.executed)


Listener = Callable[[str, Action, float], None]   # ("start"|"done", action, seconds)


def describe_blocked(blocked: tuple[Action, ...]) -> str:
    if all(a.blocked_by for a in blocked):
        head = "refusing to apply: the plan holds changes that cannot run as things are:"
    else:
        head = ("refusing to apply: the plan destroys data (the spec must say `wipe: true` for "
                "it and the run must pass --allow-destroy):")
    lines = [head]
    for a in blocked:
        lines.append(f"  - {a.kind} {a.target}: {a.summary}")
        if a.blocked_by:
            lines.append(f"    blocked: {a.blocked_by}")
        if a.data_loss:
            lines.append(f"    would lose: {a.data_loss}")
    return "\n".join(lines)


def execute(action: Action, host: Host, waiter: DeviceWaiter) -> None:
    """Carry out one action on ``host``."""
    if isinstance(action, RunCommand):
        host.runner.run(action.argv, stdin=action.stdin, ok_codes=action.ok_codes)
    elif isinstance(action, WriteFile):
        host.write_bytes(action.target, action.content, mode=action.mode, backup=action.backup)
    elif isinstance(action, RemoveFile):
        host.remove(action.target)
    elif isinstance(action, MakeDirectory):
        host.make_directory(action.target, action.mode)
    elif isinstance(action, WaitForDevice):
        if action.unavailable:
            raise ApplyError(f"cannot wait for {action.target}: {action.unavailable}")
        waiter.wait(action.target, action.timeout, action.aoe_name)
    elif callable(getattr(action, "execute", None)):
        action.execute(host)  # type: ignore[attr-defined]
    else:
        raise ApplyError(f"no way to execute {type(action).__name__} for {action.target}")


def _barrier_before_provisional(plan: Plan, index: int) -> bool:
    return (isinstance(plan.actions[index], WaitForDevice)
            and any(a.provisional for a in plan.actions[index + 1:]))


def apply(engine: Reconciler, *, waiter: DeviceWaiter | None = None,
          listener: Listener | None = None, max_rounds: int = MAX_ROUNDS,
          locked: bool = False, device_lock_dir: Path | None = None) -> ApplyReport:
    """Bring the host to the spec. Raises ``LockError``, ``DestructiveActionBlocked``,
    ``ApplyError`` (and the ``CommandError``/``DeviceTimeout`` of a failing action).

    ``locked``: the caller already holds the apply lock (``aoeprov pull`` holds it from
    the fetch to the end of the apply, so no other run slips in between). The devices the
    run may touch are locked too, across roots (``aoeprov.reconciler.lock``);
    ``device_lock_dir`` replaces ``/run/aoeprov/devices`` (tests)."""
    host = engine.host
    report = ApplyReport(host=engine.me.name)
    lock: contextlib.AbstractContextManager[object] = (
        contextlib.nullcontext() if locked else ApplyLock(host.path(LOCK_PATH)))
    devices = DeviceLocks(devices_touched(engine.spec, engine.me.name, host, engine.device_map),
                          device_lock_dir)
    with lock, devices:
        journal = Journal(host.path(JOURNAL_PATH))
        report.recovered = journal.pending
        waiter = waiter or DeviceWaiter()
        waiter.start()   # before anything can trigger a device
        try:
            for round_no in range(1, max_rounds + 1):
                report.rounds = round_no
                plan = engine.plan(pending=journal.pending)
                if not engine.systemd:
                    journal.discard(DAEMON_RELOAD)   # nothing to reload here
                if plan.blocked:
                    raise DestructiveActionBlocked(describe_blocked(plan.blocked))
                for key in plan.settled:
                    journal.discard(key)
                report.drift = [a for a in plan.drift if isinstance(a, Drift)]
                if not _run_round(plan, host, journal, waiter, report, round_no, listener):
                    return report
            raise ApplyError(f"the plan still had provisional actions after {max_rounds} rounds "
                             "of re-planning; run `aoeprov plan` to see what is undecided")
        finally:
            waiter.stop()
            _release_rehearsal_loops(engine)


def _release_rehearsal_loops(engine: Reconciler) -> None:
    """--device rehearsal: detach the partition loops this and earlier runs left unused."""
    if not engine.device_map:
        return
    from aoeprov.resources._blockdev import LOOP_LINK_DIR
    from aoeprov.resources._loopmap import release_stale

    try:
        released = release_stale(engine.host.runner, engine.host.path(LOOP_LINK_DIR),
                                 list(engine.device_map.values()))
    except (AoeprovError, OSError) as exc:   # never hides the run's own outcome
        LOG.warning("could not release the rehearsal's stale loop devices: %s", exc)
        return
    if released:
        LOG.info("detached stale rehearsal loop devices: %s", ", ".join(released))


def _run_round(plan: Plan, host: Host, journal: Journal, waiter: DeviceWaiter,
               report: ApplyReport, round_no: int, listener: Listener | None) -> bool:
    """Execute ``plan`` up to its first barrier before provisional actions; True: re-plan."""
    ran = 0
    for index, action in enumerate(plan.actions):
        if isinstance(action, Drift):
            continue
        if action.provisional:
            if not ran:   # no barrier, nothing done: re-planning would decide nothing new
                raise ApplyError(
                    f"cannot decide {action.kind} {action.target} on this run: {action.summary} "
                    "(nothing this plan runs before it makes what it depends on appear; "
                    "`aoeprov plan` shows it)")
            return True   # decided only once the device it depends on is visible
        ran += 1
        if action.owes:
            journal.add(action.owes)
        LOG.debug("apply action %s %s %s: %s", action.op.symbol, action.kind, action.target,
                  action.summary)
        if listener:
            listener("start", action, 0.0)
        begin = time.monotonic()
        execute(action, host, waiter)
        took = time.monotonic() - begin
        if action.settles:
            journal.discard(action.settles)
        report.executed.append(Executed(action, took, round_no))
        LOG.info("%s %s %s: done in %.3fs", action.op.symbol, action.kind, action.target, took)
        if listener:
            listener("done", action, took)
        if _barrier_before_provisional(plan, index):
            return True
    return False
