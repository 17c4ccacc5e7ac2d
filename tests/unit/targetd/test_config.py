"""The export list file, and exports built from a spec."""

from __future__ import annotations

import json

import pytest

from aoeprov.errors import TargetError
from aoeprov.spec.model import (
    ExportSpec,
    FileBacking,
    HostSpec,
    LvmBacking,
    Role,
    ServerKind,
    Spec,
    TargetSpec,
    WriteMode,
)
from aoeprov.targetd.config import ExportConfig, exports_from_spec, parse_config, render_config


def test_render_then_parse_round_trips() -> None:
    exports = [ExportConfig(0, 1, "/dev/vg0/a", ("eth0",), name="a"),
               ExportConfig(0, 2, "/srv/b.img", ("eth0", "eth1"), read_only=True, offset=8,
                            length=100, allowed_macs=("02:00:00:00:00:01",),
                            write_mode="writeback", buffer_count=64)]
    text = render_config(exports)
    assert json.loads(text)["version"] == 1
    assert parse_config(text) == exports


def test_defaults_for_missing_keys() -> None:
    text = json.dumps({"version": 1, "exports": [
        {"shelf": 3, "slot": 4, "path": "/x", "interfaces": ["eth0"]}]})
    assert parse_config(text) == [ExportConfig(3, 4, "/x", ("eth0",))]


@pytest.mark.parametrize("doc, message", [
    ("not json", "not JSON"),
    ({"version": 2, "exports": []}, "version"),
    ({"version": 1, "exports": {}}, "must be a list"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 1, "path": "/x"}]}, "missing 'interfaces'"),
    ({"version": 1, "exports": [{"shelf": True, "slot": 1, "path": "/x", "interfaces": ["e"]}]},
     "'shelf'"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 1, "path": "/x", "interfaces": ["e"],
                                 "colour": "red"}]}, "unknown keys"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 255, "path": "/x", "interfaces": ["e"]}]},
     "slot 255"),
    ({"version": 1, "exports": [{"shelf": 65535, "slot": 0, "path": "/x", "interfaces": ["e"]}]},
     "shelf 65535"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 0, "path": "/x", "interfaces": ["e"],
                                 "buffer_count": 1}]}, "buffer_count 1"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 0, "path": "/x", "interfaces": ["e"],
                                 "write_mode": "fast"}]}, "write_mode"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 0, "path": "/x", "interfaces": ["e"],
                                 "allowed_macs": ["nope"]}]}, "invalid MAC"),
    ({"version": 1, "exports": [{"shelf": 0, "slot": 0, "path": "/x", "interfaces": ["e"]},
                                {"shelf": 0, "slot": 0, "path": "/y", "interfaces": ["e"]}]},
     "both claim e0.0"),
])
def test_invalid_files_are_refused_with_the_reason(doc: object, message: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(TargetError, match=message):
        parse_config(text)


def test_exports_from_spec_takes_the_hosts_builtin_exports() -> None:
    spec = Spec(
        version=1,
        hosts=(HostSpec("server2", frozenset({Role.TARGET}), ("eth0",)),
               HostSpec("other", frozenset({Role.TARGET}), ("eth0",))),
        targets=(TargetSpec("storage1", "server2", LvmBacking("vg0", "storage1", 20 << 30)),
                 TargetSpec("img", "server2", FileBacking("/srv/img", 1 << 20)),
                 TargetSpec("far", "other", FileBacking("/srv/far", 1 << 20))),
        exports=(ExportSpec("storage1", 0, 1, "storage1", ("eth0",)),
                 ExportSpec("img", 0, 2, "img", ("eth0",), read_only=True,
                            allowed_macs=("02:00:00:00:00:01",),
                            write_mode=WriteMode.WRITEBACK, buffer_count=32),
                 ExportSpec("by-vblade", 0, 3, "img", ("eth0",), server=ServerKind.VBLADE),
                 ExportSpec("far", 1, 1, "far", ("eth0",))))
    assert exports_from_spec(spec, "server2") == [
        ExportConfig(0, 1, "/dev/vg0/storage1", ("eth0",), name="storage1"),
        ExportConfig(0, 2, "/srv/img", ("eth0",), name="img", read_only=True,
                     allowed_macs=("02:00:00:00:00:01",), write_mode="writeback",
                     buffer_count=32)]
