"""The pull agent's record, ``state.json``: what the last run saw, applied and decided.

Written atomically at the end of every run (and read by ``aoeprov pull --status``),
so a killed run leaves the record of the run before it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aoeprov.hostfile import atomic_write
from aoeprov.pull.git import PullError

STATE_VERSION = 1

# What a run ended with.
APPLIED = "applied"      # changes were applied; the host is as the good spec says
CONVERGED = "converged"  # nothing to do
PENDING = "pending"      # plan mode: changes are pending (drift)
REFUSED = "refused"      # the fetched commit was refused; the host keeps the last good spec
FAILED = "failed"        # fetch or apply failed
RESULTS = (APPLIED, CONVERGED, PENDING, REFUSED, FAILED)


@dataclass(frozen=True)
class Failure:
    commit: str
    message: str
    time: float


@dataclass(frozen=True)
class PullRecord:
    repo: str = ""
    ref: str = ""
    spec: str = ""
    host: str = ""
    mode: str = ""
    result: str = ""
    last_run: float = 0.0          # epoch seconds of the last run's end
    last_fetch: float = 0.0        # ... of the last successful fetch
    last_success: float = 0.0      # ... of the last run that was not refused or failed
    seen_commit: str = ""          # the commit the ref pointed at on the last fetch
    seen_subject: str = ""
    good_commit: str = ""          # the last commit that validated and planned: `current`
    applied_commit: str = ""       # the commit the host last converged on (apply mode)
    pending: int = 0               # changes pending after the run (drift, in plan mode)
    last_error: Failure | None = None
    runs: dict[str, int] = field(default_factory=dict)   # result -> count, since installed

    def finished(self, result: str, now: float | None = None) -> PullRecord:
        now = time.time() if now is None else now
        runs = {**self.runs, result: self.runs.get(result, 0) + 1}
        ok = result not in (REFUSED, FAILED)
        return replace(self, result=result, last_run=now, runs=runs,
                       last_success=now if ok else self.last_success)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}


def parse_record(text: str, source: str) -> PullRecord:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PullError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise PullError(f"{source}: unknown format (version {data.get('version')!r})"
                        if isinstance(data, dict) else f"{source}: not an object")
    known = {f.name for f in fields(PullRecord)}
    values = {k: v for k, v in data.items() if k in known}
    err = values.get("last_error")
    values["last_error"] = Failure(**err) if isinstance(err, dict) else None
    return PullRecord(**values)


def load_record(path: Path) -> PullRecord:
    try:
        return parse_record(path.read_text(), str(path))
    except FileNotFoundError:
        return PullRecord()


def save_record(path: Path, record: PullRecord) -> None:
    atomic_write(path, json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n")
