"""The spec: a YAML file checked against ``schemas/aoeprov.schema.json`` and
semantic rules, loaded into the typed model of ``aoeprov.spec.model``.

The public names are imported on first use, so importing the model alone does not
pull in YAML and JSON Schema (the command line starts faster).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aoeprov.spec.dump import dump_spec
    from aoeprov.spec.loader import load_spec, load_spec_text
    from aoeprov.spec.model import Spec

__all__ = ["Spec", "dump_spec", "load_spec", "load_spec_text"]

_HOMES = {"Spec": "model", "dump_spec": "dump", "load_spec": "loader", "load_spec_text": "loader"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
