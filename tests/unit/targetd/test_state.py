"""Peer-set state kept on disk: saved before the reply, restored at start and on SIGHUP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from aoeprov.aoe.wire import (
    Command,
    ConfigCommand,
    MacDirective,
    MacMaskArg,
    ReserveArg,
    mac_to_str,
)
from aoeprov.targetd.config import ExportConfig
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import TargetProtocol
from aoeprov.targetd.state import ExportState, StateStore

from .frames import CLIENT_MAC, OTHER_MAC, FakeLink, config_request, make_backing, request


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    return make_backing(tmp_path / "disk.img")


def config(path: Path, **kw: object) -> ExportConfig:
    return ExportConfig(1, 2, str(path), ("eth0",), **kw)  # type: ignore[arg-type]


def serve(store: StateStore, cfg: ExportConfig) -> TargetProtocol:
    """An engine whose changes are saved to ``store``, the export restored from it."""
    exp = Export(cfg, hostname="h")
    store.restore(exp)
    engine = TargetProtocol([exp])
    engine.on_state_change = store.save
    return engine


def send(engine: TargetProtocol, frame: bytes) -> None:
    out: list[bytes | bytearray] = []
    engine.handle(frame, FakeLink(), out)
    assert out


def close(engine: TargetProtocol) -> None:
    for exp in engine.exports:
        exp.close()


def test_peer_changes_survive_a_restart(tmp_path: Path, backing: Path) -> None:
    store = StateStore(tmp_path / "state")
    engine = serve(store, config(backing))
    send(engine, config_request(ConfigCommand.SET, b"owner=host1"))
    send(engine, request(Command.MAC_MASK, MacMaskArg(1, 0, (
        MacDirective(1, CLIENT_MAC), MacDirective(1, OTHER_MAC))).pack()))
    send(engine, request(Command.RESERVE, ReserveArg(1, (CLIENT_MAC,)).pack()))
    saved = json.loads((tmp_path / "state" / "e1.2.json").read_text())
    assert saved == {"version": 1, "path": str(backing), "config": "owner=host1",
                     "masks": [mac_to_str(CLIENT_MAC), mac_to_str(OTHER_MAC)],
                     "reserve": [mac_to_str(CLIENT_MAC)], "allowed_macs": []}
    close(engine)  # as after kill -9: nothing more is written at exit

    again = serve(StateStore(tmp_path / "state"), config(backing))
    (exp,) = again.exports
    assert (exp.config_string, exp.masks, exp.reserve) == (
        b"owner=host1", [CLIENT_MAC, OTHER_MAC], [CLIENT_MAC])
    close(again)


def test_without_a_state_dir_nothing_is_kept(tmp_path: Path, backing: Path) -> None:
    engine = serve(StateStore(None), config(backing))
    send(engine, config_request(ConfigCommand.SET, b"x"))
    close(engine)
    assert list(tmp_path.iterdir()) == [backing]


def test_changed_allowed_macs_in_the_configuration_win(
        tmp_path: Path, backing: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    first = config(backing, allowed_macs=(mac_to_str(CLIENT_MAC),))
    engine = serve(store, first)
    send(engine, request(Command.MAC_MASK, MacMaskArg(1, 0, (
        MacDirective(1, OTHER_MAC),)).pack(), src=CLIENT_MAC))
    close(engine)
    # the same configuration again: the runtime edit stands
    engine = serve(store, first)
    assert engine.exports[0].masks == [CLIENT_MAC, OTHER_MAC]
    close(engine)
    # the configuration now says something else: it wins, and the file follows it
    changed = config(backing, allowed_macs=(mac_to_str(OTHER_MAC),))
    with caplog.at_level(logging.WARNING):
        engine = serve(store, changed)
    assert engine.exports[0].masks == [OTHER_MAC]
    assert "allowed_macs changed" in caplog.text
    assert json.loads((tmp_path / "e1.2.json").read_text())["allowed_macs"] == [
        mac_to_str(OTHER_MAC)]
    close(engine)


def test_state_of_another_backing_path_is_ignored(tmp_path: Path, backing: Path) -> None:
    store = StateStore(tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "e1.2.json").write_text(json.dumps(
        ExportState("/elsewhere.img", b"old").to_json()))
    engine = serve(store, config(backing))
    assert engine.exports[0].config_string == b""
    close(engine)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not JSON"),
    ('{"version": 2}', '"version" is 2'),
    ('{"version": 1, "path": "p", "config": "", "masks": ["zz"], "reserve": [], '
     '"allowed_macs": []}', "'masks'"),
    ('[1, 2]', "not a JSON object"),
])
def test_a_corrupt_state_file_is_set_aside_and_the_export_served(
        tmp_path: Path, backing: Path, caplog: pytest.LogCaptureFixture, text: str,
        reason: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "e1.2.json").write_text(text)
    with caplog.at_level(logging.ERROR):
        engine = serve(StateStore(state), config(backing))
    assert engine.exports[0].config_string == b""
    (aside,) = state.glob("e1.2.json.corrupt-*")
    assert aside.read_text() == text and not (state / "e1.2.json").exists()
    assert "state file" in caplog.text and reason in caplog.text
    assert "serving from the configuration" in caplog.text
    send(engine, config_request(ConfigCommand.SET, b"fresh"))  # and saving works again
    assert json.loads((state / "e1.2.json").read_text())["config"] == "fresh"
    close(engine)


def test_an_unwritable_state_dir_is_logged_and_serving_goes_on(
        tmp_path: Path, backing: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = StateStore(blocker / "state")  # a directory below a file: never creatable
    engine = serve(store, config(backing))
    with caplog.at_level(logging.ERROR):
        send(engine, config_request(ConfigCommand.SET, b"x"))
    assert engine.exports[0].config_string == b"x"
    assert store.errors == 1 and "cannot save its state" in caplog.text
    close(engine)


def test_config_strings_of_any_bytes_round_trip() -> None:
    state = ExportState("/p", bytes(range(256)) * 4, (CLIENT_MAC,), (), ("02:00:00:00:00:02",))
    assert ExportState.from_json(json.loads(json.dumps(state.to_json()))) == state
