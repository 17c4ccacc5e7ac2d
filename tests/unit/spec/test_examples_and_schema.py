"""Examples validate; the schema is complete and shipped; the reference is fresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from aoeprov.spec import dump_spec, load_spec, load_spec_text
from aoeprov.spec.reference import render
from aoeprov.spec.schema import load_schema

ROOT = Path(__file__).parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_the_three_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"tutorial.yaml", "image-file.yaml", "gpt-multi.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_validates_and_round_trips(path: Path) -> None:
    spec = load_spec(path)
    assert load_spec_text(dump_spec(spec), "dumped.yaml") == spec


def test_image_file_example_is_the_tutorial_with_an_image() -> None:
    spec = load_spec(ROOT / "examples" / "image-file.yaml")
    assert spec.target("storage1").backing.device_path == "/storage/storage1.img"
    tutorial = load_spec(ROOT / "examples" / "tutorial.yaml")
    assert spec.disks == tutorial.disks and spec.mounts == tutorial.mounts


def test_gpt_multi_example_covers_what_it_promises() -> None:
    spec = load_spec(ROOT / "examples" / "gpt-multi.yaml")
    assert len(spec.exports_on("nas1")) >= 3
    assert any(e.read_only for e in spec.exports)
    assert any(e.allowed_macs for e in spec.exports)
    assert any(d.table == "gpt" for d in spec.disks)
    assert {f.type for f in spec.filesystems} >= {"ext4", "xfs"}
    assert all(p.label for p in spec.partitions)


def test_schema_is_valid_2020_12() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_ships_in_the_package_as_the_source_file() -> None:
    shipped = ROOT / "aoeprov" / "data" / "aoeprov.schema.json"
    assert shipped.is_symlink()
    assert shipped.resolve() == (ROOT / "schemas" / "aoeprov.schema.json").resolve()
    assert load_schema() == json.loads((ROOT / "schemas" / "aoeprov.schema.json").read_text())


def _objects(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}/{i}")


def test_every_object_is_closed_and_every_field_described() -> None:
    schema = load_schema()
    for where, obj in _objects(schema, "#"):
        if "properties" in obj:
            assert obj.get("additionalProperties") is False, where
            for name, prop in obj["properties"].items():
                assert prop.get("description"), f"{where}/properties/{name}"
        elif obj.get("type") == "object":  # free-form maps (module options) constrain values
            assert "additionalProperties" in obj, where
    for name, definition in schema["$defs"].items():
        assert definition.get("description"), f"#/$defs/{name}"


def test_reference_doc_is_fresh() -> None:
    checked_in = (ROOT / "docs" / "spec-reference.md").read_text()
    assert checked_in == render(load_schema()), (
        "docs/spec-reference.md is stale: run `python -m aoeprov.spec.reference > "
        "docs/spec-reference.md`")


def test_reference_lists_every_field() -> None:
    text = render(load_schema())
    for field in ("`shelf`", "`allowed_macs`", "`lvm.size`", "`modules.load[].options`",
                  "`device_timeout`", "`label`"):
        assert field in text
