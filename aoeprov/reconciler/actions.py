"""Plan actions: frozen data, executed by the apply loop.

A plan is a list of actions. Every action says what it acts on (``kind`` and
``target``), how (``op``: create, change, destroy, or a run/wait step), and a
one-line ``summary``. Commands are argv tuples, never shell strings. Dry-run,
human ``plan`` output and ``--json`` all print this same list.

Planning is data in, data out: a resource planner takes the spec and the facts
(``aoeprov.reconciler.state.State``, updated with the predicted effect of the
actions planned before it) and returns actions.

The apply loop (``aoeprov.reconciler.apply``) executes ``RunCommand``,
``WriteFile``, ``RemoveFile``, ``MakeDirectory`` and ``WaitForDevice`` itself; any
other subclass must define ``execute(self, host: Host) -> None``. ``Drift`` is
reported, never executed.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum


class Op(StrEnum):
    CREATE = "create"    # "+" something that did not exist
    CHANGE = "change"    # "~" something that exists and differs
    DESTROY = "destroy"  # "-" data or configuration goes away
    RUN = "run"          # "!" a side effect with no lasting object (reload, trigger)
    WAIT = "wait"        # "…" a barrier: wait for a device or a state

    @property
    def symbol(self) -> str:
        return {"create": "+", "change": "~", "destroy": "-", "run": "!", "wait": "…"}[self.value]


@dataclass(frozen=True)
class Action:
    """Base of every action. Subclasses add the payload (argv, file content...)."""

    kind: str                 # resource kind: "module", "lv", "partition", "fstab"...
    target: str               # what it acts on: "/dev/etherd/e0.1", "/etc/fstab"...
    op: Op
    summary: str              # one line a person reads in `plan`
    destructive: bool = False
    data_loss: str = ""       # for destructive actions: exactly what would be lost
    requires_allow: bool = False  # blocked unless spec `wipe` and --allow-destroy
    # blocked whatever the spec and the run allow, and why ("/storage is mounted: umount it
    # first"); apply refuses a plan holding one, like one that needs --allow-destroy
    blocked_by: str = ""
    # planned against a predicted device whose contents are not known yet (not discovered):
    # apply re-gathers facts and re-plans after the barrier that makes the device appear
    provisional: bool = False
    # side effects this action makes owed ("daemon-reload", "target-reload"): journaled before it
    # runs, so a run killed right after it still completes them next time (State.pending)
    owes: tuple[str, ...] = ()
    settles: str = ""         # the owed side effect this action performs: cleared after it ran

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": type(self).__name__,
            "kind": self.kind,
            "target": self.target,
            "op": self.op.value,
            "summary": self.summary,
            "destructive": self.destructive,
            "provisional": self.provisional,
        }
        if self.data_loss:
            out["data_loss"] = self.data_loss
        if self.requires_allow:
            out["requires_allow"] = True
        if self.blocked_by:
            out["blocked_by"] = self.blocked_by
        if self.owes:
            out["owes"] = list(self.owes)
        if self.settles:
            out["settles"] = self.settles
        return out


@dataclass(frozen=True)
class RunCommand(Action):
    argv: tuple[str, ...] = ()
    stdin: str | None = None
    ok_codes: tuple[int, ...] = (0,)

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["argv"] = list(self.argv)
        if self.stdin is not None:
            out["stdin"] = self.stdin
        return out


def file_json(out: dict[str, object], key: str, data: bytes | None) -> None:
    """``data`` as JSON text under ``key``; bytes that are not UTF-8 are shown as ``\\xNN``
    there and given exactly, base64-encoded, under ``<key>_base64``."""
    if data is None:
        out[key] = None
        return
    try:
        out[key] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[key] = data.decode("utf-8", "backslashreplace")
        out[f"{key}_base64"] = base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class WriteFile(Action):
    """Write ``content`` atomically to host path ``target`` (under --root).

    Content is bytes: lines aoeprov does not manage come back byte for byte.
    ``mode`` applies to a new file; an existing one keeps its mode, owner and group.
    """

    content: bytes = b""
    before: bytes | None = None   # current content, for the unified diff; None = absent
    mode: int = 0o644
    backup: bool = False

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        file_json(out, "content", self.content)
        file_json(out, "before", self.before)
        out["mode"] = f"{self.mode:04o}"   # "0644", as chmod and ls write it
        return out


@dataclass(frozen=True)
class MakeDirectory(Action):
    mode: int = 0o755


@dataclass(frozen=True)
class WaitForDevice(Action):
    """Barrier: wait until block device ``target`` exists (and, for AoE, is up)."""

    timeout: float = 30.0
    aoe_name: str | None = None  # "e0.1": also require sysfs state "up"
    # why nothing can make the device appear here (a --root sandbox has no discovery):
    # apply fails at this wait at once with this text instead of waiting out the timeout
    unavailable: str = ""

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["timeout"] = self.timeout
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


@dataclass(frozen=True)
class RemoveFile(Action):
    """Remove host path ``target`` (under --root): a configuration file aoeprov owns."""

    before: bytes | None = None

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        file_json(out, "before", self.before)
        return out


@dataclass(frozen=True)
class Drift(Action):
    """The host differs from the spec in a way apply does not change by itself.

    Example: a loaded module whose parameters differ ("reload required"), or another
    filesystem mounted where the spec wants one. Shown by plan, reported by apply,
    never executed.
    """

    remedy: str = ""   # what a person would do about it
    prune: bool = False   # a removal waiting for --prune ("-" line), not a difference


    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["remedy"] = self.remedy
        if self.prune:
            out["prune"] = True
        return out


@dataclass(frozen=True)
class Noop:
    """A resource that is already as the spec says; ``reason`` says why (shown with -v, in JSON)."""

    kind: str
    target: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "target": self.target, "reason": self.reason}


@dataclass(frozen=True)
class ResourcePlan:
    """What one resource planner returns: actions to take and the no-ops it checked."""

    actions: tuple[Action, ...] = ()
    noops: tuple[Noop, ...] = field(default_factory=tuple)
