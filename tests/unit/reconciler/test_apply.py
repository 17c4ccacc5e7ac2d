"""The apply loop: lock, journal recovery, barriers and re-planning, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aoeprov.errors import ApplyError, CommandError, DestructiveActionBlocked, LockError
from aoeprov.reconciler.actions import (
    Action,
    Drift,
    Noop,
    Op,
    ResourcePlan,
    RunCommand,
    WaitForDevice,
    WriteFile,
)
from aoeprov.reconciler.apply import apply
from aoeprov.reconciler.engine import Reconciler
from aoeprov.reconciler.journal import JOURNAL_PATH, Journal, parse_journal, render_journal
from aoeprov.reconciler.lock import LOCK_PATH, ApplyLock
from aoeprov.reconciler.resource import GatherContext
from aoeprov.reconciler.waiting import DeviceWaiter
from tests.unit.reconciler.fakes import FakeResource, FakeRunner, failing, make_host, tutorial

FSTAB_LINE = b"/dev/etherd/e0.1p1 /storage ext3 defaults,_netdev,x-aoeprov 0 0\n"


def fstab_resource() -> FakeResource:
    """Writes /etc/fstab when it differs (a stand-in for the real fstab resource)."""
    def gather(ctx: GatherContext) -> bytes | None:
        return ctx.host.read_bytes("/etc/fstab")

    def plan(ctx: Any, facts: bytes | None, state: Any) -> ResourcePlan:
        if facts == FSTAB_LINE:
            return ResourcePlan(noops=(Noop("fstab", "/etc/fstab", "up to date"),))
        return ResourcePlan(actions=(WriteFile(kind="fstab", target="/etc/fstab", op=Op.CHANGE,
                                               summary="fstab", content=FSTAB_LINE, before=facts,
                                               backup=True),))
    return FakeResource("fstab", plan, gather)


def engine_with(root: Path, runner: FakeRunner, resources: dict[str, Any], *,
                systemd: bool = False) -> Reconciler:
    return Reconciler(spec=tutorial(), host=make_host(root, runner), kinds=tuple(resources),
                  systemd=systemd, resources=resources)


def test_apply_then_nothing_to_do(tmp_path: Path) -> None:
    runner = FakeRunner()
    engine = engine_with(tmp_path, runner, {"fstab": fstab_resource()})
    report = apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert [e.action.target for e in report.executed] == ["/etc/fstab"]
    assert (tmp_path / "etc/fstab").read_bytes() == FSTAB_LINE
    again = apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert not again.changed and again.rounds == 1


def test_second_apply_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, FakeRunner(), {"fstab": fstab_resource()})
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from aoeprov.reconciler.lock import ApplyLock\n"
         f"lock = ApplyLock(Path({str(tmp_path / LOCK_PATH.lstrip('/'))!r})); lock.acquire()\n"
         "print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=f"pid {holder.pid} holds"):
            apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    finally:
        holder.communicate("", timeout=10)
    # the holder is gone: the kernel dropped its lock, the file's pid does not block us
    assert apply(engine, waiter=DeviceWaiter(system_root=tmp_path)).changed


def test_lock_in_the_same_process(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with ApplyLock(path), pytest.raises(LockError, match=f"pid {os.getpid()}"):
        ApplyLock(path).acquire()
    with ApplyLock(path):
        pass


def test_interrupted_daemon_reload_is_completed_next_run(tmp_path: Path) -> None:
    """Killed after fstab was written but before the reload: the next run reloads."""
    runner = FakeRunner(effects={"systemctl": failing(1)})
    engine = engine_with(tmp_path, runner, {"fstab": fstab_resource()}, systemd=True)
    with pytest.raises(CommandError):
        apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert (tmp_path / "etc/fstab").read_bytes() == FSTAB_LINE
    journal = tmp_path / JOURNAL_PATH.lstrip("/")
    assert set(parse_journal(journal.read_text())) == {"daemon-reload"}
    # fstab is converged now, so only the journal remembers the reload
    report = apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert report.recovered == {"daemon-reload"}
    assert [e.action.settles for e in report.executed] == ["daemon-reload"]
    assert runner.calls == [("systemctl", "daemon-reload")] * 2
    assert parse_journal(journal.read_text()) == {}
    assert not apply(engine, waiter=DeviceWaiter(system_root=tmp_path)).changed


def test_journal_format_and_atomic_rewrite(tmp_path: Path) -> None:
    j = Journal(tmp_path / "pending.json")
    j.add(["daemon-reload", "target-reload"])
    j.discard("daemon-reload")
    data = json.loads((tmp_path / "pending.json").read_text())
    assert data["version"] == 1 and list(data["pending"]) == ["target-reload"]
    assert Journal(tmp_path / "pending.json").pending == {"target-reload"}
    assert parse_journal(render_journal({})) == {}
    with pytest.raises(ApplyError, match="unknown format"):
        parse_journal('{"pending": {}}')


def discovery_resource(system_root: Path) -> FakeResource:
    """Until /dev/etherd/e0.1 exists: trigger, wait, and a provisional mkfs; then the real one."""
    dev = system_root / "dev/etherd/e0.1"

    def gather(ctx: GatherContext) -> bool:
        return dev.exists()

    def plan(ctx: Any, visible: bool, state: Any) -> ResourcePlan:
        mkfs_kwargs = dict(kind="filesystem", target="/dev/etherd/e0.1", op=Op.CREATE,
                           argv=("mkfs.ext3", "/dev/etherd/e0.1"))
        if visible:
            return ResourcePlan(actions=(RunCommand(summary="mkfs (device seen blank)",
                                                    **mkfs_kwargs),))  # type: ignore[arg-type]
        actions: list[Action] = [
            RunCommand(kind="discovery", target="/dev/etherd/discover", op=Op.RUN,
                       summary="trigger", argv=("trigger",)),
            WaitForDevice(kind="discovery", target="/dev/etherd/e0.1", op=Op.WAIT,
                          summary="wait", timeout=5),
            RunCommand(summary="mkfs (if blank)", provisional=True,
                       **mkfs_kwargs),  # type: ignore[arg-type]
        ]
        return ResourcePlan(actions=tuple(actions))
    return FakeResource("discovery", plan, gather)


def test_barrier_then_replan_never_runs_a_provisional_action(tmp_path: Path) -> None:
    def trigger(argv: tuple[str, ...]) -> None:
        (tmp_path / "dev/etherd").mkdir(parents=True)
        (tmp_path / "dev/etherd/e0.1").touch()

    runner = FakeRunner(effects={"trigger": trigger})
    engine = engine_with(tmp_path, runner, {"discovery": discovery_resource(tmp_path)})
    report = apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert [(e.action.summary, e.round) for e in report.executed] == [
        ("trigger", 1), ("wait", 1), ("mkfs (device seen blank)", 2)]
    assert runner.calls == [("trigger",), ("mkfs.ext3", "/dev/etherd/e0.1")]


def test_provisional_forever_is_bounded(tmp_path: Path) -> None:
    def plan(ctx: Any, facts: Any, state: Any) -> ResourcePlan:
        return ResourcePlan(actions=(RunCommand(kind="x", target="y", op=Op.RUN, summary="?",
                                                argv=("true",), provisional=True),))
    engine = engine_with(tmp_path, FakeRunner(), {"partition": FakeResource("partition", plan)})
    with pytest.raises(ApplyError, match=r"cannot decide x y on this run: \?"):
        apply(engine, waiter=DeviceWaiter(system_root=tmp_path), max_rounds=3)


def test_provisional_after_progress_is_bounded(tmp_path: Path) -> None:
    def plan(ctx: Any, facts: Any, state: Any) -> ResourcePlan:
        return ResourcePlan(actions=(
            RunCommand(kind="x", target="a", op=Op.RUN, summary="step", argv=("true",)),
            RunCommand(kind="x", target="y", op=Op.RUN, summary="?", argv=("true",),
                       provisional=True)))
    runner = FakeRunner()
    engine = engine_with(tmp_path, runner, {"partition": FakeResource("partition", plan)})
    with pytest.raises(ApplyError, match="provisional actions after 3 rounds"):
        apply(engine, waiter=DeviceWaiter(system_root=tmp_path), max_rounds=3)
    assert runner.calls == [("true",)] * 3


def test_blocked_destructive_action_refused_before_anything_runs(tmp_path: Path) -> None:
    def plan(ctx: Any, facts: Any, state: Any) -> ResourcePlan:
        return ResourcePlan(actions=(
            RunCommand(kind="x", target="/etc/a", op=Op.RUN, summary="harmless", argv=("true",)),
            RunCommand(kind="partition", target="/dev/etherd/e0.1", op=Op.DESTROY,
                       summary="new dos table", argv=("sfdisk", "/dev/etherd/e0.1"),
                       destructive=True, requires_allow=True,
                       data_loss="gpt table with 2 partitions (ext4 'home' 9.8 GiB)")))
    runner = FakeRunner()
    engine = engine_with(tmp_path, runner, {"partition": FakeResource("partition", plan)})
    with pytest.raises(DestructiveActionBlocked, match=r"would lose: gpt table with 2 partitions"):
        apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert runner.calls == []


def test_drift_is_reported_not_executed(tmp_path: Path) -> None:
    def plan(ctx: Any, facts: Any, state: Any) -> ResourcePlan:
        return ResourcePlan(actions=(Drift(kind="module", target="aoe", op=Op.CHANGE,
                                           summary="reload required", remedy="modprobe -r aoe"),))
    engine = engine_with(tmp_path, FakeRunner(), {"module": FakeResource("module", plan)})
    report = apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert not report.executed and [d.summary for d in report.drift] == ["reload required"]


def test_fstab_write_keeps_a_backup(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text("UUID=1 / ext4 defaults 0 1\n")
    engine = engine_with(tmp_path, FakeRunner(), {"fstab": fstab_resource()})
    apply(engine, waiter=DeviceWaiter(system_root=tmp_path))
    assert (tmp_path / "etc/fstab.aoeprov.bak").read_text() == "UUID=1 / ext4 defaults 0 1\n"
    assert (tmp_path / "etc/fstab").read_bytes() == FSTAB_LINE
    assert not list((tmp_path / "etc").glob(".fstab.*.tmp"))
