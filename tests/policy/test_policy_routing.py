from __future__ import annotations

import itertools

import pytest

from cisora_mesh.errors import ConfigError
from cisora_mesh.events import Decision, Finding, Severity, Subject, Verdict
from cisora_mesh.policy.routing import (
    Router,
    RouteReason,
    RouteStatus,
    RoutingThresholds,
    decision_confidence,
    route,
)

A, R = RouteStatus.AUTO_APPROVED, RouteStatus.AWAITING_APPROVAL
SCORES = {Severity.HIGH: 0.9, Severity.MEDIUM: 0.7, Severity.LOW: 0.1}

# (severity, confident, require_review_for_high, auto_approve_low) -> (status, reason): all 24 rows.
TABLE = {
    (Severity.HIGH, True, True, True): (R, RouteReason.SEVERITY),
    (Severity.HIGH, True, True, False): (R, RouteReason.SEVERITY),
    (Severity.HIGH, True, False, True): (R, RouteReason.DEFAULT),
    (Severity.HIGH, True, False, False): (R, RouteReason.DEFAULT),
    (Severity.HIGH, False, True, True): (R, RouteReason.SEVERITY_AND_CONFIDENCE),
    (Severity.HIGH, False, True, False): (R, RouteReason.SEVERITY_AND_CONFIDENCE),
    (Severity.HIGH, False, False, True): (R, RouteReason.CONFIDENCE),
    (Severity.HIGH, False, False, False): (R, RouteReason.CONFIDENCE),
    (Severity.MEDIUM, True, True, True): (R, RouteReason.DEFAULT),
    (Severity.MEDIUM, True, True, False): (R, RouteReason.DEFAULT),
    (Severity.MEDIUM, True, False, True): (R, RouteReason.DEFAULT),
    (Severity.MEDIUM, True, False, False): (R, RouteReason.DEFAULT),
    (Severity.MEDIUM, False, True, True): (R, RouteReason.CONFIDENCE),
    (Severity.MEDIUM, False, True, False): (R, RouteReason.CONFIDENCE),
    (Severity.MEDIUM, False, False, True): (R, RouteReason.CONFIDENCE),
    (Severity.MEDIUM, False, False, False): (R, RouteReason.CONFIDENCE),
    (Severity.LOW, True, True, True): (A, RouteReason.AUTO),
    (Severity.LOW, True, True, False): (R, RouteReason.DEFAULT),
    (Severity.LOW, True, False, True): (A, RouteReason.AUTO),
    (Severity.LOW, True, False, False): (R, RouteReason.DEFAULT),
    (Severity.LOW, False, True, True): (R, RouteReason.CONFIDENCE),
    (Severity.LOW, False, True, False): (R, RouteReason.CONFIDENCE),
    (Severity.LOW, False, False, True): (R, RouteReason.CONFIDENCE),
    (Severity.LOW, False, False, False): (R, RouteReason.CONFIDENCE),
}


def test_table_is_complete() -> None:
    product = set(itertools.product((Severity.HIGH, Severity.MEDIUM, Severity.LOW), *([(True, False)] * 3)))
    assert set(TABLE) == product


@pytest.mark.parametrize(("key", "expected"), sorted(TABLE.items(), key=str))
def test_truth_table(key: tuple[Severity, bool, bool, bool], expected: tuple[RouteStatus, RouteReason]) -> None:
    severity, confident, review_high, auto_low = key
    t = RoutingThresholds(require_review_for_high=review_high, auto_approve_low=auto_low)
    result = route(SCORES[severity], 0.95 if confident else 0.3, t)
    assert (result.severity, result.confident) == (severity, confident)
    assert (result.status, result.reason) == expected


def test_only_low_and_confident_is_ever_auto_approved() -> None:
    for (severity, confident, _, _), (status, _) in TABLE.items():
        if status is A:
            assert severity is Severity.LOW and confident


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0.0, Severity.LOW),
        (0.5999, Severity.LOW),
        (0.60, Severity.MEDIUM),
        (0.7999, Severity.MEDIUM),
        (0.80, Severity.HIGH),
        (1.0, Severity.HIGH),
    ],
)
def test_default_thresholds_are_inclusive(score: float, severity: Severity) -> None:
    assert RoutingThresholds().severity(score) is severity


def test_confidence_threshold_is_inclusive() -> None:
    assert route(0.1, 0.70).status is A
    assert route(0.1, 0.6999).status is R


def test_per_tenant_thresholds() -> None:
    router = Router({"strict": RoutingThresholds(severity_high=0.5, severity_medium=0.2)})

    def decision(tenant: str, score: float) -> Decision:
        return Decision(
            event_id="e", event_type="model.input", subject=Subject(tenant=tenant), verdict=Verdict.ALLOW, score=score
        )

    assert router.route(decision("strict", 0.55)).severity is Severity.HIGH
    assert router.route(decision("other", 0.55)).severity is Severity.LOW
    assert router.route(decision("other", 0.1)).status is A
    assert router.route(decision("other", 0.1), confidence=0.2).reason is RouteReason.CONFIDENCE


def test_decision_confidence_uses_the_worst_finding() -> None:
    def f(sev: Severity, conf: float) -> Finding:
        return Finding(detector="d", rule_id="r", category="c", severity=sev, confidence=conf)

    base = Decision(event_id="e", event_type="t", subject=Subject(), verdict=Verdict.ALLOW)
    assert decision_confidence(base) == 1.0
    d = Decision(
        event_id="e",
        event_type="t",
        subject=Subject(),
        verdict=Verdict.ALLOW,
        findings=(f(Severity.LOW, 0.99), f(Severity.HIGH, 0.4), f(Severity.HIGH, 0.6)),
    )
    assert decision_confidence(d) == 0.6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"severity_high": 1.5},
        {"severity_medium": -0.1},
        {"review_below_confidence": 2.0},
        {"severity_high": 0.5, "severity_medium": 0.6},
    ],
)
def test_invalid_thresholds(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RoutingThresholds(**kwargs)  # type: ignore[arg-type]
