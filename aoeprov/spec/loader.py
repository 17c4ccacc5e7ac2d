"""Load a spec file: YAML with positions, schema, semantic checks, typed model."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path as FsPath
from typing import BinaryIO

from aoeprov.errors import SpecError, SpecIssue
from aoeprov.spec.build import build_spec
from aoeprov.spec.checks import semantic_issues
from aoeprov.spec.model import Spec
from aoeprov.spec.schema import schema_issues
from aoeprov.spec.yamldoc import MAX_BYTES, decode, parse_yaml

LOG = logging.getLogger(__name__)

_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "empty"}


STDIN = "-"
_NOT_A_FILE = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket"}


def load_spec(path: str | FsPath) -> Spec:
    """Read and check the spec at ``path`` (``-``: standard input); ``SpecError`` lists
    every problem."""
    name = str(path)
    data = read_spec_bytes(name)
    return load_spec_text(decode(data, name), name)


def read_spec_bytes(name: str) -> bytes:
    """At most ``MAX_BYTES`` + 1 bytes of the spec (one more says "too big" without reading
    the rest); a path must be a regular file, checked before anything is read (a FIFO would
    block, ``/dev/zero`` never ends). ``-`` reads standard input with the same bound."""
    def refuse(message: str) -> SpecError:
        return SpecError([SpecIssue(name, 0, 0, "", message)])
    if name == STDIN:
        return _bounded(sys.stdin.buffer)
    try:
        kind = stat.S_IFMT(os.stat(name).st_mode)
        if kind != stat.S_IFREG:
            what = _NOT_A_FILE.get(kind, "not a regular file")
            raise refuse(f"cannot read the spec: it is {what}; a spec is a regular file "
                         "(or - for standard input)")
        # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open does not hang
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise refuse("cannot read the spec: it is not a regular file")
            return _bounded(fh)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror or exc}") from None


def _bounded(fh: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    left = MAX_BYTES + 1
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
