"""The spec: a YAML file checked against ``schemas/aoeprov.schema.json`` and
semantic rules, loaded into the typed model of ``aoeprov.spec.model``."""

from aoeprov.spec.dump import dump_spec
from aoeprov.spec.loader import load_spec, load_spec_text
from aoeprov.spec.model import Spec

__all__ = ["Spec", "dump_spec", "load_spec", "load_spec_text"]
