"""Fakes for engine and apply tests: a recording runner and resources built from functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aoeprov.errors import CommandError
from aoeprov.host import Host
from aoeprov.reconciler.actions import ResourcePlan
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.runner import Result
from aoeprov.spec import load_spec
from aoeprov.spec.model import Spec

REPO = Path(__file__).resolve().parents[3]


def tutorial() -> Spec:
    return load_spec(REPO / "examples" / "tutorial.yaml")


@dataclass
class FakeRunner:
    """Records argv; ``effects`` maps argv[0] to a callable run instead (may raise)."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    effects: dict[str, Callable[[tuple[str, ...]], None]] = field(default_factory=dict)

    def run(self, argv: Sequence[str], *, stdin: str | bytes | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result:
        argv = tuple(argv)
        self.calls.append(argv)
        effect = self.effects.get(argv[0])
        if effect is not None:
            effect(argv)
        return Result(argv, 0, "", "")


def failing(times: int) -> Callable[[tuple[str, ...]], None]:
    """An effect that fails the first ``times`` calls (a run killed mid-way)."""
    count = {"n": 0}

    def effect(argv: tuple[str, ...]) -> None:
        count["n"] += 1
        if count["n"] <= times:
            raise CommandError(argv, 1, "", "simulated failure")
    return effect


@dataclass
class FakeResource:
    KIND: str
    planner: Callable[[PlanContext, Any, State], ResourcePlan]
    gatherer: Callable[[GatherContext], Any] = lambda ctx: None
    gathered: int = 0

    def gather(self, ctx: GatherContext) -> Any:
        self.gathered += 1
        return self.gatherer(ctx)

    def plan(self, ctx: PlanContext, facts: Any, state: State) -> ResourcePlan:
        return self.planner(ctx, facts, state)


def make_host(root: Path, runner: FakeRunner | None = None) -> Host:
    return Host(root=root, runner=runner or FakeRunner(), hostname="server1")
