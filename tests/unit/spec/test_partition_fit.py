"""Partition layouts against the size of the export behind the disk, at the edges."""

from __future__ import annotations

import pytest

from aoeprov.errors import SpecError
from aoeprov.spec import load_spec_text

TEMPLATE = """\
version: 1
hosts:
  - {{name: nas, roles: [target], interfaces: [eth0]}}
  - {{name: web, roles: [initiator], interfaces: [eth0]}}
targets:
  - {{name: data, host: nas, {backing}}}
exports:
  - {{name: data, target: data, shelf: 0, slot: 1, interfaces: [eth0]}}
disks:
  - {{name: e0.1, host: web, shelf: 0, slot: 1, table: {table}}}
partitions:
{partitions}
"""


def spec_text(table: str, sizes: list[str], backing: str = "lvm: {vg: v, lv: l, size: 1G}") -> str:
    label = ", label: p{n}" if table == "gpt" else ""
    parts = "\n".join(
        f"  - {{name: p{n}, disk: e0.1, number: {n}, size: {size}{label.format(n=n)}}}"
        for n, size in enumerate(sizes, start=1))
    return TEMPLATE.format(table=table, partitions=parts, backing=backing)


@pytest.mark.parametrize(("table", "sizes"), [
    ("dos", ["1023M"]),                 # 1M reserved + 1023M = exactly 1G
    ("dos", ["511M", "rest"]),
    ("dos", ["1022M", "rest"]),         # the rest gets exactly 1M
    ("gpt", ["1022M"]),                 # 1M + 1022M + 33 sectors < 1G
    ("gpt", ["100M", "200M", "rest"]),
    ("dos", [str(1023 * 1024 * 1024)]),  # bytes
])
def test_fits(table: str, sizes: list[str]) -> None:
    load_spec_text(spec_text(table, sizes), "fit.yaml")


@pytest.mark.parametrize(("table", "sizes", "bad", "needs"), [
    ("dos", ["1024M"], 1, "1025M"),
    ("dos", [str(1023 * 1024 * 1024 + 1)], 1, "1025M"),  # rounded up to whole MiB
    ("dos", ["1023M", "rest"], 2, "1025M"),              # no room left for the rest
    ("gpt", ["1023M"], 1, "1G"),                          # the backup GPT does not fit
    ("gpt", ["1022M", "rest"], 2, "1G"),
    ("dos", ["500M", "500M", "100M"], 3, "1101M"),
])
def test_does_not_fit(table: str, sizes: list[str], bad: int, needs: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(spec_text(table, sizes), "fit.yaml")
    (issue,) = caught.value.issues
    assert (issue.line, issue.field) == (11 + bad, f"partitions[{bad - 1}].size")
    assert issue.message.startswith(f"partition {bad} does not fit on disk 'e0.1'")
    assert f"needs {needs} but target 'data' is 1G" in issue.message


def test_unknown_size_is_not_checked() -> None:
    text = spec_text("dos", ["100T"], backing="device: {path: /dev/sdb}")
    assert load_spec_text(text, "fit.yaml").partitions[0].size == 100 * 1024**4


def test_device_size_is_used_when_given() -> None:
    with pytest.raises(SpecError, match="target 'data' is 10G"):
        load_spec_text(spec_text("gpt", ["10G"], backing="device: {path: /dev/sdb, size: 10G}"),
                       "fit.yaml")
