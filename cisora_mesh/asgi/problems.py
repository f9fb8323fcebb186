"""RFC 9457 problem details (`application/problem+json`) for everything the middleware refuses.

One table maps an exception class (looked up through the MRO, most specific first, as Starlette does for its
exception handlers) or a decision outcome to `(status, type, title)`. `type` is a stable URN,
`urn:cisora:problem:<slug>`, that clients can switch on; `instance` is `urn:uuid:<request id>` and joins the response
to its audit record; `detail` is a fixed sentence per problem: it never carries payload text, secrets, detector
internals or exception messages (RFC 9457 section 5 warns that problem details can leak implementation details).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import msgspec
from starlette.responses import Response

from cisora_mesh.errors import CisoraError, ConfigError
from cisora_mesh.policy.errors import ApprovalInvalid, IllegalTransition, LifecycleError, UnknownDecision

MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:cisora:problem:"


class RequestRejected(CisoraError):
    """Base of the request-shape problems the middleware answers itself."""


class BodyTooLarge(RequestRejected):
    """The request (or buffered response) body exceeds the configured limit."""


class MalformedBody(RequestRejected, ValueError):
    """The body claims to be JSON but does not parse."""


class UnsupportedMediaType(RequestRejected):
    """A non-JSON body on a route configured to accept JSON only."""


class MalformedEncoding(RequestRejected, ValueError):
    """The body's content coding (gzip, deflate) is corrupt or truncated."""


class UnsupportedEncoding(RequestRejected):
    """A content coding the middleware cannot decode, so cannot scan (RFC 9110 section 15.5.16: 415)."""


class EvaluationUnavailable(CisoraError):
    """Detection failed and the control is configured fail-closed."""


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    slug: str
    title: str
    detail: str

    @property
    def type(self) -> str:
        return TYPE_PREFIX + self.slug


# Decision outcomes (not exceptions): looked up by name.
BLOCKED: Final = ProblemType(
    403, "request-blocked", "Request blocked by policy", "The request was blocked by a security policy."
)
# 409, not 202: a 2xx would let a client that ignores the body believe its call went through. RFC 9110 section
# 15.5.10 describes 409 for a conflict "the user might be able to resolve" and then resubmit, which is exactly
# "get this decision approved, then retry with the approval header".
REVIEW: Final = ProblemType(
    409,
    "review-required",
    "Human review required",
    "The request needs approval. Retry it unchanged with the approval header once approved.",
)
RESPONSE_BLOCKED: Final = ProblemType(
    403, "response-blocked", "Response blocked by policy", "The response was withheld by a security policy."
)

# 502: the app (the "inbound server" of RFC 9110 section 15.6.3) answered in a coding the middleware cannot decode, so
# the response could not be scanned and is withheld rather than passed unread.
RESPONSE_UNSCANNABLE: Final = ProblemType(
    502,
    "response-unscannable",
    "Response could not be scanned",
    "The response used a content coding the security layer cannot decode, so it was withheld.",
)

PROBLEMS: Final[dict[type[BaseException], ProblemType]] = {
    BodyTooLarge: ProblemType(
        413, "payload-too-large", "Payload too large", "The body exceeds the configured size limit."
    ),
    MalformedBody: ProblemType(400, "malformed-json", "Malformed JSON body", "The body is not valid JSON."),
    MalformedEncoding: ProblemType(
        400, "malformed-content-encoding", "Malformed content coding", "The compressed body is corrupt or truncated."
    ),
    UnsupportedEncoding: ProblemType(
        415,
        "unsupported-content-encoding",
        "Unsupported content coding",
        "The body uses a content coding that cannot be inspected. Send it uncompressed, gzip or deflate.",
    ),
    UnsupportedMediaType: ProblemType(
        415, "unsupported-media-type", "Unsupported media type", "This endpoint accepts JSON bodies only."
    ),
    EvaluationUnavailable: ProblemType(
        503,
        "evaluation-unavailable",
        "Security evaluation unavailable",
        "The request could not be evaluated and this control fails closed.",
    ),
    IllegalTransition: ProblemType(
        409,
        "illegal-transition",
        "Illegal decision transition",
        "The decision is not in a state that allows this operation.",
    ),
    ApprovalInvalid: ProblemType(
        409,
        "approval-invalid",
        "Approval does not cover this request",
        "The approval expired or was granted for a different request.",
    ),
    UnknownDecision: ProblemType(404, "unknown-decision", "Unknown decision", "No such decision is tracked."),
    LifecycleError: ProblemType(
        409, "lifecycle-conflict", "Decision lifecycle conflict", "The operation conflicts with the decision's state."
    ),
    ConfigError: ProblemType(
        400, "invalid-configuration", "Invalid configuration", "The submitted configuration or policy is invalid."
    ),
    CisoraError: ProblemType(500, "internal", "Internal error", "The security layer failed."),
    Exception: ProblemType(500, "internal", "Internal error", "The security layer failed."),
}


def problem_for(exc: BaseException) -> ProblemType:
    for cls in type(exc).__mro__:
        found = PROBLEMS.get(cls)
        if found is not None:
            return found
    return PROBLEMS[Exception]


def problem_body(problem: ProblemType, *, request_id: str, extra: Mapping[str, object] | None = None) -> bytes:
    body: dict[str, object] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": f"urn:uuid:{request_id}",
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    return msgspec.json.encode(body)


def problem_response(
    problem: ProblemType | BaseException,
    *,
    request_id: str,
    extra: Mapping[str, object] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response (itself an ASGI app: `await problem_response(...)(scope, receive, send)`)."""
    spec = problem if isinstance(problem, ProblemType) else problem_for(problem)
    return Response(
        problem_body(spec, request_id=request_id, extra=extra),
        status_code=spec.status,
        media_type=MEDIA_TYPE,
        headers={"cache-control": "no-store", **(headers or {})},
    )
