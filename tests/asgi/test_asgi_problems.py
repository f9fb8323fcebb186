from __future__ import annotations

import json

import pytest

from cisora_mesh.asgi.problems import (
    BLOCKED,
    MEDIA_TYPE,
    PROBLEMS,
    REVIEW,
    BodyTooLarge,
    EvaluationUnavailable,
    MalformedBody,
    UnsupportedMediaType,
    problem_for,
    problem_response,
)
from cisora_mesh.errors import CisoraError, PatternError
from cisora_mesh.policy import ApprovalInvalid, IllegalTransition, PolicySyntaxError, UnknownDecision


@pytest.mark.parametrize(
    ("exc", "status", "slug"),
    [
        (BodyTooLarge(), 413, "payload-too-large"),
        (MalformedBody(), 400, "malformed-json"),
        (UnsupportedMediaType(), 415, "unsupported-media-type"),
        (EvaluationUnavailable(), 503, "evaluation-unavailable"),
        (IllegalTransition("d", "executed", "approve"), 409, "illegal-transition"),
        (ApprovalInvalid("d", "expired"), 409, "approval-invalid"),
        (UnknownDecision("d"), 404, "unknown-decision"),
        (PolicySyntaxError("x", line=1, column=1), 400, "invalid-configuration"),
        (PatternError("x"), 400, "invalid-configuration"),
        (CisoraError("x"), 500, "internal"),
        (KeyError("x"), 500, "internal"),
    ],
)
def test_table_is_looked_up_through_the_mro(exc: BaseException, status: int, slug: str) -> None:
    problem = problem_for(exc)
    assert (problem.status, problem.type) == (status, f"urn:cisora:problem:{slug}")


def test_types_are_unique_stable_urns() -> None:
    specs = [*PROBLEMS.values(), BLOCKED, REVIEW]
    assert all(p.type.startswith("urn:cisora:problem:") for p in specs)
    assert BLOCKED.status == 403
    assert REVIEW.status == 409


def test_response_shape_never_carries_the_exception_message() -> None:
    resp = problem_response(MalformedBody("line 1: sk-live-123"), request_id="01-id", extra={"decision_id": "d"})
    assert resp.status_code == 400
    assert resp.media_type == MEDIA_TYPE
    body = json.loads(bytes(resp.body))
    assert body == {
        "type": "urn:cisora:problem:malformed-json",
        "title": "Malformed JSON body",
        "status": 400,
        "detail": "The body is not valid JSON.",
        "instance": "urn:uuid:01-id",
        "request_id": "01-id",
        "decision_id": "d",
    }
    assert resp.headers["cache-control"] == "no-store"
