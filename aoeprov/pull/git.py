"""The repo side of ``aoeprov pull``: a private bare mirror driven by the ``git`` command.

Every git command goes through the host's runner as an argv tuple. Fetching uses
whatever URL git takes (a path, ``file://``, ``ssh://``, ``https://``). The mirror
is only ever touched while ``aoeprov pull`` holds the apply lock, so a ``*.lock``
file found in it was left by a killed git and is removed before the next command.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aoeprov.errors import AoeprovError, CommandError
from aoeprov.runner import Runner

LOG = logging.getLogger(__name__)

FETCHED_REF = "refs/aoeprov/fetched"


class PullError(AoeprovError):
    """A pull step failed: fetch, signature, checkout or the spec in the commit."""


class CheckoutError(PullError):
    """The commit could not be written out (disk full, permissions): not the commit's fault."""


@dataclass(frozen=True)
class Fetched:
    commit: str
    subject: str


def _detail(exc: CommandError) -> str:
    text = (exc.stderr or exc.stdout).strip()
    return text.splitlines()[-1] if text else str(exc)


class GitMirror:
    """A bare repository under the state directory that REPO is fetched into."""

    def __init__(self, path: Path, runner: Runner, gnupg_home: Path | None = None) -> None:
        self.path = path
        self.runner = runner
        self.gnupg_home = gnupg_home

    def _git(self, *args: str, timeout: float | None = 600.0) -> str:
        # GNUPGHOME only matters to verify-commit; `env` keeps it an argv, no shell
        env = ("env", f"GNUPGHOME={self.gnupg_home}") if self.gnupg_home else ()
        argv = (*env, "git", "--git-dir", str(self.path), *args)
        return self.runner.run(argv, timeout=timeout).stdout

    def ensure(self) -> None:
        """Create the mirror if missing (initialized aside, then renamed: never half made)."""
        if (self.path / "HEAD").exists():
            self._remove_stale_locks()
            return
        if self.path.exists():   # not a repository: a crash before the rename cannot leave this
            raise PullError(f"{self.path} exists but is not a git repository; remove it")
        tmp = self.path.with_name(f".{self.path.name}.new")
        shutil.rmtree(tmp, ignore_errors=True)
        self.runner.run(("git", "init", "--quiet", "--bare", str(tmp)))
        os.replace(tmp, self.path)

    def _remove_stale_locks(self) -> None:
        for lock in self.path.rglob("*.lock"):
            if lock.is_file():
                LOG.warning("removing %s left by an interrupted git", lock)
                lock.unlink()

    def fetch(self, repo: str, ref: str) -> Fetched:
        """Fetch ``ref`` (a branch, tag or HEAD) of ``repo``; the commit it points at."""
        try:
            self._git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--force",
                      "--", repo, f"+{ref}:{FETCHED_REF}")
        except CommandError as exc:
            raise PullError(f"git fetch {repo} {ref} failed: {_detail(exc)}") from exc
        try:
            out = self._git("log", "-1", "--format=%H%n%s", f"{FETCHED_REF}^{{commit}}", "--")
        except CommandError as exc:
            raise PullError(f"{repo} {ref} does not name a commit: {_detail(exc)}") from exc
        commit, _, subject = out.partition("\n")
        return Fetched(commit.strip(), subject.strip())

    def verify(self, commit: str) -> None:
        """``git verify-commit``: raises unless ``commit`` has a good signature of a known key."""
        try:
            self._git("verify-commit", "--raw", commit)
        except CommandError as exc:
            raise PullError(f"commit {commit[:12]} refused: "
                            f"{signature_problem(exc.stderr)}") from exc

    def export_tree(self, commit: str, dest: Path) -> None:
        """Write the tree of ``commit`` into the new directory ``dest``: extracted aside,
        then renamed, so ``dest`` exists only when it is complete."""
        if dest.is_dir():
            return
        tmp = dest.with_name(f".{dest.name}.new")
        archive = dest.with_name(f".{dest.name}.tar")
        shutil.rmtree(tmp, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._git("archive", "--format=tar", f"--output={archive}", commit)
            with tarfile.open(archive) as tar:
                # checked by hand: Debian 12's Python 3.11.2 predates tarfile's filters
                tar.extractall(tmp, members=safe_members(tar, commit))
        except CommandError as exc:
            raise CheckoutError(f"cannot check out {commit[:12]}: {_detail(exc)}") from exc
        except (tarfile.TarError, OSError) as exc:
            raise CheckoutError(f"cannot check out {commit[:12]}: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)
        tmp.mkdir(exist_ok=True)   # an empty tree archives to nothing
        os.replace(tmp, dest)


def signature_problem(status: str) -> str:
    """Why ``git verify-commit --raw`` failed, from gpg's status lines (pure)."""
    words = [line.split()[1:] for line in status.splitlines()
             if line.startswith("[GNUPG:] ") and len(line.split()) > 1]
    for w in words:
        if w[0] == "BADSIG":
            return f"bad signature (key {w[1]}): the commit was altered after signing"
        if w[0] == "NO_PUBKEY":
            return f"signed by key {w[1]}, which is not in the trusted keyring"
        if w[0] in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            return f"signature by an expired or revoked key ({w[0]} {w[1]})"
    if not status.strip():
        return "the commit is not signed"
    return f"signature check failed: {status.strip().splitlines()[-1]}"


def safe_members(tar: tarfile.TarFile, commit: str) -> list[tarfile.TarInfo]:
    """Members of a ``git archive``: files, directories and symlinks that stay in the tree
    (anything else is the commit's fault: a ``PullError``, so the commit is refused)."""
    members = tar.getmembers()
    for m in members:
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts:
            raise PullError(f"commit {commit[:12]}: path {m.name!r} leaves the tree")
        if not (m.isfile() or m.isdir() or m.issym()) and m.type != tarfile.XGLTYPE:
            raise PullError(f"commit {commit[:12]}: {m.name!r} is not a file, directory "
                                "or symlink")
        if m.issym():
            target = os.path.normpath(path.parent / m.linkname)
            if PurePosixPath(m.linkname).is_absolute() or target.startswith(".."):
                raise PullError(f"commit {commit[:12]}: symlink {m.name!r} -> "
                                    f"{m.linkname!r} points out of the tree")
    return [m for m in members if m.type != tarfile.XGLTYPE]
