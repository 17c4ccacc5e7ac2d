"""Reconciler: host and resource selection, ordering, future state, daemon-reload placement."""

from __future__ import annotations

from pathlib import Path

import pytest

from aoeprov.errors import PlanError
from aoeprov.reconciler.actions import MakeDirectory, Noop, Op, ResourcePlan, RunCommand, WriteFile
from aoeprov.reconciler.engine import (
    RESOURCE_ORDER,
    Reconciler,
    load_resource,
    parse_device_map,
    parse_kinds,
    select_kinds,
)
from aoeprov.reconciler.systemd import DAEMON_RELOAD, place_daemon_reload
from tests.unit.reconciler.fakes import FakeResource, make_host, tutorial


def test_host_missing_names_the_spec_hosts(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"no host 'web1' \(hosts: server2, server1\)"):
        Reconciler(spec=tutorial(), host=make_host(tmp_path), host_name="web1", kinds=())


def test_host_defaults_to_hostname(tmp_path: Path) -> None:
    engine = Reconciler(spec=tutorial(), host=make_host(tmp_path), kinds=())
    assert engine.me.name == "server1"


def test_kinds_selection_keeps_order() -> None:
    assert select_kinds() == RESOURCE_ORDER
    assert select_kinds(only={"boot", "module"}) == ("module", "boot")
    assert select_kinds(skip={"module", "discovery", "boot"})[0] == "backing"
    assert parse_kinds("module, boot") == {"module", "boot"}
    with pytest.raises(PlanError, match="unknown resource kind"):
        parse_kinds("modules")


def test_device_map() -> None:
    assert parse_device_map(["e0.1=/tmp/a.img", "disk2=/dev/loop1"]) == {
        "e0.1": "/tmp/a.img", "disk2": "/dev/loop1"}
    with pytest.raises(PlanError, match="NAME=PATH"):
        parse_device_map(["e0.1"])


def test_missing_resource_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from aoeprov.reconciler import engine
    monkeypatch.setitem(engine.RESOURCE_MODULES, "boot", "aoeprov.resources.no_such_thing")
    with pytest.raises(PlanError, match=r"resource 'boot': cannot import .*--skip boot"):
        load_resource("boot")


def test_planners_see_the_future_state(tmp_path: Path) -> None:
    """The first planner predicts a file; the second plans against the prediction."""
    seen: list[str | None] = []

    def first(ctx, facts, state):  # type: ignore[no-untyped-def]
        state.files["/etc/x"] = "new"
        return ResourcePlan(actions=(WriteFile(kind="module", target="/etc/x", op=Op.CREATE,
                                               summary="x", content="new"),))

    def second(ctx, facts, state):  # type: ignore[no-untyped-def]
        seen.append(state.files.get("/etc/x"))
        return ResourcePlan(noops=(Noop("fstab", "/etc/x", "saw it"),))

    engine = Reconciler(spec=tutorial(), host=make_host(tmp_path), kinds=("module", "fstab"),
                    systemd=False, resources={"module": FakeResource("module", first),
                                              "fstab": FakeResource("fstab", second)})
    plan = engine.plan()
    assert seen == ["new"]
    assert [a.target for a in plan.actions] == ["/etc/x"]
    assert [n.reason for n in plan.noops] == ["saw it"]


def _write(target: str) -> WriteFile:
    return WriteFile(kind="t", target=target, op=Op.CHANGE, summary="w", content="x")


def _cmd(*argv: str) -> RunCommand:
    return RunCommand(kind="t", target=argv[-1], op=Op.RUN, summary="c", argv=argv)


def test_daemon_reload_once_at_the_end() -> None:
    actions = [_write("/etc/fstab"), _write("/etc/systemd/system/a.service"),
               MakeDirectory(kind="t", target="/x", op=Op.CREATE, summary="d")]
    placed = place_daemon_reload(actions, owed=False, systemd=True)
    assert [getattr(a, "argv", None) for a in placed][-1] == ("systemctl", DAEMON_RELOAD)
    assert sum(a.settles == DAEMON_RELOAD for a in placed) == 1
    assert placed[0].owes == (DAEMON_RELOAD,) and placed[1].owes == (DAEMON_RELOAD,)


def test_daemon_reload_before_a_start_that_needs_it() -> None:
    actions = [_write("/etc/systemd/system/a.service"), _cmd("systemctl", "enable", "--now", "a"),
               _write("/etc/fstab")]
    placed = place_daemon_reload(actions, owed=False, systemd=True)
    assert [a.summary for a in placed] == ["w", placed[1].summary, "c", "w", placed[4].summary]
    assert placed[1].settles == DAEMON_RELOAD and placed[4].settles == DAEMON_RELOAD


def test_enable_leaves_the_reload_to_the_plan() -> None:
    """systemctl enable reloads the manager itself unless --no-reload: one reload a plan."""
    actions = [_write("/etc/systemd/system/a.service"), _cmd("systemctl", "enable", "a"),
               _cmd("systemctl", "start", "a")]
    placed = place_daemon_reload(actions, owed=False, systemd=True)
    assert [getattr(a, "argv", None) for a in placed][1:] == [
        ("systemctl", "--no-reload", "enable", "a"), ("systemctl", DAEMON_RELOAD),
        ("systemctl", "start", "a")]
    assert placed[1].owes == (DAEMON_RELOAD,)
    # an enable alone owes the reload as well; one with --now keeps systemctl's own
    (enable, reload) = place_daemon_reload([_cmd("systemctl", "enable", "a")], owed=False,
                                           systemd=True)
    assert enable.owes == (DAEMON_RELOAD,) and reload.settles == DAEMON_RELOAD
    now = _cmd("systemctl", "disable", "--now", "a")
    assert place_daemon_reload([now], owed=False, systemd=True) == (now,)
    # without systemd (or under --root) the commands are left as they are
    assert place_daemon_reload([_cmd("systemctl", "enable", "a")], owed=False,
                               systemd=False) == (_cmd("systemctl", "enable", "a"),)


def test_daemon_reload_owed_from_journal_and_none_without_systemd() -> None:
    placed = place_daemon_reload([], owed=True, systemd=True)
    assert [a.settles for a in placed] == [DAEMON_RELOAD]
    assert place_daemon_reload([_write("/etc/fstab")], owed=True, systemd=False) == (
        _write("/etc/fstab"),)
