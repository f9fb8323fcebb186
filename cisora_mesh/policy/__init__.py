"""Policy engine: a readable rule language compiled to a pure evaluator, dual-factor routing and the decision
lifecycle (see docs/policy-language.md)."""

from __future__ import annotations

from cisora_mesh.policy.apply import PolicyMesh, apply_policy, load_pack, starter_pack
from cisora_mesh.policy.ast import Action, Op
from cisora_mesh.policy.engine import PolicyEngine, PolicyResult, RuleMatch
from cisora_mesh.policy.errors import (
    ApprovalInvalid,
    IllegalTransition,
    LifecycleError,
    PolicySyntaxError,
    UnknownDecision,
)
from cisora_mesh.policy.parser import parse_policy

__all__ = [
    "Action",
    "ApprovalInvalid",
    "IllegalTransition",
    "LifecycleError",
    "Op",
    "PolicyEngine",
    "PolicyMesh",
    "PolicyResult",
    "PolicySyntaxError",
    "RuleMatch",
    "UnknownDecision",
    "apply_policy",
    "load_pack",
    "parse_policy",
    "starter_pack",
]
