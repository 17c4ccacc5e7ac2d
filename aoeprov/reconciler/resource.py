"""The contract every resource kind implements (one module per kind in ``aoeprov.resources``).

A resource module defines:

- ``KIND: str`` — the name used in plans and JSON ("module", "lv", "partition"...).
- ``gather(ctx: GatherContext) -> Facts`` — runs commands / reads files through
  ``ctx.host`` and turns their output into a frozen facts record with pure
  ``parse_*`` functions (tested from captured output, never touching the machine).
- ``plan(ctx: PlanContext, facts: Facts, state: State) -> ResourcePlan`` — pure:
  facts in, actions out (plus the no-op reasons), recording predicted effects in
  ``state``. Never runs commands.

The engine calls ``gather`` for every kind, seeds ``State`` and then calls
``plan`` in ``aoeprov.reconciler.engine.RESOURCE_ORDER``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aoeprov.host import Host
from aoeprov.reconciler.actions import ResourcePlan
from aoeprov.reconciler.state import State
from aoeprov.spec.model import HostSpec, Spec


@dataclass(frozen=True)
class GatherContext:
    host: Host
    spec: Spec
    me: HostSpec


@dataclass(frozen=True)
class PlanContext:
    spec: Spec
    me: HostSpec
    allow_destroy: bool = False
    sandboxed: bool = False   # --root given: plan files only, leave live kernel state alone


class ResourceModule(Protocol):
    KIND: str

    def gather(self, ctx: GatherContext) -> object: ...

    def plan(self, ctx: PlanContext, facts: object, state: State) -> ResourcePlan: ...
