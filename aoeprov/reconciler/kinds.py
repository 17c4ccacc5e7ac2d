"""Resource kinds in execution order, and selecting them (``--only``/``--skip``).

Kept apart from the engine so the command line can be built without importing
the engine, the host and the spec loader.
"""

from __future__ import annotations

from collections.abc import Iterable

from aoeprov.errors import PlanError

RESOURCE_ORDER = ("module", "backing", "export", "discovery", "partition", "filesystem",
                  "fstab", "mount", "boot")
# Each kind is implemented by the resource module of the same name.
RESOURCE_MODULES = {kind: f"aoeprov.resources.{kind}" for kind in RESOURCE_ORDER}


def parse_kinds(text: str) -> frozenset[str]:
    """``"module,boot"`` -> kinds; unknown names are an error listing the valid ones."""
    kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
    unknown = kinds - set(RESOURCE_ORDER)
    if unknown:
        raise PlanError(f"unknown resource kind(s) {', '.join(sorted(unknown))}; "
                        f"kinds are {', '.join(RESOURCE_ORDER)}")
    return kinds


def select_kinds(only: Iterable[str] = (), skip: Iterable[str] = ()) -> tuple[str, ...]:
    only_set, skip_set = frozenset(only), frozenset(skip)
    return tuple(k for k in RESOURCE_ORDER
                 if (not only_set or k in only_set) and k not in skip_set)
