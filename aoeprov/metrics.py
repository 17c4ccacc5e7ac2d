"""Prometheus text exposition format, written for node_exporter's textfile collector.

Debian's ``prometheus-node-exporter`` reads ``/var/lib/prometheus/node-exporter/*.prom``.
A file is replaced atomically (temp file + rename, the temp name does not end in
``.prom``), so the collector never reads half a file. Rendering is a pure function
of frozen records, so tests check it with a real parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.hostfile import atomic_write

DEFAULT_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
TYPES = ("gauge", "counter")


@dataclass(frozen=True)
class Sample:
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    type: str = "gauge"
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"metric {self.name}: type {self.type!r} is not one of {TYPES}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")


def metric(name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None,
           type_: str = "gauge") -> Metric:
    """A metric with one sample."""
    return Metric(name, help_text, type_, (Sample(value, tuple((labels or {}).items())),))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
        lines.append(f"# TYPE {m.name} {m.type}")
        for s in m.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels)
            lines.append(f"{m.name}{{{labels}}} {_number(s.value)}" if labels
                         else f"{m.name} {_number(s.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def write_textfile(path: Path, metrics: Iterable[Metric]) -> None:
    """Replace ``path`` (``NAME.prom``) atomically with the rendered metrics."""
    if path.suffix != ".prom":
        raise ValueError(f"{path}: node_exporter's textfile collector only reads *.prom")
    atomic_write(path, render(metrics))
