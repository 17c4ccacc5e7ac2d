"""The export list of the built-in target, and its JSON file format.

``aoeprov target --config FILE`` serves the exports listed in FILE and re-reads
it on SIGHUP; the reconciler renders the file with ``render_config`` and signals
the target when it changes. The format (version 1)::

    {
      "version": 1,
      "exports": [
        {
          "name": "storage1",          # label used in logs and counters
          "shelf": 0,                  # 0..65534
          "slot": 1,                   # 0..254
          "path": "/dev/vg0/storage1", # file or block device
          "interfaces": ["eth0"],      # served on these interfaces only
          "read_only": false,
          "offset": 0,                 # sectors skipped at the start of path
          "length": null,              # sectors exported, null = to the end
          "allowed_macs": [],          # initial Mac Mask List, empty = everyone
          "write_mode": "sync",        # "sync" or "writeback"
          "buffer_count": 64,          # advertised in config replies, >= 2
          "direct": false              # O_DIRECT on the backing store (vblade -d)
        }
      ]
    }

Every key but ``shelf``, ``slot``, ``path`` and ``interfaces`` may be left out
and takes the default shown. ``shelf.slot`` must be unique in one file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aoeprov.aoe.wire import BROADCAST_SHELF, BROADCAST_SLOT, mac_to_bytes
from aoeprov.errors import ProtocolError, TargetError
from aoeprov.spec.model import DEFAULT_BUFFER_COUNT, ServerKind, Spec

CONFIG_VERSION = 1
WRITE_MODES = ("sync", "writeback")
MIN_BUFFER_COUNT = 2  # the Linux driver never sends a request with fewer


@dataclass(frozen=True)
class ExportConfig:
    """One export as the target serves it (sizes in 512-byte sectors)."""

    shelf: int
    slot: int
    path: str
    interfaces: tuple[str, ...]
    name: str = ""
    read_only: bool = False
    offset: int = 0
    length: int | None = None
    allowed_macs: tuple[str, ...] = ()
    write_mode: str = "sync"
    buffer_count: int = DEFAULT_BUFFER_COUNT
    direct: bool = False

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"

    @property
    def label(self) -> str:
        return self.name or self.aoe_name

    def validate(self) -> None:
        """Raise ``TargetError`` naming the export and the field that is wrong."""
        problems = []
        if not 0 <= self.shelf < BROADCAST_SHELF:
            problems.append(f"shelf {self.shelf} is not in 0..{BROADCAST_SHELF - 1}")
        if not 0 <= self.slot < BROADCAST_SLOT:
            problems.append(f"slot {self.slot} is not in 0..{BROADCAST_SLOT - 1}")
        if not self.path:
            problems.append("path is empty")
        if not self.interfaces:
            problems.append("no interfaces")
        if self.offset < 0:
            problems.append(f"offset {self.offset} is negative")
        if self.length is not None and self.length < 1:
            problems.append(f"length {self.length} is less than one sector")
        if self.write_mode not in WRITE_MODES:
            problems.append(f"write_mode {self.write_mode!r} is not one of {WRITE_MODES}")
        if self.buffer_count < MIN_BUFFER_COUNT or self.buffer_count > 0xFFFF:
            problems.append(f"buffer_count {self.buffer_count} is not in "
                            f"{MIN_BUFFER_COUNT}..65535")
        for mac in self.allowed_macs:
            try:
                mac_to_bytes(mac)
            except ProtocolError as exc:
                problems.append(str(exc))
        if problems:
            raise TargetError(f"export {self.label}: " + "; ".join(problems))


def check_unique(exports: Sequence[ExportConfig]) -> None:
    seen: dict[tuple[int, int], str] = {}
    for exp in exports:
        key = (exp.shelf, exp.slot)
        if key in seen:
            raise TargetError(f"exports {seen[key]} and {exp.label} both claim {exp.aoe_name}")
        seen[key] = exp.label


def render_config(exports: Sequence[ExportConfig]) -> str:
    """The JSON text of an export list (stable key order, ends with a newline)."""
    for exp in exports:
        exp.validate()
    check_unique(exports)
    items = []
    for exp in exports:
        item = asdict(exp)
        item["interfaces"] = list(exp.interfaces)
        item["allowed_macs"] = list(exp.allowed_macs)
        if not exp.direct:
            del item["direct"]  # files rendered before ``direct`` existed stay the same
        items.append(item)
    return json.dumps({"version": CONFIG_VERSION, "exports": items}, indent=2) + "\n"


def _field(item: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
           default: Any = ...) -> Any:
    if key not in item:
        if default is ...:
            raise TargetError(f"{where}: missing {key!r}")
        return default
    value = item[key]
    # bool is an int in Python; a shelf of `true` is a mistake, not 1
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise TargetError(f"{where}: {key!r} must be {kind}, got {value!r}")
    if not isinstance(value, kind):
        raise TargetError(f"{where}: {key!r} has the wrong type: {value!r}")
    return value


def parse_config(text: str) -> list[ExportConfig]:
    """Parse and validate the JSON export list; raises ``TargetError``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"target config is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != CONFIG_VERSION:
        raise TargetError(f"target config must be an object with \"version\": {CONFIG_VERSION}")
    items = doc.get("exports")
    if not isinstance(items, list):
        raise TargetError("target config: \"exports\" must be a list")
    known = set(ExportConfig.__dataclass_fields__)
    exports = []
    for i, item in enumerate(items):
        where = f"exports[{i}]"
        if not isinstance(item, dict):
            raise TargetError(f"{where}: must be an object")
        unknown = sorted(set(item) - known)
        if unknown:
            raise TargetError(f"{where}: unknown keys {unknown}")
        interfaces = _field(item, "interfaces", list, where)
        macs = _field(item, "allowed_macs", list, where, [])
        if not all(isinstance(x, str) for x in interfaces + macs):
            raise TargetError(f"{where}: interfaces and allowed_macs must be lists of strings")
        exp = ExportConfig(
            shelf=_field(item, "shelf", int, where), slot=_field(item, "slot", int, where),
            path=_field(item, "path", str, where), interfaces=tuple(interfaces),
            name=_field(item, "name", str, where, ""),
            read_only=_field(item, "read_only", bool, where, False),
            offset=_field(item, "offset", int, where, 0),
            length=_field(item, "length", (int, type(None)), where, None),
            allowed_macs=tuple(m.lower() for m in macs),
            write_mode=_field(item, "write_mode", str, where, "sync"),
            buffer_count=_field(item, "buffer_count", int, where,
                                DEFAULT_BUFFER_COUNT),
            direct=_field(item, "direct", bool, where, False))
        exp.validate()
        exports.append(exp)
    check_unique(exports)
    return exports


def exports_from_spec(spec: Spec, host: str) -> list[ExportConfig]:
    """The built-in-target exports ``host`` serves according to ``spec``.

    Exports that name ``server: vblade`` are left to vblade and not returned.
    """
    exports = []
    for exp in spec.exports_on(host):
        if exp.server != ServerKind.BUILTIN:
            continue
        backing = spec.target(exp.target).backing
        exports.append(ExportConfig(
            shelf=exp.shelf, slot=exp.slot, path=backing.device_path,
            interfaces=tuple(exp.interfaces), name=exp.name, read_only=exp.read_only,
            allowed_macs=tuple(exp.allowed_macs), write_mode=str(exp.write_mode),
            buffer_count=exp.buffer_count, direct=exp.direct))
    for item in exports:
        item.validate()
    check_unique(exports)
    return exports
