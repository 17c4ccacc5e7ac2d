"""The single error tree of aoeprov.

The CLI catches ``AoeprovError`` alone and maps it to an exit code; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AoeprovError(Exception):
    """Base of every error aoeprov raises on purpose."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class SpecIssue:
    """One problem in a spec file, with the position of the node it concerns."""

    file: str
    line: int
    col: int
    field: str
    message: str

    def __str__(self) -> str:
        where = self.field or "<document>"
        return f"{self.file}:{self.line}:{self.col}: {where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "message": self.message,
        }


class SpecError(AoeprovError, ValueError):
    """A spec file is invalid; carries every issue found, sorted by position."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class CommandError(AoeprovError):
    """An external command failed or could not be run."""

    def __init__(self, argv: Sequence[str], rc: int | None, stdout: str = "", stderr: str = "",
                 reason: str = "") -> None:
        self.argv = tuple(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        detail = reason or (stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {rc}")
        super().__init__(f"command {' '.join(self.argv)!r} failed: {detail}")


class CommandNotFound(CommandError):
    """The program is not installed on this host."""

    def __init__(self, argv: Sequence[str]) -> None:
        super().__init__(argv, None, reason=f"{argv[0]} is not installed")


class HostError(AoeprovError):
    """The host cannot do what the spec needs (no AoE in the kernel, missing tool...)."""


class HostFileError(HostError):
    """A host file could not be read or written; the message names the file, the step, and
    whether the old file is intact."""


class PlanError(AoeprovError):
    """The desired state cannot be planned from the observed state."""


class DestructiveActionBlocked(PlanError):
    """A plan needs to destroy data and the spec or the run did not allow it."""


class ApplyError(AoeprovError):
    """An action failed while applying a plan."""


class LockError(AoeprovError):
    """Another aoeprov run holds the lock."""


class ProtocolError(AoeprovError, ValueError):
    """A malformed or unexpected AoE frame."""


class AtaError(ProtocolError):
    """An AoE target completed an ATA command with an error status (ERR, DF...)."""

    def __init__(self, message: str, status: int, error: int) -> None:
        self.status = status
        self.error = error
        super().__init__(f"{message}: ATA status 0x{status:02x}, error 0x{error:02x}")


class AoeErrorReply(ProtocolError):
    """An AoE target answered with the error flag set (bad argument, reserved...)."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(f"{message}: AoE error {code}")


class TargetError(AoeprovError):
    """The built-in target cannot serve (bad export, interface missing...)."""


class DeviceTimeout(AoeprovError, TimeoutError):
    """A device did not appear, or an AoE peer did not answer, before its deadline."""


class LabError(AoeprovError):
    """The lab (qemu VMs) failed; the message names the VM and the step."""
