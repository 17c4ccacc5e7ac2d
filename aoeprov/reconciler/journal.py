"""The journal of side effects an apply owes: ``/var/lib/aoeprov/pending.json``.

Before an action that makes a side effect owed (a unit or fstab write owes a
``daemon-reload``; a target config write owes a target reload), its keys are
written here atomically; after the action that performs the side effect ran,
its key is removed. A run killed in between leaves the key behind, and the next
run seeds ``State.pending`` with it so the planners plan that side effect again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from aoeprov.errors import ApplyError
from aoeprov.hostfile import atomic_write

LOG = logging.getLogger(__name__)

JOURNAL_PATH = "/var/lib/aoeprov/pending.json"
JOURNAL_VERSION = 1


def parse_journal(text: str) -> dict[str, float]:
    """Owed side effects -> when they became owed (epoch seconds)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApplyError(f"journal is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != JOURNAL_VERSION:
        raise ApplyError(f"journal has an unknown format: {text[:80]!r}")
    pending = data.get("pending", {})
    if not isinstance(pending, dict):
        raise ApplyError("journal: 'pending' is not an object")
    return {str(k): float(v) for k, v in pending.items()}


def render_journal(pending: dict[str, float]) -> str:
    return json.dumps({"version": JOURNAL_VERSION, "pending": dict(sorted(pending.items()))},
                      indent=2) + "\n"


class Journal:
    """The pending side effects of one root, kept on disk at every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._pending = parse_journal(path.read_text())
        except FileNotFoundError:
            self._pending = {}
        except ApplyError as exc:
            raise ApplyError(f"{path}: {exc}; it lists side effects an interrupted run owes "
                             "(daemon-reload, target reload): do them by hand, then remove "
                             "the file") from exc
        if self._pending:
            LOG.info("journal: completing side effects of an interrupted run: %s",
                     ", ".join(sorted(self._pending)))

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def add(self, keys: Iterable[str]) -> None:
        new = [k for k in keys if k not in self._pending]
        if new:
            now = time.time()
            self._pending.update(dict.fromkeys(new, now))
            self._save()

    def discard(self, key: str) -> None:
        if key in self._pending:
            del self._pending[key]
            self._save()

    def _save(self) -> None:
        atomic_write(self.path, render_journal(self._pending))
