"""Load a spec file: YAML with positions, schema, semantic checks, typed model."""

from __future__ import annotations

import logging
from pathlib import Path as FsPath

from aoeprov.errors import SpecError, SpecIssue
from aoeprov.spec.build import build_spec
from aoeprov.spec.checks import semantic_issues
from aoeprov.spec.model import Spec
from aoeprov.spec.schema import schema_issues
from aoeprov.spec.yamldoc import decode, parse_yaml

LOG = logging.getLogger(__name__)

_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "empty"}


def load_spec(path: str | FsPath) -> Spec:
    """Read and check the spec at ``path``; ``SpecError`` lists every problem."""
    name = str(path)
    try:
        data = FsPath(path).read_bytes()
    except OSError as exc:
        raise SpecError([SpecIssue(name, 0, 0, "", f"cannot read the file: "
                                                   f"{exc.strerror or exc}")]) from None
    return load_spec_text(decode(data, name), name)


def load_spec_text(text: str, filename: str = "<string>") -> Spec:
    doc = parse_yaml(text, filename)
    if not isinstance(doc.data, dict):
        kind = _KINDS.get(type(doc.data), type(doc.data).__name__)
        loc = doc.where(())
        raise SpecError([*doc.issues, SpecIssue(
            filename, loc.line, loc.col, "",
            f"the top level must be a mapping (version: 1, hosts: ...), not {kind}")])
    # A node the YAML reader already complained about (bad tag...) gets no second,
    # derived complaint from the schema or the semantic checks.
    later = [i for i in (*schema_issues(doc), *semantic_issues(doc))
             if not any(_within(i.field, y.field) for y in doc.issues)]
    issues = [*doc.issues, *later]
    if issues:
        raise SpecError(sorted(set(issues)))
    spec = build_spec(doc)
    LOG.debug("loaded %s: %d hosts, %d exports, %d disks", filename, len(spec.hosts),
              len(spec.exports), len(spec.disks))
    return spec


def _within(field: str, parent: str) -> bool:
    return field == parent or (bool(parent) and field.startswith((f"{parent}.", f"{parent}[")))
