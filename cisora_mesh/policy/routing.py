"""Dual-factor routing (Kirtonic Engine paper, section 6.1): severity and confidence decide review independently.

Severity comes from the risk score through per-tenant thresholds (defaults: high >= 0.80, medium >= 0.60, else
low). A result is *confident* when its confidence is at or above `review_below_confidence`. The truth table, with
the paper's defaults (`require_review_for_high` and `auto_approve_low` both on):

    severity   confident                      not confident
    high       review (severity)              review (severity + confidence)
    medium     review (default)               review (confidence)
    low        auto_approve (auto)            review (confidence)

With `require_review_for_high` off, a confident high result is reviewed by default instead of for severity; with
`auto_approve_low` off, a confident low result is reviewed by default. Nothing is ever auto-approved unless it is
low severity *and* confident: the two failure modes (risky vs. unsure) land in the same queue with different
reasons, because their remediations differ (correct routing vs. a classifier that needs more context).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cisora_mesh.errors import ConfigError
from cisora_mesh.events import Decision, Severity


class RouteStatus(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    AUTO_APPROVED = "auto_approved"


class RouteReason(enum.StrEnum):
    SEVERITY = "severity"
    CONFIDENCE = "confidence"
    SEVERITY_AND_CONFIDENCE = "severity+confidence"
    DEFAULT = "default"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class RoutingThresholds:
    """One tenant's routing settings (the paper's `governance_rules`)."""

    severity_high: float = 0.80
    severity_medium: float = 0.60
    review_below_confidence: float = 0.70
    require_review_for_high: bool = True
    auto_approve_low: bool = True

    def __post_init__(self) -> None:
        for name in ("severity_high", "severity_medium", "review_below_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"routing {name} must be within 0..1, got {value}")
        if self.severity_medium > self.severity_high:
            raise ConfigError("routing severity_medium must not exceed severity_high")

    def severity(self, score: float) -> Severity:
        if score >= self.severity_high:
            return Severity.HIGH
        if score >= self.severity_medium:
            return Severity.MEDIUM
        return Severity.LOW


@dataclass(frozen=True, slots=True)
class Route:
    severity: Severity
    status: RouteStatus
    reason: RouteReason
    confident: bool


def route(score: float, confidence: float, thresholds: RoutingThresholds | None = None) -> Route:
    """Route one classified result: the paper's `decide(severity, confidence, policy)`."""
    t = thresholds or RoutingThresholds()
    severity = t.severity(score)
    confident = confidence >= t.review_below_confidence
    high_review = severity is Severity.HIGH and t.require_review_for_high
    if high_review:
        reason = RouteReason.SEVERITY if confident else RouteReason.SEVERITY_AND_CONFIDENCE
        return Route(severity, RouteStatus.AWAITING_APPROVAL, reason, confident)
    if not confident:
        return Route(severity, RouteStatus.AWAITING_APPROVAL, RouteReason.CONFIDENCE, confident)
    if severity is Severity.LOW and t.auto_approve_low:
        return Route(severity, RouteStatus.AUTO_APPROVED, RouteReason.AUTO, confident)
    return Route(severity, RouteStatus.AWAITING_APPROVAL, RouteReason.DEFAULT, confident)


def decision_confidence(decision: Decision) -> float:
    """The confidence behind a decision: that of its most severe finding (1.0 without findings: nothing to doubt).

    Among findings of equal severity the most confident one speaks, so one weak extra finding cannot drag a
    confident result into review.
    """
    if not decision.findings:
        return 1.0
    worst = max(decision.findings, key=lambda f: (f.severity.rank, f.confidence))
    return worst.confidence


@dataclass(frozen=True, slots=True)
class Router:
    """Per-tenant thresholds over a default: `Router({"acme": RoutingThresholds(severity_high=0.9)})`."""

    tenants: Mapping[str, RoutingThresholds] = field(default_factory=dict)
    default: RoutingThresholds = RoutingThresholds()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenants", MappingProxyType(dict(self.tenants)))

    def thresholds(self, tenant: str) -> RoutingThresholds:
        return self.tenants.get(tenant, self.default)

    def route(self, decision: Decision, *, confidence: float | None = None) -> Route:
        """Route a pipeline decision by its score and (unless given) the confidence of its worst finding."""
        conf = decision_confidence(decision) if confidence is None else confidence
        return route(decision.score, conf, self.thresholds(decision.subject.tenant))
