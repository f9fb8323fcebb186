"""`CisoraMiddleware`: the mesh as pure ASGI middleware for Starlette, FastAPI and MCP/A2A server apps.

    app = Starlette(routes=..., middleware=[Middleware(CisoraMiddleware, mesh=Mesh(), policy=starter_pack())])

Pure ASGI rather than `BaseHTTPMiddleware` (whose task group breaks `ContextVar` propagation and buffers
streaming responses). For each HTTP request it:

1. reads the body up to `max_body_bytes` (413 problem beyond it). A gzip or deflate body (`Content-Encoding`,
   RFC 9110 section 8.4) is decoded incrementally, also capped at `max_body_bytes` decoded (a zip bomb gets 413
   without being inflated), and the app receives the decoded body with `Content-Encoding` removed and
   `Content-Length` set: what was scanned is what the app reads. A corrupt or truncated coding gets a 400 problem;
   any other coding (br, zstd, stacked codings) a 415 problem with `Accept-Encoding: gzip, deflate`, unless
   `unknown_encoding="unsafe_pass"` forwards it unread (never with a capability gate). A JSON body that does not
   parse gets a 400 problem; a non-JSON body passes through unscanned (`non_json="pass"`, default) or gets 415
   (`"reject"`);
2. turns the JSON into an event (`_extract`), evaluates it (pipeline, then the policy engine, then audit) and
   enforces the decision: block -> 403 problem; review -> 409 problem naming the decision id to retry with
   (`Cisora-Approval: <decision id>` once a reviewer approved it, for this exact request, before it expires);
   redact -> the app receives the body with the redacted strings written back and a corrected Content-Length;
3. scans the response (`_response`). With response scanning on, the app sees `Accept-Encoding: identity`, so it
   answers uncompressed (put GZipMiddleware outside this middleware to compress what was scanned); a response
   compressed anyway (gzip/deflate) is decoded for scanning and sent decoded, and one in a coding the middleware
   cannot decode is replaced by a 502 problem (or passed with `unknown_encoding="unsafe_pass"`).
   JSON and text bodies are buffered (up to `max_response_bytes`) and redacted or replaced by a 403 problem.
   Server-sent events (`text/event-stream`, what chat and MCP servers stream) are scanned one event at a time
   (`_sse`): each event is reassembled across network chunks up to `max_sse_event_bytes`, its data scanned as JSON
   (redacted inside string values) or text, its other lines as text, and forwarded as it came or rewritten; a
   larger event falls back to hold-back redaction (`sse_overflow="stream"`) or ends the stream (`"block"`).
   Other streams (chunked text) are redacted incrementally with a hold-back window of `holdback_chars`. With
   `stream_mode="alert"` streams pass unchanged and are only audited. The response start is held until the first
   body message, so a problem can still replace a response that has not started, and a second start is never
   sent; a stream blocked after it started ends there (SSE: with an `event: error` carrying the problem).

Limits: a secret split across two *separate* SSE events (token-by-token deltas) is not reassembled, since each
event is scanned on its own; brotli and zstd bodies are refused (415) rather than decoded.

Failure mode (`fail_mode`): if evaluation itself raises, "open" (default, the product's choice for detection)
forwards the traffic, logs the exception type, counts it in `stats` and audits a decision carrying an
`ASGI-EVAL-ERROR` finding; "closed" answers 503 instead. Headers are never scanned or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import anyio.to_thread
import msgspec
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cisora_mesh.auth.capability import CapabilityDenied, CapabilityGate
from cisora_mesh.config import FailMode
from cisora_mesh.events import Decision, Event, Finding, JSONValue, ModelOutput, Severity, Subject, Verdict, new_id
from cisora_mesh.mesh import Mesh
from cisora_mesh.policy.apply import PolicyMesh
from cisora_mesh.policy.engine import PolicyEngine
from cisora_mesh.policy.errors import LifecycleError
from cisora_mesh.policy.lifecycle import AuditTransitionLog, Lifecycle, TransitionSink, request_digest
from cisora_mesh.policy.routing import Router

from . import _encoding, _scope
from ._extract import Extracted, apply_redaction, request_event
from ._response import ResponseGuard
from ._stream import DEFAULT_HOLDBACK
from .problems import (
    BLOCKED,
    REVIEW,
    BodyTooLarge,
    EvaluationUnavailable,
    MalformedBody,
    MalformedEncoding,
    ProblemType,
    UnsupportedEncoding,
    UnsupportedMediaType,
    problem_response,
)

logger = logging.getLogger("cisora_mesh.asgi")

EVAL_ERROR_RULE: Final = "ASGI-EVAL-ERROR"
APPROVAL_HEADER: Final = "cisora-approval"
ACTOR: Final = "cisora-asgi"
_BODY_HEADERS: Final = frozenset({b"content-length", b"content-encoding"})
_ACCEPT_ENCODING: Final = frozenset({b"accept-encoding"})
_BODY_AND_ACCEPT: Final = _BODY_HEADERS | _ACCEPT_ENCODING
_IDENTITY: Final = (b"accept-encoding", b"identity")
CAPABILITY_DENIED: Final = ProblemType(
    403,
    "capability-denied",
    "Capability denied",
    "A capability token and proof of possession that grant this request are required.",
)


class _Disconnected(Exception):
    """The client went away while the body was being read."""


@dataclass(slots=True)
class MiddlewareStats:
    """Counters for operators and tests (exported to metrics by whoever owns the process)."""

    requests_evaluated: int = 0
    requests_blocked: int = 0
    requests_reviewed: int = 0
    requests_redacted: int = 0
    approvals_used: int = 0
    responses_blocked: int = 0
    responses_redacted: int = 0
    streams_redacted: int = 0
    bodies_decoded: int = 0  # gzip/deflate request and response bodies decoded for scanning
    unscanned_encoded: int = 0  # bodies in an unknown coding forwarded unread (unknown_encoding="unsafe_pass")
    fail_open: int = 0
    fail_closed: int = 0


def _default_lifecycle(mesh: Mesh) -> Lifecycle:
    """Review decisions' lifecycle; its transitions go to the mesh's audit store when it has one."""
    store: object = mesh.audit  # any sink; the audit store also records transitions
    if isinstance(store, TransitionSink):
        return Lifecycle(AuditTransitionLog(store))
    return Lifecycle()


class CisoraMiddleware:
    """Pure ASGI middleware enforcing mesh decisions on requests and responses (options are keyword-only)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        mesh: Mesh | None = None,
        policy: PolicyEngine | None = None,
        lifecycle: Lifecycle | None = None,
        router: Router | None = None,
        max_body_bytes: int = 1 << 20,
        max_response_bytes: int = 4 << 20,
        non_json: Literal["pass", "reject"] = "pass",
        unknown_encoding: Literal["reject", "unsafe_pass"] = "reject",
        scan_responses: bool = True,
        stream_mode: Literal["redact", "alert"] = "redact",
        holdback_chars: int = DEFAULT_HOLDBACK,
        max_sse_event_bytes: int = 1 << 20,
        sse_overflow: Literal["stream", "block"] = "stream",
        fail_mode: FailMode | Literal["open", "closed"] = FailMode.OPEN,
        subject: Callable[[Scope], Subject] = _scope.subject_from_scope,
        approval_header: str = APPROVAL_HEADER,
        capability_gate: CapabilityGate | None = None,
        capability_service: str | None = None,
    ) -> None:
        # Explicit checks, not asserts: `python -O` strips asserts (style guide, TrustedHostMiddleware note).
        if max_body_bytes < 0 or max_response_bytes < 0:
            raise ValueError("body limits must be non-negative")
        if non_json not in ("pass", "reject"):
            raise ValueError("non_json must be 'pass' or 'reject'")
        if unknown_encoding not in ("reject", "unsafe_pass"):
            raise ValueError("unknown_encoding must be 'reject' or 'unsafe_pass'")
        if stream_mode not in ("redact", "alert"):
            raise ValueError("stream_mode must be 'redact' or 'alert'")
        if max_sse_event_bytes < 1:
            raise ValueError("max_sse_event_bytes must be positive")
        if sse_overflow not in ("stream", "block"):
            raise ValueError("sse_overflow must be 'stream' or 'block'")
        if holdback_chars < 1:
            raise ValueError("holdback_chars must be at least 1")
        if capability_gate is not None and not capability_service:
            raise ValueError("capability_gate needs capability_service (the <server>/<agent> its resources name)")
        self.app = app
        self.mesh = mesh or Mesh()
        self.policy = policy
        self.evaluator = PolicyMesh(self.mesh, policy)
        self.lifecycle = lifecycle or _default_lifecycle(self.mesh)
        self.router = router or Router()
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.non_json = non_json
        self.unknown_encoding = unknown_encoding
        if unknown_encoding == "unsafe_pass":
            # Named unsafe and announced (sigstore's UnsafeNoOp does the same): such bodies are forwarded unread.
            logger.warning("unknown_encoding='unsafe_pass': bodies in codings other than gzip/deflate are not scanned")
        self.scan_responses = scan_responses
        self.stream_mode = stream_mode
        self.holdback_chars = holdback_chars
        self.max_sse_event_bytes = max_sse_event_bytes
        self.sse_overflow = sse_overflow
        self.fail_mode = FailMode(fail_mode)
        self.subject = subject
        self.approval_header = approval_header.lower()
        self._approval_raw = self.approval_header.encode("latin-1")
        self.capability_gate = capability_gate
        self.capability_service = capability_service or ""
        self.stats = MiddlewareStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id()
        heads = _scope.BodyHeads(scope["headers"], self._approval_raw)
        inflater: _encoding.Inflater | None = None
        opaque = False  # a body in a coding we cannot read, forwarded unread (unsafe_pass only)
        if heads.content_encoding:
            try:
                inflater = _encoding.decoder_for(heads.content_encoding)
            except LookupError:
                # The capability gate fails closed whatever the option says: it cannot check what it cannot read.
                if self.unknown_encoding == "reject" or self.capability_gate is not None:
                    await problem_response(
                        UnsupportedEncoding(),
                        request_id=request_id,
                        headers={"accept-encoding": _encoding.ACCEPT_ENCODING},
                    )(scope, receive, send)
                    return
                opaque = True
                self.stats.unscanned_encoded += 1
        try:
            body = original = await self._read_body(receive, heads)
            if inflater is not None and body:
                body = self._decode(inflater, body)
        except _Disconnected:
            return
        except (BodyTooLarge, MalformedEncoding) as exc:
            await problem_response(exc, request_id=request_id)(scope, receive, send)
            return
        subject = self.subject(scope)
        method: str = scope["method"]
        path: str = scope["path"]
        context = {"http.method": method, "http.path": path}
        is_json = bool(body) and not opaque and _scope.is_json(heads.media)
        gate = self.capability_gate
        doc: JSONValue = None
        parsed = False
        if is_json or (gate is not None and body):
            try:
                doc = msgspec.json.decode(body)  # decoded once: the gate, the event and a redaction share it
                parsed = True
            except msgspec.DecodeError:
                if is_json:
                    await problem_response(MalformedBody(), request_id=request_id)(scope, receive, send)
                    return
                # not JSON, so not a JSON-RPC call the gate covers
        # Authorization before detection, and fail closed. The body is parsed whatever its declared media type, so
        # a JSON-RPC call sent as text/plain to a lenient app cannot slip past the gate.
        if gate is not None and parsed and self._capability_denied(gate, doc, scope):
            await problem_response(CAPABILITY_DENIED, request_id=request_id)(scope, receive, send)
            return
        extracted: Extracted | None = None
        if is_json:
            extracted = request_event(doc, method=method, path=path, subject=subject, event_id=request_id)
            outcome = await self._enforce_request(extracted, doc, heads, scope, context, request_id)
            if isinstance(outcome, _Reply):
                await problem_response(outcome.problem, request_id=request_id, extra=outcome.extra)(
                    scope, receive, send
                )
                return
            if outcome is not None:
                body = outcome
        elif body and self.non_json == "reject":
            await problem_response(UnsupportedMediaType(), request_id=request_id)(scope, receive, send)
            return
        scope = self._app_scope(scope, body, rewritten=body is not original or inflater is not None)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.scan_responses:
            await self.app(scope, replay, ResponseGuard(self, send, request_id, extracted, subject, context))
        else:
            await self.app(scope, replay, send)

    def _app_scope(self, scope: Scope, body: bytes, *, rewritten: bool) -> Scope:
        """The scope the app sees: the body's new length and no coding after a rewrite; identity responses asked for.

        With response scanning on, `Accept-Encoding` becomes `identity`, so the app answers uncompressed and the
        response can be scanned (compress outside this middleware instead: add GZipMiddleware after it). Removing
        the field would not do: RFC 9110 section 12.5.3 reads a request without it as accepting any coding.
        """
        if rewritten:
            length = (b"content-length", str(len(body)).encode("ascii"))
            if self.scan_responses:
                return _scope.with_headers(scope, _BODY_AND_ACCEPT, [length, _IDENTITY])
            return _scope.with_headers(scope, _BODY_HEADERS, [length])
        if self.scan_responses:
            return _scope.with_headers(scope, _ACCEPT_ENCODING, [_IDENTITY])
        return scope

    def _decode(self, inflater: _encoding.Inflater, body: bytes) -> bytes:
        """The decoded body, at most `max_body_bytes` of it: zlib never produces more than asked for (zip bombs)."""
        limit = self.max_body_bytes
        inflater.feed(body)
        try:
            decoded = inflater.read(limit + 1)
            if len(decoded) > limit:
                raise BodyTooLarge()
            inflater.finish()
        except _encoding.DecodeError:
            raise MalformedEncoding() from None
        self.stats.bodies_decoded += 1
        return decoded

    def _capability_denied(self, gate: CapabilityGate, doc: JSONValue, scope: Scope) -> bool:
        verdict = gate.check_jsonrpc_body(doc, Headers(scope=scope), service=self.capability_service)
        return isinstance(verdict, CapabilityDenied)

    # -- requests ------------------------------------------------------------------------------------------
    async def _read_body(self, receive: Receive, heads: _scope.BodyHeads) -> bytes:
        limit = self.max_body_bytes
        declared = heads.content_length
        if declared is not None and declared > limit:
            raise BodyTooLarge()  # refuse before reading a byte of it
        message = await receive()
        while message["type"] != "http.request":
            if message["type"] == "http.disconnect":
                raise _Disconnected
            message = await receive()
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge()
        if not message.get("more_body", False):
            return body  # the usual case, one message: no list, no join
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _enforce_request(
        self,
        extracted: Extracted,
        doc: JSONValue,
        heads: _scope.BodyHeads,
        scope: Scope,
        context: Mapping[str, object],
        request_id: str,
    ) -> _Reply | bytes | None:
        """A problem to answer with, a rewritten body to forward, or None to forward the body unchanged."""
        decision = await self.evaluate_audited(extracted.event, context)
        if decision is None:
            return _Reply(EvaluationUnavailable()) if self.fail_mode is FailMode.CLOSED else None
        self.stats.requests_evaluated += 1
        verdict = decision.verdict
        extra = {"decision_id": decision.id}
        if verdict is Verdict.BLOCK:
            self.stats.requests_blocked += 1
            return _Reply(BLOCKED, extra)
        if verdict is Verdict.REVIEW:
            digest = request_digest(scope["method"], scope["path"], doc)
            approval = heads.approval
            # Lifecycle moves are durable (the audit store's transition log) before they return: off the loop.
            if approval:
                try:
                    await anyio.to_thread.run_sync(
                        lambda: self.lifecycle.execute(approval, actor=ACTOR, request_digest=digest)
                    )
                except LifecycleError as exc:
                    return _Reply(exc, {"decision_id": approval})
                self.stats.approvals_used += 1
                return None
            self.stats.requests_reviewed += 1
            severity = self.router.route(decision).severity
            tenant = decision.subject.tenant
            await anyio.to_thread.run_sync(
                lambda: self.lifecycle.create(
                    decision.id, severity=severity, actor=ACTOR, request_digest=digest, tenant=tenant
                )
            )
            return _Reply(REVIEW, {**extra, "approval_header": self.approval_header})
        if verdict is Verdict.REDACT:
            self.stats.requests_redacted += 1
            return msgspec.json.encode(apply_redaction(doc, decision, extracted))
        return None

    # -- evaluation ----------------------------------------------------------------------------------------
    async def evaluate_audited(self, event: Event, context: Mapping[str, object]) -> Decision | None:
        """The enforced decision, recorded in the audit store (a preventive one durably) before it is returned;
        None when evaluation failed (already logged, counted and audited). The event loop keeps serving other
        requests while the record is committed."""
        try:
            return await self.evaluator.aevaluate(event, context=context)
        except Exception as exc:  # noqa: BLE001 - any failure must become an audited fail-open/closed decision
            self._evaluation_failed(event, exc)
            return None

    async def record(self, decision: Decision, event: Event) -> None:
        """Append a decision the middleware built itself (a stream's summary), durably, off the event loop."""
        audit = self.mesh.audit
        if audit is None:
            return
        aappend = getattr(audit, "aappend_decision", None)
        if aappend is not None:
            await aappend(decision, event)
        else:
            await anyio.to_thread.run_sync(audit.append_decision, decision, event)

    def _evaluate(self, event: Event, context: Mapping[str, object]) -> Decision | None:
        """The decision for one part of a response (not audited on its own), or None when evaluation failed."""
        try:
            return self.mesh.decide(event, policy=self.policy, context=context)
        except Exception as exc:  # noqa: BLE001 - any failure must become an audited fail-open/closed decision
            self._evaluation_failed(event, exc)
            return None

    def _evaluation_failed(self, event: Event, exc: BaseException) -> None:
        closed = self.fail_mode is FailMode.CLOSED
        # The exception type only: messages of detector errors can contain the text being scanned.
        logger.warning("evaluation failed (%s); failing %s", type(exc).__name__, "closed" if closed else "open")
        if closed:
            self.stats.fail_closed += 1
        else:
            self.stats.fail_open += 1
        if self.mesh.audit is None:
            return
        finding = Finding(
            detector="asgi",
            rule_id=EVAL_ERROR_RULE,
            category="pipeline.stage_error",
            severity=Severity.HIGH,
            confidence=1.0,
            label=type(exc).__name__,
            action=Verdict.BLOCK if closed else Verdict.ALLOW,
        )
        decision = Decision(
            event_id=event.id,
            event_type=str(type(event).__struct_config__.tag or "event"),
            subject=event.subject,
            verdict=finding.action or Verdict.ALLOW,
            findings=(finding,),
        )
        try:
            self.mesh.audit.append_decision(decision, event)
        except Exception as audit_exc:  # noqa: BLE001 - already failing; report both, do not mask the first
            logger.error("audit of a failed evaluation failed too (%s)", type(audit_exc).__name__)

    def scan_stream_text(self, subject: Subject, context: Mapping[str, object]) -> Callable[[str], Decision]:
        def scan(text: str) -> Decision:
            event = ModelOutput(subject=subject, text=text)
            decision = self._evaluate(event, context)
            if decision is None:
                verdict = Verdict.BLOCK if self.fail_mode is FailMode.CLOSED else Verdict.ALLOW
                return Decision(event_id=event.id, event_type="model.output", subject=subject, verdict=verdict)
            return decision

        return scan


@dataclass(frozen=True, slots=True)
class _Reply:
    problem: ProblemType | BaseException  # an exception is mapped through the problems table
    extra: Mapping[str, object] | None = None
