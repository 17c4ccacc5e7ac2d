"""Read YAML into plain data while keeping the position of every node.

PyYAML composes a node graph (each node has a start mark); we convert that
graph ourselves instead of using its constructor, so that we can refuse what a
spec never needs and PyYAML would silently accept: duplicate keys (PyYAML keeps
the last), tags other than the core ones, and alias bombs (an alias is
expanded on every use, so we count expansions and stop early).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aoeprov.errors import SpecError, SpecIssue
from aoeprov.spec.model import Location
from aoeprov.spec.paths import Path, format_path

LOG = logging.getLogger(__name__)

# Nodes produced while expanding the document, aliases included. A real spec
# has a few thousand; a "billion laughs" document hits this long before it
# uses noticeable memory.
MAX_NODES = 100_000
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 32  # a spec needs 7 levels

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "bool", "null", "float")}
_TIMESTAMP = f"{_CORE}timestamp"
_MERGE = f"{_CORE}merge"


@dataclass
class Document:
    """A YAML document as plain data plus positions.

    ``locations`` maps the path of every value to its node's position;
    ``key_locations`` maps the path of every mapping entry to its key's
    position; ``raw`` keeps the source text of integer scalars, so ``type: 83``
    can be read as the string "83".
    """

    file: str
    data: Any
    locations: dict[Path, Location] = field(default_factory=dict)
    key_locations: dict[Path, Location] = field(default_factory=dict)
    raw: dict[Path, str] = field(default_factory=dict)
    issues: list[SpecIssue] = field(default_factory=list)

    def where(self, path: Path) -> Location:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            loc = self.locations.get(path[:end])
            if loc is not None:
                return loc
        return Location(self.file, 1, 1)

    def where_key(self, path: Path) -> Location:
        return self.key_locations.get(path) or self.where(path)

    def issue(self, path: Path, message: str, *, at_key: bool = False) -> SpecIssue:
        loc = self.where_key(path) if at_key else self.where(path)
        return SpecIssue(self.file, loc.line, loc.col, format_path(path), message)


class _Fatal(Exception):
    """Stop converting: the document cannot be read any further."""

    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _NodeLoader(yaml.SafeLoader):
    """SafeLoader for its scanner, parser, composer and scalar constructors only."""


def decode(data: bytes, file: str) -> str:
    """UTF-8 (with or without BOM) or a SpecIssue that names the bad byte."""
    if len(data) > MAX_BYTES:   # the loader reads at most one byte more than the limit
        raise SpecError([SpecIssue(file, 1, 1, "", f"file is more than {MAX_BYTES} bytes; a "
                                                   f"spec may be at most {MAX_BYTES} bytes")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = (f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                   f"({exc.reason}); save the file as UTF-8")
        raise SpecError([SpecIssue(file, line, col, "", message)]) from None


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document; raise ``SpecError`` for anything unreadable.

    Problems that do not stop reading (duplicate keys, bad tags) are collected
    in ``Document.issues`` so the caller can report them with everything else.
    """
    loader: _NodeLoader | None = None
    try:
        loader = _NodeLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_syntax_issue(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        message = (f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})"
                   if isinstance(exc.character, int) else str(exc.reason))
        raise SpecError([SpecIssue(file, line, col, "", message)]) from None
    except RecursionError:  # PyYAML composes recursively; our own limit is lower
        assert loader is not None
        mark = loader.get_mark()
        raise SpecError([SpecIssue(file, mark.line + 1, mark.column + 1, "",
                                   f"nesting is deeper than {MAX_DEPTH} levels")]) from None
    except yaml.YAMLError as exc:  # any other PyYAML error: still no traceback
        raise SpecError([SpecIssue(file, 1, 1, "", f"cannot read YAML: {exc}")]) from None
    if node is None:
        raise SpecError([SpecIssue(file, 1, 1, "", "the file is empty; a spec is a mapping "
                                                   "that starts with 'version: 1'")])
    doc = Document(file, None)
    try:
        doc.data = _Converter(doc, loader).convert(node, ())
    except _Fatal as fatal:
        raise SpecError([fatal.issue]) from None
    finally:
        loader.dispose()
    return doc


def _loc(file: str, node: Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _syntax_issue(exc: yaml.MarkedYAMLError, file: str) -> SpecIssue:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    if _points_at_tab(mark) or "'\\t'" in problem:
        problem = "a tab character is not allowed here; YAML indentation must use spaces"
    elif exc.context:
        problem = f"{problem} ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            problem += f" at line {exc.context_mark.line + 1}"
        problem += ")"
    return SpecIssue(file, line, col, "", f"YAML syntax error: {problem}")


def _tag_name(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _points_at_tab(mark: yaml.Mark | None) -> bool:
    if mark is None or not mark.buffer:
        return False
    return mark.pointer < len(mark.buffer) and mark.buffer[mark.pointer] == "\t"


class _Converter:
    def __init__(self, doc: Document, loader: _NodeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.count = 0
        self.active: set[int] = set()  # ids of the collections being converted (cycle check)

    def _issue(self, path: Path, node: Node, message: str) -> SpecIssue:
        loc = _loc(self.doc.file, node)
        return SpecIssue(self.doc.file, loc.line, loc.col, format_path(path), message)

    def _unknown_tag(self, path: Path, node: Node) -> None:
        self.doc.issues.append(self._issue(path, node, f"unknown tag {_tag_name(node.tag)}"))

    def convert(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            # Aliased nodes carry the anchor's position; the top-level entry is more useful.
            loc = self.doc.where(path[:1])
            message = (f"the document expands to more than {MAX_NODES} nodes "
                       "(aliases of aliases?); refusing to read it")
            raise _Fatal(SpecIssue(self.doc.file, loc.line, loc.col, format_path(path[:1]),
                                   message))
        if len(path) > MAX_DEPTH:
            raise _Fatal(self._issue(path[:1], node,
                                     f"nesting is deeper than {MAX_DEPTH} levels"))
        self.doc.locations.setdefault(path, _loc(self.doc.file, node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.active:
            raise _Fatal(self._issue(path, node, "an alias refers to the node that contains it "
                                                 "(recursive alias)"))
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != f"{_CORE}seq":
                    self._unknown_tag(path, node)
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != f"{_CORE}map":
                    self._unknown_tag(path, node)
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise _Fatal(self._issue(path, node, f"unexpected YAML node {type(node).__name__}"))

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        if node.tag == _TIMESTAMP:
            return node.value  # a date-looking string is just a string to us
        if node.tag not in _SCALAR_TAGS:
            self.doc.issues.append(self._issue(path, node, f"unknown tag {_tag_name(node.tag)}; "
                                                           "a spec uses plain YAML values only"))
            return node.value
        try:
            value = self.loader.construct_object(node)
        except (ValueError, yaml.constructor.ConstructorError):
            self.doc.issues.append(self._issue(path, node, f"{node.value!r} cannot be read as "
                                                           f"{_tag_name(node.tag)}"))
            return node.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if ":" in node.value:
                # YAML 1.1 base-60 numbers: 52:54:00:12:34:56 is a MAC address, not an int.
                return node.value
            self.doc.raw[path] = node.value
        return value

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                self.doc.issues.append(self._issue(path, key_node, "a mapping key must be a "
                                                                   "plain string"))
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in first_seen:
                first = first_seen[key].start_mark.line + 1
                message = f"duplicate key {key!r} (first defined at line {first})"
                self.doc.issues.append(self._issue(child, key_node, message))
                continue
            first_seen[key] = key_node
            self.doc.key_locations[child] = _loc(self.doc.file, key_node)
            result[key] = self.convert(value_node, child)
        # Merged entries (``<<: *defaults``) never override keys written here.
        for key_node, value_node in merged:
            key = str(key_node.value)
            if key not in result:
                self.doc.key_locations[(*path, key)] = _loc(self.doc.file, key_node)
                result[key] = self.convert(value_node, (*path, key))
        return result

    def _merge_sources(self, value: Node, path: Path) -> list[tuple[Node, Node]]:
        sources = value.value if isinstance(value, SequenceNode) else [value]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self.doc.issues.append(self._issue(path, source, "'<<' merges mappings only"))
                continue
            self.count += len(source.value)
            for key_node, value_node in source.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE:
                    pairs.append((key_node, value_node))
        return pairs
