"""Host files as bytes: resolve under a root, read, replace atomically, split into lines.

aoeprov edits files it shares with people (``/etc/fstab``, ``/etc/modules``):
every line it does not manage must come back byte for byte, whatever it holds
(CRLF, a lone ``\\r``, ``\\f``, ``\\x1c``, U+2028, Latin-1). So content is bytes and
lines are split on ``\\n`` only; nothing here decodes text. A write goes through
a symlink to the file it names (the rename happens in the target's directory,
so the link stays a link) and keeps the old file's mode, owner and group.
Under ``--root`` links are followed as in a chroot (an absolute link starts at
the root) and one that leads out of the root is refused. Every ``OSError`` becomes
a ``HostFileError`` naming the file, the step, and what state the file is in.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path, PurePosixPath

from aoeprov.errors import HostFileError

MAX_LINKS = 40   # like the kernel's ELOOP limit
BACKUP_SUFFIX = ".aoeprov.bak"


def split_lines(data: bytes) -> list[bytes]:
    """Lines of ``data`` without their ``\\n``; split on ``\\n`` only (``\\r`` and the rest stay).

    A last line without a newline is a line; ``join_lines`` gives it one.
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def join_lines(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def resolve_under(root: Path, abs_path: str | PurePosixPath) -> Path:
    """Where ``abs_path`` really is under ``root``, symlinks followed as in a chroot.

    Every component is looked at: an absolute link target restarts at ``root``, a
    relative one continues from the link's directory, and ``..`` above ``root`` is
    refused, as is a chain of more than ``MAX_LINKS`` links. Components that do not
    exist (a file still to be created) are kept as they are.
    """
    path = PurePosixPath(abs_path)
    if not path.is_absolute():
        raise ValueError(f"host paths must be absolute: {abs_path}")
    pending = list(path.parts[1:])
    done: list[str] = []     # resolved components below root
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise HostFileError(f"{abs_path}: leads out of the root {root} (through `..`); "
                                    "aoeprov does not follow it")
            done.pop()
            continue
        here = root.joinpath(*done, part)
        try:
            is_link = stat.S_ISLNK(os.lstat(here).st_mode)
        except FileNotFoundError:
            is_link = False
        except OSError as exc:
            raise HostFileError(f"cannot follow {abs_path} under {root}: {here}: "
                                f"{exc.strerror}") from None
        if not is_link:
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise HostFileError(f"{abs_path}: more than {MAX_LINKS} symbolic links to follow")
        target = PurePosixPath(os.readlink(here))
        if target.is_absolute():
            done = []
        pending[:0] = [p for p in target.parts if p != "/"]
    return root.joinpath(*done)


def read_bytes(root: Path, abs_path: str) -> bytes | None:
    """Content of host file ``abs_path`` under ``root``; None when it does not exist."""
    real = resolve_under(root, abs_path)
    try:
        return real.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HostFileError(f"cannot read {_where(abs_path, root, real)}: {exc.strerror}") \
            from None


def _where(abs_path: str, root: Path, real: Path) -> str:
    """``/etc/fstab`` as the user knows it, plus where it really is when that differs."""
    return abs_path if str(real) == abs_path else f"{abs_path} ({real})"


def _fail(abs_path: str, where: str, doing: str, exc: OSError, existed: bool) -> HostFileError:
    state = "the old file is intact" if existed else "nothing was written"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (the filesystem is full)"
    elif exc.errno == errno.EROFS:
        reason += " (the filesystem is mounted read-only)"
    return HostFileError(f"cannot write {where}: {doing}: {reason}; {state}")


def write_bytes(root: Path, abs_path: str, data: bytes, *, mode: int | None = None,
                backup: bool = False) -> None:
    """Replace host file ``abs_path`` with ``data``: a crash leaves the old or the new file.

    Through a symlink, the file it names is replaced (temp file, fsync, rename in that
    file's directory, fsync of the directory). The old file's mode, owner and group are
    kept; ``mode`` (default 0644) applies only to a new file. ``backup`` first keeps the
    old content in ``<file>.aoeprov.bak`` next to it.
    """
    real = resolve_under(root, abs_path)
    where = _where(abs_path, root, real)
    try:
        old = os.stat(real)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise _fail(abs_path, where, "looking at the file", exc, True) from None
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise HostFileError(f"cannot write {where}: it is not a regular file; it was left alone")
    existed = old is not None
    if backup and old is not None:
        bak = real.with_name(real.name + BACKUP_SUFFIX)
        try:
            _replace(bak, real.read_bytes(), old)
        except OSError as exc:
            raise _fail(abs_path, where, f"reading it to keep a backup in {bak}", exc,
                        existed) from None
        except _Step as step:
            raise _fail(abs_path, where, f"keeping a backup in {bak}: {step.doing}", step.error,
                        existed) from None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(abs_path, where, f"creating the directory {real.parent}", exc, existed) \
            from None
    try:
        _replace(real, data, old, mode)
    except _Step as step:
        raise _fail(abs_path, where, step.doing, step.error, existed) from None
    try:
        dir_fd = os.open(real.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise HostFileError(f"wrote {where} but could not sync its directory {real.parent}: "
                            f"{exc.strerror}; after a crash the old file may come back") from None


class _Step(Exception):
    def __init__(self, doing: str, error: OSError) -> None:
        super().__init__(doing)
        self.doing = doing
        self.error = error


def _replace(path: Path, data: bytes, old: os.stat_result | None,
             mode: int | None = None) -> None:
    """Temp file next to ``path`` with ``data`` and ``old``'s metadata, renamed over it."""
    temp = f"a temporary file in {path.parent}"
    doing = f"creating {temp}"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _Step(doing, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            doing = f"writing {len(data)} bytes to {temp}"
            fh.write(data)
            fh.flush()
            doing = f"flushing {temp} to disk"
            os.fsync(fh.fileno())
        if old is not None:
            doing = f"giving {temp} the old file's owner and group"
            if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                os.chown(tmp, old.st_uid, old.st_gid)
            doing = f"giving {temp} the old file's mode"
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
        else:
            doing = f"setting the mode of {temp}"
            os.chmod(tmp, 0o644 if mode is None else mode)
        doing = f"renaming {temp} over {path}"
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _Step(doing, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(root: Path, abs_path: str) -> None:
    """Remove host file ``abs_path`` (the file itself when it is a symlink: only the link)."""
    parent = resolve_under(root, str(PurePosixPath(abs_path).parent))
    path = parent / PurePosixPath(abs_path).name
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise HostFileError(f"cannot remove {abs_path} ({path}): {exc.strerror}; "
                            "it is still there") from None


def make_directory(root: Path, abs_path: str, mode: int) -> None:
    real = resolve_under(root, abs_path)
    try:
        real.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise HostFileError(f"cannot create the directory {abs_path} ({real}): "
                            f"{exc.strerror}") from None


def atomic_write(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Replace aoeprov's own file ``path`` (a real path: journal, pid file) atomically."""
    payload = data.encode() if isinstance(data, str) else data
    write_bytes(Path("/"), str(path.resolve()), payload, mode=mode)
