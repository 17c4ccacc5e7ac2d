"""Broken or hostile YAML: one clear issue with a position, never a traceback."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from aoeprov.errors import SpecError, SpecIssue
from aoeprov.spec import load_spec, load_spec_text
from aoeprov.spec.yamldoc import MAX_DEPTH, MAX_NODES

VALID_TAIL = """\
hosts:
  - {name: nas, roles: [target], interfaces: [eth0]}
targets:
  - {name: data, host: nas, file: {path: /srv/data.img, size: 1G}}
"""


def issues_of(text: str) -> list[SpecIssue]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "spec.yaml")
    return caught.value.issues


def only_issue(text: str) -> SpecIssue:
    issues = issues_of(text)
    assert len(issues) == 1, issues
    return issues[0]


def test_duplicate_key_is_rejected_with_both_lines() -> None:
    issue = only_issue("version: 1\n" + VALID_TAIL + "version: 1\n")
    assert (issue.line, issue.col, issue.field) == (6, 1, "version")
    assert issue.message == "duplicate key 'version' (first defined at line 1)"


def test_duplicate_key_inside_an_item() -> None:
    text = "version: 1\n" + VALID_TAIL.replace("interfaces: [eth0]}",
                                             "interfaces: [eth0], name: other}")
    issue = only_issue(text)
    assert (issue.line, issue.field) == (3, "hosts[0].name")
    assert "first defined at line 3" in issue.message


def test_unknown_local_tag() -> None:
    issue = only_issue("version: !custom 1\n" + VALID_TAIL)
    assert (issue.line, issue.col, issue.field) == (1, 10, "version")
    assert issue.message.startswith("unknown tag !custom")


def test_python_object_tag_is_refused_not_executed() -> None:
    issue = only_issue("version: 1\n" + VALID_TAIL + "x: !!python/object/apply:os.system [true]\n")
    assert issue.line == 6
    assert "unknown tag !!python/object/apply:os.system" in issue.message


def test_non_core_collection_tags_are_refused() -> None:
    issues = issues_of("version: 1\n" + VALID_TAIL.replace("roles: [target]",
                                                         "roles: !!set {target}"))
    assert issues[0].message == "unknown tag !!set"
    assert (issues[0].line, issues[0].field) == (3, "hosts[0].roles")


def test_billion_laughs_is_bounded() -> None:
    lines = ["version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        prev, cur = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    issue = only_issue("\n".join(lines) + "\n")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert f"more than {MAX_NODES} nodes" in issue.message
    assert issue.line in range(3, 12)
    assert grown_kib < 200_000  # 10**10 nodes expanded would need terabytes


def test_recursive_alias() -> None:
    issue = only_issue("version: 1\nloop: &l [*l]\n" + VALID_TAIL)
    assert "recursive alias" in issue.message
    assert issue.line == 2


def test_empty_file() -> None:
    issue = only_issue("")
    assert (issue.line, issue.col) == (1, 1)
    assert "empty" in issue.message


def test_comments_only_file_is_empty() -> None:
    assert "empty" in only_issue("# nothing here\n\n").message


def test_explicit_null_document() -> None:
    issue = only_issue("---\n")
    assert "top level must be a mapping" in issue.message
    assert issue.message.endswith("not empty")


def test_top_level_list() -> None:
    issue = only_issue("- version: 1\n- hosts: []\n")
    assert (issue.line, issue.col, issue.field) == (1, 1, "")
    assert issue.message == "the top level must be a mapping (version: 1, hosts: ...), not a list"


def test_top_level_string() -> None:
    assert only_issue("hello\n").message.endswith("not a string")


def test_non_utf8_bytes_name_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n" + VALID_TAIL.encode())
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    (issue,) = caught.value.issues
    assert (issue.line, issue.col) == (2, 6)
    assert "byte 0xe9 at offset 16" in issue.message
    assert "UTF-8" in issue.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfversion: 1\n" + VALID_TAIL.encode())
    assert load_spec(path).version == 1


def test_tab_in_indentation() -> None:
    issue = only_issue("version: 1\nhosts:\n\t- name: nas\n")
    assert (issue.line, issue.col) == (3, 1)
    assert "tab character" in issue.message
    assert "spaces" in issue.message


def test_syntax_error_has_its_position() -> None:
    issue = only_issue("version: 1\nhosts: [a, b\ntargets: []\n")
    assert issue.line == 3
    assert issue.message.startswith("YAML syntax error:")
    assert "flow sequence at line 2" in issue.message


def test_bad_indentation_mapping_value() -> None:
    issue = only_issue("version: 1\nhosts:\n  - name: a\n     roles: x\n")
    assert (issue.line, issue.col) == (4, 11)
    assert "mapping values are not allowed here" in issue.message


def test_control_character() -> None:
    issue = only_issue("version: 1\nx: \x07\n")
    assert (issue.line, issue.col) == (2, 4)
    assert "U+0007" in issue.message


def test_several_documents() -> None:
    issue = only_issue("version: 1\n---\nversion: 1\n")
    assert issue.line == 2
    assert "single document" in issue.message


def test_complex_key() -> None:
    issues = issues_of("version: 1\n" + VALID_TAIL + "? [a, b]\n: c\n")
    assert issues[0].message == "a mapping key must be a plain string"
    assert issues[0].line == 6


def test_bad_explicit_int() -> None:
    issue = only_issue("version: !!int one\n" + VALID_TAIL)
    assert issue.message == "'one' cannot be read as !!int"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    (issue,) = caught.value.issues
    assert "cannot read the file" in issue.message


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * (5 * 1024 * 1024) + b"\n")
    with pytest.raises(SpecError, match="at most"):
        load_spec(path)


def test_empty_section_and_wrong_container_type() -> None:
    issues = issues_of("version: 1\nhosts:\n"
                       "  - {name: nas, roles: target, interfaces: [eth0]}\ntargets:\n")
    assert [(i.line, i.col, i.field, i.message) for i in issues] == [
        (3, 12, "hosts[0].name", "host 'nas' appears nowhere: no target, disk or target_host "
                                 "refers to it"),
        (3, 24, "hosts[0].roles", "expected list, got string 'target'"),
        (4, 9, "targets", "expected list, got an empty value"),
    ]


@pytest.mark.parametrize("depth", [40, 5000])
def test_deep_nesting_is_refused(depth: int) -> None:
    issue = only_issue("version: 1\n" + VALID_TAIL + "a: " + "[" * depth + "]" * depth + "\n")
    assert issue.line == 6
    assert issue.message == f"nesting is deeper than {MAX_DEPTH} levels"
