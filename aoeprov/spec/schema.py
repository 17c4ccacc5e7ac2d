"""The JSON Schema of a spec (the single source of truth) and its error messages.

The schema ships inside the package as ``aoeprov/data/aoeprov.schema.json``
(a link to ``schemas/aoeprov.schema.json`` in the source tree). jsonschema's
own messages are rewritten into short ones that name the field, and every
error is placed at the YAML node it concerns.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from aoeprov.errors import SpecIssue
from aoeprov.spec.paths import Path
from aoeprov.spec.yamldoc import Document

SCHEMA_RESOURCE = "aoeprov.schema.json"

_SCHEMA_TYPES = {"array": "list", "object": "mapping"}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string",
               list: "list", dict: "mapping", type(None): "null"}


@functools.cache
def _schema_text() -> str:
    return resources.files("aoeprov.data").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")


def load_schema() -> dict[str, Any]:
    """A fresh copy of the schema (callers may modify it)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(load_schema())


def schema_issues(doc: Document) -> list[SpecIssue]:
    """Every schema violation in ``doc``, each at the position of its node."""
    issues: list[SpecIssue] = []
    for error in _validator().iter_errors(doc.data):
        issues.extend(_issues_for(error, doc))
    return issues


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# Validators whose message needs only the schema's value for them.
_PLAIN: dict[str, Callable[[Any], str]] = {
    "minItems": lambda expected: f"must list at least {expected} item(s)",
    "uniqueItems": lambda expected: "lists the same item more than once",
    "minLength": lambda expected: "must not be empty",
    "maxLength": lambda expected: f"is longer than {expected} characters",
}


def _issues_for(error: ValidationError, doc: Document) -> list[SpecIssue]:
    """One schema error as the issues a person reads (field path, what is wrong, the fix)."""
    path: Path = tuple(error.absolute_path)
    value: Any = error.instance
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    match error.validator:
        case "required":
            missing = [k for k in expected if k not in value]
            # The mapping that lacks the key is the only place to point at.
            return [doc.issue((*path, k), f"missing required field {k!r}") for k in missing[:1]]
        case "additionalProperties":
            return _unknown_fields(doc, path, value, sorted(schema.get("properties", {})))
        case "oneOf" if all(set(s) == {"required"} for s in expected):
            choices = [s["required"][0] for s in expected]
            given = [c for c in choices if c in value]
            found = f"found {', '.join(given)}" if given else "found none"
            return [doc.issue(path, f"needs exactly one of {', '.join(choices)} ({found})")]
        case "type":
            names: list[str] = expected if isinstance(expected, list) else [expected]
            wanted = " or ".join(_SCHEMA_TYPES.get(n) or n for n in names)
            got = "an empty value" if value is None else f"{_kind(value)} {_show(value)}"
            return [doc.issue(path, f"expected {wanted}, got {got}")]
        case "enum":
            options = ", ".join(str(o) for o in expected)
            return [doc.issue(path, f"{_show(value)} is not one of: {options}")]
        case "const" if path == ("version",):
            return [doc.issue(path, f"unsupported spec version {_show(value)}; "
                                    f"this aoeprov reads version {expected}")]
        case "maximum" | "minimum":
            return [doc.issue(path, _out_of_range(path, value, expected, error.validator))]
        case "pattern":
            what = schema.get("title", f"value matching {expected}")
            return [doc.issue(path, f"{_show(value)} is not a valid {what}")]
        case validator if validator in _PLAIN:
            return [doc.issue(path, _PLAIN[validator](expected))]
    return [doc.issue(path, error.message)]


def _unknown_fields(doc: Document, path: Path, value: Any, known: list[str]) -> list[SpecIssue]:
    issues = []
    for key in value:
        if key in known:
            continue
        hint = difflib.get_close_matches(key, known, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f" (known fields: {', '.join(known)})"
        issues.append(doc.issue((*path, key), f"unknown field {key!r}{extra}", at_key=True))
    return issues


def _out_of_range(path: Path, value: Any, expected: Any, validator: str) -> str:
    if validator == "maximum" and path and path[-1] in ("shelf", "slot") \
            and isinstance(value, int):
        if value == expected + 1:
            what = "0xffff" if path[-1] == "shelf" else "0xff"
            return f"{value} ({what}) is the AoE broadcast {path[-1]} address; use 0-{expected}"
        return f"{value} is out of range 0-{expected}"
    word = "at most" if validator == "maximum" else "at least"
    return f"must be {word} {expected}, not {value}"
