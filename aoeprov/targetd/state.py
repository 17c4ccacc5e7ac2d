"""What AoE peers set on an export, kept on disk so it survives a restart.

Initiators change three things on a served export: the config string (config
set / force set), the Mac Mask List (mask edits) and the reserve list. A target
restart (upgrade, reboot, crash, ``kill -9``) must not silently drop a
reservation or a mask an initiator relies on, so every change is written, before
the reply that confirms it leaves, to one small JSON file per export::

    <state dir>/e<shelf>.<slot>.json   (default state dir: /var/lib/aoeprov/target)
    {"version": 1, "path": "/srv/disk.img", "config": "owner=host1",
     "masks": ["02:00:00:00:00:0a"], "reserve": [], "allowed_macs": []}

Files are replaced atomically (temp file, fsync, rename, fsync of the
directory), read at start and again on SIGHUP (so a file restored by hand takes
effect without a restart).

Rules when a file is read back:

- It belongs to the export's shelf.slot *and* backing path: a file written for
  another path (the address now serves another disk) is ignored, and replaced
  at the next change.
- The configuration's ``allowed_macs`` wins when it changed: the file records
  the ``allowed_macs`` the mask list was last edited under; when the
  configuration (spec or export list) now says something else, the mask list is
  reset to the configuration and the runtime edits are dropped (logged). While
  the configuration keeps the same ``allowed_macs``, runtime edits stand.
- A file that cannot be read or parsed is reported, renamed aside
  (``e4.1.json.corrupt-<time>``) for the operator to look at, and the export
  starts from its configuration: a bad state file is never a reason not to serve.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from aoeprov.aoe.wire import MAX_CONFIG_STRING, mac_to_bytes, mac_to_str
from aoeprov.errors import HostFileError, ProtocolError
from aoeprov.hostfile import atomic_write
from aoeprov.targetd.export import MAX_MASKS, Export

LOG = logging.getLogger(__name__)

STATE_VERSION = 1
DEFAULT_STATE_DIR = Path("/var/lib/aoeprov/target")


class StateFileError(ValueError):
    """A state file that cannot be used (reason in the message)."""


@dataclass(frozen=True)
class ExportState:
    """The peer-set state of one export, as stored."""

    path: str
    config_string: bytes = b""
    masks: tuple[bytes, ...] = ()
    reserve: tuple[bytes, ...] = ()
    allowed_macs: tuple[str, ...] = ()  # the configuration's, when ``masks`` was saved

    @classmethod
    def of(cls, exp: Export) -> ExportState:
        return cls(exp.config.path, exp.config_string, tuple(exp.masks), tuple(exp.reserve),
                   exp.config.allowed_macs)

    def to_json(self) -> dict[str, object]:
        # latin-1 maps each byte to one code point: ASCII strings stay readable
        return {"version": STATE_VERSION, "path": self.path,
                "config": self.config_string.decode("latin-1"),
                "masks": [mac_to_str(m) for m in self.masks],
                "reserve": [mac_to_str(m) for m in self.reserve],
                "allowed_macs": list(self.allowed_macs)}

    @classmethod
    def from_json(cls, doc: object) -> ExportState:
        """Parse a decoded state file; ``StateFileError`` says what is wrong."""
        if not isinstance(doc, dict):
            raise StateFileError("not a JSON object")
        if doc.get("version") != STATE_VERSION:
            raise StateFileError(f"\"version\" is {doc.get('version')!r}, not {STATE_VERSION}")
        path, config = doc.get("path"), doc.get("config")
        if not isinstance(path, str) or not isinstance(config, str):
            raise StateFileError("\"path\" and \"config\" must be strings")
        try:
            config_string = config.encode("latin-1")
        except UnicodeEncodeError:
            raise StateFileError("\"config\" holds characters that are not bytes") from None
        if len(config_string) > MAX_CONFIG_STRING:
            raise StateFileError(f"\"config\" is longer than {MAX_CONFIG_STRING} bytes")
        lists = []
        for key in ("masks", "reserve", "allowed_macs"):
            value = doc.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise StateFileError(f"{key!r} must be a list of MAC address strings")
            try:
                lists.append(tuple(mac_to_bytes(v) for v in value))
            except ProtocolError as exc:
                raise StateFileError(f"{key!r}: {exc}") from None
        masks, reserve, allowed = lists
        if len(masks) > MAX_MASKS:
            raise StateFileError(f"\"masks\" holds more than {MAX_MASKS} MACs")
        return cls(path, config_string, masks, reserve, tuple(mac_to_str(m) for m in allowed))


class StateStore:
    """The state files of a target's exports in ``directory`` (None: keep nothing)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.errors = 0  # state files that could not be written (each logged)

    def file(self, exp: Export) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{exp.config.aoe_name}.json"

    def save(self, exp: Export) -> None:
        """Write ``exp``'s state; a failure is logged and counted, serving goes on."""
        path = self.file(exp)
        if path is None:
            return
        text = json.dumps(ExportState.of(exp).to_json(), indent=2) + "\n"
        try:
            atomic_write(path, text)
        except (HostFileError, OSError) as exc:
            self.errors += 1
            LOG.error("export %s: cannot save its state in %s: %s (the change holds until "
                      "the target restarts)", exp.label, path, exc)

    def read(self, exp: Export) -> ExportState | None:
        """The stored state of ``exp``, None when there is none (or none usable)."""
        path = self.file(exp)
        if path is None:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._set_aside(exp, path, str(exc))
            return None
        try:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StateFileError(f"not JSON: {exc}") from None
            return ExportState.from_json(doc)
        except StateFileError as exc:
            self._set_aside(exp, path, str(exc))
            return None

    def _set_aside(self, exp: Export, path: Path, reason: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(path, aside)
        except OSError as exc:
            LOG.error("export %s: state file %s is unusable (%s) and cannot be moved aside "
                      "(%s); serving from the configuration", exp.label, path, reason,
                      exc.strerror or exc)
            return
        LOG.error("export %s: state file %s is unusable (%s): moved to %s; serving from the "
                  "configuration", exp.label, path, reason, aside.name)

    def restore(self, exp: Export) -> bool:
        """Apply the stored state to ``exp`` (see the module's rules); True if it changed."""
        state = self.read(exp)
        if state is None:
            return False
        if state.path != exp.config.path:
            LOG.info("export %s: ignoring the state saved for %s (it now serves %s)",
                     exp.label, state.path, exp.config.path)
            return False
        before = ExportState.of(exp)
        exp.config_string = state.config_string
        exp.reserve = list(state.reserve)
        if state.allowed_macs == exp.config.allowed_macs:
            exp.masks = list(state.masks)
        elif list(state.masks) != [mac_to_bytes(m) for m in exp.config.allowed_macs]:
            LOG.warning("export %s: allowed_macs changed in the configuration (%s, was %s): "
                        "its Mac Mask List is reset to it, dropping the runtime edits",
                        exp.label, ",".join(exp.config.allowed_macs) or "everyone",
                        ",".join(state.allowed_macs) or "everyone")
        if state.allowed_macs != exp.config.allowed_macs:
            self.save(exp)  # record the configuration the mask list now follows
        if ExportState.of(exp) == before:
            return False
        LOG.info("export %s: restored config string %r, %d masks, %d reserved MACs",
                 exp.label, exp.config_string.decode("latin-1"), len(exp.masks),
                 len(exp.reserve))
        return True
