"""The reconciler: pick the host, gather facts for every resource, plan them in order.

Resources are modules of ``aoeprov.resources`` imported lazily in
``RESOURCE_ORDER`` (a missing or broken module is a clear error naming it, and
``--skip``/``--only`` leave modules that are not selected unimported). Facts
several kinds need (the host's disks) are gathered once per round here and
handed over in the ``GatherContext``. Planning threads one ``State`` through the
planners, so each one plans against the future state left by the ones before it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar, cast

from aoeprov.errors import AoeprovError, HostError, PlanError
from aoeprov.host import Host
from aoeprov.reconciler.actions import Action, Drift, Noop
from aoeprov.reconciler.kinds import RESOURCE_MODULES, RESOURCE_ORDER, parse_kinds, select_kinds
from aoeprov.reconciler.resource import GatherContext, PlanContext, ResourceModule
from aoeprov.reconciler.state import State
from aoeprov.reconciler.systemd import DAEMON_RELOAD, place_daemon_reload, systemd_running
from aoeprov.spec.model import HostSpec, Spec

LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = [
    "RESOURCE_MODULES",
    "RESOURCE_ORDER",
    "Plan",
    "Reconciler",
    "load_resource",
    "parse_device_map",
    "parse_kinds",
    "pick_host",
    "select_kinds",
]

def parse_device_map(items: Iterable[str]) -> dict[str, str]:
    """``["e0.1=/tmp/disk.img"]`` -> ``{"e0.1": "/tmp/disk.img"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise PlanError(f"--device wants NAME=PATH, got {item!r}")
        out[name] = path
    return out


def pick_host(spec: Spec, name: str, *, prune: bool = False) -> HostSpec:
    """The spec's entry for ``name``; an error naming the hosts the spec has otherwise.

    With ``prune``, a host the spec no longer lists is a host that wants nothing: the run
    removes what aoeprov set up there (a host decommissioned by deleting it from the spec).
    """
    try:
        return spec.host(name)
    except KeyError:
        if prune:
            LOG.info("the spec has no host %r: planning the removal of what aoeprov set up "
                     "there", name)
            return HostSpec(name=name, roles=frozenset(), interfaces=())
        names = ", ".join(h.name for h in spec.hosts) or "none"
        raise PlanError(f"the spec has no host {name!r} (hosts: {names}); pick one with --host "
                        f"(or, to remove what aoeprov set up on a host that left the spec, "
                        f"run with --prune)") from None


def load_resource(kind: str) -> ResourceModule:
    modname = RESOURCE_MODULES[kind]
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        raise PlanError(f"resource {kind!r}: cannot import {modname}: {exc} "
                        f"(leave it out with --skip {kind})") from exc
    for attr in ("KIND", "gather", "plan"):
        if not hasattr(mod, attr):
            raise PlanError(f"resource {kind!r}: {modname} has no {attr}")
    return cast(ResourceModule, mod)


@dataclass(frozen=True)
class Plan:
    """Everything one planning run decided, in execution order."""

    host: str
    kinds: tuple[str, ...]
    actions: tuple[Action, ...]
    noops: tuple[Noop, ...]
    pending: frozenset[str] = frozenset()   # side effects owed after this plan (State.pending)
    settled: frozenset[str] = frozenset()   # owed side effects found needless (State.settled)
    source: str = ""

    @property
    def changes(self) -> bool:
        return bool(self.actions)

    @property
    def blocked(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.requires_allow or a.blocked_by)

    @property
    def runnable(self) -> tuple[Action, ...]:
        """What apply would carry out: every action but drift (nothing when any is blocked)."""
        if self.blocked:
            return ()
        return tuple(a for a in self.actions if not isinstance(a, Drift))

    @property
    def drift(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if isinstance(a, Drift))

    @property
    def provisional(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.provisional)

    def counts(self) -> dict[str, int]:
        out = {op: 0 for op in ("create", "change", "destroy", "run", "wait", "drift", "blocked",
                                "prune")}
        for a in self.actions:
            if isinstance(a, Drift):
                out["drift"] += 1
                out["prune"] += a.prune
            else:
                out[a.op.value] += 1
            if a.requires_allow or a.blocked_by:
                out["blocked"] += 1
        return out


@dataclass
class Reconciler:
    """Plans one spec for one host (``host.hostname`` unless ``host_name`` is given)."""

    spec: Spec
    host: Host
    host_name: str | None = None
    kinds: tuple[str, ...] = RESOURCE_ORDER
    device_map: Mapping[str, str] = field(default_factory=dict)
    allow_destroy: bool = False
    prune: bool = False
    systemd: bool | None = None   # None: detect (PID 1 is systemd and no --root)
    # kind -> resource module, instead of importing RESOURCE_MODULES (tests, benchmarks)
    resources: Mapping[str, ResourceModule] | None = None
    me: HostSpec = field(init=False)
    _modules: dict[str, ResourceModule] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.me = pick_host(self.spec, self.host_name or self.host.hostname, prune=self.prune)
        if self.systemd is None:
            self.systemd = systemd_running() and not self.host.sandboxed
        for kind in self.kinds:
            self._modules[kind] = (self.resources[kind] if self.resources is not None
                                   else load_resource(kind))

    def gather_context(self) -> GatherContext:
        return GatherContext(host=self.host, spec=self.spec, me=self.me,
                             device_map=dict(self.device_map))

    def plan_context(self) -> PlanContext:
        return PlanContext(spec=self.spec, me=self.me, allow_destroy=self.allow_destroy,
                           sandboxed=self.host.sandboxed, device_map=dict(self.device_map),
                           systemd=bool(self.systemd), prune=self.prune)

    def gather(self) -> dict[str, Any]:
        """One round of facts: shared ones first (once), then each kind's."""
        ctx = self.gather_context()
        if any(getattr(mod, "USES_DISKS", False) for mod in self._modules.values()):
            from aoeprov.resources._blockdev import gather_disks

            ctx = replace(ctx, disks=_gathering("disk", partial(gather_disks, ctx)))
        return {kind: _gathering(kind, partial(mod.gather, ctx))
                for kind, mod in self._modules.items()}

    def plan(self, facts: Mapping[str, Any] | None = None,
             pending: Iterable[str] = ()) -> Plan:
        """Plan from ``facts`` (gathered now if None); ``pending``: owed side effects (journal)."""
        if facts is None:
            facts = self.gather()
        state = State(hostname=self.me.name, pending=set(pending))
        if not self.systemd:
            state.pending.discard(DAEMON_RELOAD)
        ctx = self.plan_context()
        actions: list[Action] = []
        noops: list[Noop] = []
        for kind, mod in self._modules.items():
            result = mod.plan(ctx, facts[kind], state)
            LOG.debug("%s: %d actions, %d no-ops", kind, len(result.actions), len(result.noops))
            actions.extend(result.actions)
            noops.extend(result.noops)
        placed = place_daemon_reload(
            actions, owed=DAEMON_RELOAD in state.pending, systemd=bool(self.systemd))
        return Plan(host=self.me.name, kinds=tuple(self._modules), actions=placed,
                    noops=tuple(noops), pending=frozenset(state.pending - state.settled),
                    settled=frozenset(state.settled),
                    source=self.spec.source)


def _gathering(what: str, gather: Callable[[], _T]) -> _T:
    """Run one gatherer; an OSError (a file or device that vanished) names what was gathered."""
    try:
        return gather()
    except AoeprovError:
        raise
    except OSError as exc:
        raise HostError(f"gathering {what} facts failed: {exc}") from exc
