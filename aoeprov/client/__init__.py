"""The userspace AoE initiator: ``AoeClient`` for I/O, ``probe`` for discovery."""

from aoeprov.client.probe import (
    Conflict,
    Multipath,
    ProbeResult,
    Responder,
    classify,
    find_conflicts,
    probe,
)
from aoeprov.client.session import AoeClient, TargetInfo, payload_sectors

__all__ = ["AoeClient", "Conflict", "Multipath", "ProbeResult", "Responder", "TargetInfo",
           "classify", "find_conflicts",
           "payload_sectors", "probe"]
