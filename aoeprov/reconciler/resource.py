"""The contract every resource kind implements (one module per kind in ``aoeprov.resources``).

A resource module defines:

- ``KIND: str`` — the name used in plans and JSON ("module", "lv", "partition"...).
- ``gather(ctx: GatherContext) -> Facts`` — runs commands / reads files through
  ``ctx.host`` and turns their output into a frozen facts record with pure
  ``parse_*`` functions (tested from captured output, never touching the machine).
- ``plan(ctx: PlanContext, facts: Facts, state: State) -> ResourcePlan`` — pure:
  facts in, actions out (plus the no-op reasons), recording predicted effects in
  ``state``. Never runs commands.

Facts two kinds need are gathered once per round by the reconciler and handed
over in the context: a module that plans on the host's block devices sets
``USES_DISKS = True`` and reads ``ctx.disks`` (``resources._blockdev.gather_disks``:
each disk's size, table, signatures and partitions, read once for all such kinds).

The reconciler (``aoeprov.reconciler.engine.Reconciler``) calls ``gather`` for
every selected kind, then ``plan`` in ``aoeprov.reconciler.kinds.RESOURCE_ORDER``
with one ``State`` threaded through. The facts type is the return annotation of
``gather``; plan-case tests (``tests/plan/<kind>/*.yaml``) build it from YAML
with ``aoeprov.reconciler.data.from_data`` (or the type's own ``from_dict``
classmethod when it has one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aoeprov.host import Host
from aoeprov.reconciler.actions import Action, Drift, Op, ResourcePlan
from aoeprov.reconciler.state import State
from aoeprov.spec.model import HostSpec, Spec

if TYPE_CHECKING:
    from aoeprov.resources._blockdev import DiskFacts


@dataclass(frozen=True)
class GatherContext:
    host: Host
    spec: Spec
    me: HostSpec
    # --device NAME=PATH: spec disk (by disk name or eX.Y) -> local block device or image file
    device_map: Mapping[str, str] = field(default_factory=dict)
    # disk name -> its block-device facts, gathered once per round for USES_DISKS modules
    disks: Mapping[str, DiskFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanContext:
    spec: Spec
    me: HostSpec
    allow_destroy: bool = False
    sandboxed: bool = False   # --root given: plan files only, leave live kernel state alone
    device_map: Mapping[str, str] = field(default_factory=dict)  # as GatherContext.device_map
    # systemd is PID 1 on the real system and no --root: units may be reloaded/started live
    systemd: bool = False
    # --prune: carry out removals (what aoeprov made that left the spec); otherwise they are
    # shown as pending drift
    prune: bool = False


def removal(ctx: PlanContext, action: Action) -> Action:
    """``action`` undoes something aoeprov made that the spec no longer lists (an fstab line, a
    mount, an export, a unit): carried out only with ``--prune``, otherwise shown as pending
    drift. Data (LVs, image files, filesystems) is never what a removal deletes."""
    return action if ctx.prune else pending_removal(action.kind, action.target, action.summary)


def pending_removal(kind: str, target: str, summary: str) -> Drift:
    """The ``-`` line of a removal a run without ``--prune`` leaves pending."""
    return Drift(kind=kind, target=target, op=Op.DESTROY, summary=summary,
                 remedy="a run with --prune carries it out (data is always kept)",
                 prune=True)


class ResourceModule(Protocol):
    """What the reconciler calls on a resource module (or on a test's stand-in for one)."""

    KIND: str

    def gather(self, ctx: GatherContext) -> object: ...

    def plan(self, ctx: PlanContext, facts: object, state: State) -> ResourcePlan: ...
