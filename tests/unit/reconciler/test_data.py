"""to_data/from_data: every facts record of the resources survives a JSON round trip."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field

import pytest

from aoeprov.reconciler.data import from_data, to_data
from aoeprov.resources import boot, fstab, mount
from aoeprov.resources import module as module_kind
from aoeprov.spec.model import FsType


@dataclass(frozen=True)
class Inner:
    name: str
    size: int | None = None


@dataclass(frozen=True)
class Outer:
    items: tuple[Inner, ...] = ()
    by_name: dict[str, Inner] = field(default_factory=dict)
    kinds: frozenset[FsType] = frozenset()
    ratio: float = 0.0


def test_nested_round_trip() -> None:
    value = Outer(items=(Inner("a", 1), Inner("b")), by_name={"a": Inner("a", 2)},
                  kinds=frozenset({FsType.EXT3}), ratio=1)
    data = json.loads(json.dumps(to_data(value)))
    assert from_data(Outer, data) == Outer(items=value.items, by_name=value.by_name,
                                           kinds=value.kinds, ratio=1.0)


def test_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown fields"):
        from_data(Inner, {"name": "a", "colour": "red"})
    with pytest.raises(TypeError):
        from_data(Inner, {"name": 3})
    with pytest.raises(TypeError):
        from_data(Inner, {"name": "a", "size": True})


@pytest.mark.parametrize("mod", [module_kind, fstab, mount, boot])
def test_facts_records_round_trip(mod: typing.Any) -> None:
    samples = {
        module_kind: module_kind.ModuleFacts(
            kernel="6.1",
            modules={"aoe": module_kind.KernelModuleFacts(
                "aoe", module_kind.LOADED, {"aoe_iflist": "eth0"})},
            files={"/etc/modules": None, "/etc/modprobe.d/aoeprov.conf": b"options aoe\n"}),
        fstab: fstab.FstabFacts(content=b"a b c\n"),
        mount: mount.MountFacts(root="/", mounts=(mount.MountInfo("/s", "/dev/x", "ext3"),),
                                  directories={"/s": True}, links={"/l": "/dev/loop0"}),
        boot: boot.BootFacts(root="/", python="/usr/bin/python3", unit=b"[Unit]\n"),
    }
    facts = samples[mod]
    cls = typing.get_type_hints(mod.gather)["return"]
    assert from_data(cls, json.loads(json.dumps(to_data(facts)))) == facts
