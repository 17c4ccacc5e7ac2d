"""Generate the Markdown field reference from the schema.

``python -m aoeprov.spec.reference > docs/spec-reference.md``; a test fails
when the checked-in file differs from this output, so the docs cannot drift
from the schema.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from aoeprov.spec.checks import RULES
from aoeprov.spec.schema import load_schema

HEADER = """\
<!-- Generated from schemas/aoeprov.schema.json by `python -m aoeprov.spec.reference`.
     Do not edit by hand: edit the schema and regenerate. -->
"""


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` merged in (the local keywords win)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target = schema
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def _type(node: dict[str, Any], schema: dict[str, Any]) -> str:
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        items = _resolve(node.get("items", {}), schema)
        inner = "mapping" if "properties" in items else _type(items, schema)
        return f"list of {inner}"
    if kind == "object":
        return "mapping"
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if "minimum" in node and "maximum" in node:
        text += f" {node['minimum']}-{node['maximum']}"
    return text


def _default(node: dict[str, Any]) -> str:
    return f"`{json.dumps(node['default'])}`" if "default" in node else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(node: dict[str, Any], schema: dict[str, Any], prefix: str,
          nested: bool = True) -> Iterator[str]:
    required = set(node.get("required", []))
    for name, raw in node.get("properties", {}).items():
        field = _resolve(raw, schema)
        yield (f"| `{prefix}{name}` | {_cell(_type(field, schema))} | "
               f"{'yes' if name in required else ''} | {_default(field)} | "
               f"{_cell(field.get('description', ''))} |")
        if not nested:
            continue
        if "properties" in field:
            yield from _rows(field, schema, f"{prefix}{name}.")
        items = _resolve(field.get("items", {}), schema) if field.get("type") == "array" else {}
        if "properties" in items:
            yield from _rows(items, schema, f"{prefix}{name}[].")


def render(schema: dict[str, Any]) -> str:
    lines = [HEADER, f"# {schema['title']}: field reference", "", schema["description"], ""]
    one_of = schema["$defs"]["target"].get("oneOf", [])
    lines += [
        "Field paths in error messages look like `exports[0].shelf`. "
        "Sizes: " + schema['$defs']['size']['description'],
        "",
        "## Top level",
        "",
        "| Field | Type | Required | Default | Description |",
        "|---|---|---|---|---|",
    ]
    lines += list(_rows(schema, schema, "", nested=False))
    for section, prop in schema["properties"].items():
        items = _resolve(prop.get("items", {}), schema)
        if "properties" not in items:
            continue
        lines += ["", f"## {section}", "", prop["description"], "",
                  items.get("description", ""), ""]
        if section == "targets" and one_of:
            choices = ", ".join(f"`{s['required'][0]}`" for s in one_of)
            lines += [f"Exactly one of {choices} is required.", ""]
        lines += ["| Field | Type | Required | Default | Description |", "|---|---|---|---|---|"]
        lines += list(_rows(items, schema, ""))
    lines += ["", "## Checks beyond the schema", "",
              "`aoeprov validate` also checks what a schema cannot express:", ""]
    lines += [f"- {rule}" for rule in RULES]
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render(load_schema()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
