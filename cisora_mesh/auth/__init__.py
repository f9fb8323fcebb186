"""Adapters from the standalone `capability` and `vault` packages to the mesh (the only place that imports them)."""

from __future__ import annotations

from cisora_mesh.auth.capability import CapabilityAllowed as CapabilityAllowed
from cisora_mesh.auth.capability import CapabilityDenied as CapabilityDenied
from cisora_mesh.auth.capability import CapabilityGate as CapabilityGate
from cisora_mesh.auth.capability import GateResult as GateResult

__all__ = ("CapabilityAllowed", "CapabilityDenied", "CapabilityGate", "GateResult")
