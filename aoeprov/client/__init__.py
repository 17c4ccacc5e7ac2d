"""The userspace AoE initiator: ``AoeClient`` for I/O, ``probe`` for discovery."""

from aoeprov.client.probe import Conflict, ProbeResult, Responder, find_conflicts, probe
from aoeprov.client.session import AoeClient, TargetInfo, payload_sectors

__all__ = ["AoeClient", "Conflict", "ProbeResult", "Responder", "TargetInfo", "find_conflicts",
           "payload_sectors", "probe"]
