"""One ``aoeprov pull`` run: fetch, check the commit, switch the spec, plan, apply.

The whole run holds the apply lock, so it never interleaves with another pull
or an ``aoeprov apply``. The fetched commit becomes the current spec only after
its spec validates and plans for this host (and, with ``require_signed``, its
signature checks out); otherwise it is refused and recorded, and the host is
planned and applied against the last good spec. A run killed at any point
leaves the mirror, the trees and ``current`` usable: each is replaced by a
rename, stale git locks are removed under the apply lock, and the apply itself
is safe to re-run (the reconciler's journal).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aoeprov.errors import AoeprovError, DestructiveActionBlocked
from aoeprov.host import Host
from aoeprov.metrics import write_textfile
from aoeprov.pull.git import CheckoutError, GitMirror, PullError
from aoeprov.pull.promfile import PROM_FILE, record_metrics
from aoeprov.pull.state import (
    APPLIED,
    CONVERGED,
    FAILED,
    PENDING,
    REFUSED,
    Failure,
    PullRecord,
    load_record,
    save_record,
)
from aoeprov.pull.trees import Trees
from aoeprov.reconciler.apply import Listener, apply, describe_blocked
from aoeprov.reconciler.engine import Plan, Reconciler
from aoeprov.reconciler.lock import LOCK_PATH, ApplyLock
from aoeprov.spec import load_spec

LOG = logging.getLogger(__name__)

STATE_DIR = "/var/lib/aoeprov/pull"
MODES = ("apply", "plan")


@dataclass(frozen=True)
class PullOptions:
    repo: str
    ref: str = "HEAD"
    spec: str = "aoeprov.yaml"            # path of the spec inside the repo
    host_name: str | None = None          # spec host to act as (default: the hostname)
    mode: str = "apply"
    require_signed: bool = False
    gnupg_home: Path | None = None        # keyring for verify-commit (default: GNUPGHOME)
    allow_destroy: bool = False
    state_dir: str = STATE_DIR            # host path (under --root)
    metrics_dir: str | None = None        # host path; None: no metrics file

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PullError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        spec = PurePosixPath(self.spec)
        if spec.is_absolute() or ".." in spec.parts or not spec.parts:
            raise PullError(f"--spec {self.spec!r}: must be a path inside the repo "
                            "(relative, without '..')")


def check_commit(mirror: GitMirror, trees: Trees, host: Host, opts: PullOptions,
                 commit: str) -> tuple[Reconciler, Plan]:
    """Check ``commit`` out and plan its spec for this host; raises on anything wrong."""
    if opts.require_signed:
        mirror.verify(commit)
    mirror.export_tree(commit, trees.tree(commit))
    spec_file = trees.tree(commit) / opts.spec
    if not spec_file.is_file():
        raise PullError(f"commit {commit[:12]} has no spec file {opts.spec}")
    engine = Reconciler(spec=load_spec(spec_file), host=host, host_name=opts.host_name,
                        allow_destroy=opts.allow_destroy)
    return engine, engine.plan()


def pull(host: Host, opts: PullOptions, *, listener: Listener | None = None,
         clock: Callable[[], float] = time.time) -> PullRecord:
    """One run; returns the record it saved (``result`` says how it ended)."""
    state_dir = host.path(opts.state_dir)
    with ApplyLock(host.path(LOCK_PATH)):
        state_dir.mkdir(parents=True, exist_ok=True)
        record = dataclasses.replace(
            load_record(state_dir / "state.json"), repo=opts.repo, ref=opts.ref,
            spec=opts.spec, host=opts.host_name or host.hostname, mode=opts.mode)
        record = _run(host, opts, record, state_dir, listener, clock)
        save_record(state_dir / "state.json", record)
    if opts.metrics_dir is not None:
        write_textfile(host.path(opts.metrics_dir) / PROM_FILE, record_metrics(record))
    return record


def _run(host: Host, opts: PullOptions, record: PullRecord, state_dir: Path,
         listener: Listener | None, clock: Callable[[], float]) -> PullRecord:
    mirror = GitMirror(state_dir / "mirror.git", host.runner, opts.gnupg_home)
    trees = Trees(state_dir)
    refused: str | None = None          # the result when the fetched commit is not taken
    checked: tuple[Reconciler, Plan] | None = None
    commit = ""
    step = "fetch"
    try:
        mirror.ensure()
        fetched = mirror.fetch(opts.repo, opts.ref)
        commit = fetched.commit
        record = dataclasses.replace(record, last_fetch=clock(), seen_commit=commit,
                                     seen_subject=fetched.subject)
        if commit != trees.current():
            step = "check"
            checked = check_commit(mirror, trees, host, opts, commit)
            trees.switch(commit)
            record = dataclasses.replace(record, good_commit=commit)
            LOG.info("commit %s (%s) is now the current spec", commit[:12], fetched.subject)
    except AoeprovError as exc:
        # the commit's fault (signature, spec, plan): refused; the fetch's or a checkout's: failed
        refused = REFUSED if step == "check" and not isinstance(exc, CheckoutError) else FAILED
        LOG.debug("%s: %s", refused, exc)
        record = dataclasses.replace(record, last_error=Failure(commit, str(exc), clock()))
    finally:
        good = trees.current()
        trees.prune({good} if good else set())
    if good is None:   # nothing good yet: nothing to converge on
        return record.finished(refused or FAILED, clock())
    try:
        result, pending = _converge(host, opts, trees.tree(good) / opts.spec, checked, listener)
    except AoeprovError as exc:
        LOG.debug("failed: %s", exc)
        record = dataclasses.replace(record, last_error=Failure(good, str(exc), clock()))
        return record.finished(FAILED, clock())
    if opts.mode == "apply":
        record = dataclasses.replace(record, applied_commit=good)
    return dataclasses.replace(record, pending=pending).finished(refused or result, clock())


def _converge(host: Host, opts: PullOptions, spec_file: Path,
              checked: tuple[Reconciler, Plan] | None,
              listener: Listener | None) -> tuple[str, int]:
    """Plan (and in apply mode apply) the good spec: (result, changes still pending)."""
    if checked is None:
        engine = Reconciler(spec=load_spec(spec_file), host=host, host_name=opts.host_name,
                            allow_destroy=opts.allow_destroy)
        plan = engine.plan()
    else:
        engine, plan = checked
    if not plan.actions:
        return CONVERGED, 0
    if opts.mode == "plan":
        return PENDING, len(plan.actions)
    if plan.blocked:        # apply would refuse the whole plan: a failure, said as apply says it
        raise DestructiveActionBlocked(describe_blocked(plan.blocked))
    if not plan.runnable:   # drift only: apply would leave it, so do not run it
        return CONVERGED, len(plan.actions)
    report = apply(engine, listener=listener, locked=True)
    return APPLIED if report.changed else CONVERGED, len(report.drift)
