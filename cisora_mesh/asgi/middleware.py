"""`CisoraMiddleware`: the mesh as pure ASGI middleware for Starlette, FastAPI and MCP/A2A server apps.

    app = Starlette(routes=..., middleware=[Middleware(CisoraMiddleware, mesh=Mesh(), policy=starter_pack())])

Pure ASGI rather than `BaseHTTPMiddleware` (whose task group breaks `ContextVar` propagation and buffers
streaming responses). For each HTTP request it:

1. reads the body up to `max_body_bytes` (413 problem beyond it); a JSON body that does not parse gets a 400
   problem; a non-JSON body passes through unscanned (`non_json="pass"`, default) or gets 415 (`"reject"`);
2. turns the JSON into an event (`_extract`), evaluates it (pipeline, then the policy engine, then audit) and
   enforces the decision: block -> 403 problem; review -> 409 problem naming the decision id to retry with
   (`Cisora-Approval: <decision id>` once a reviewer approved it, for this exact request, before it expires);
   redact -> the app receives the body with the redacted strings written back and a corrected Content-Length;
3. scans the response: JSON and text bodies are buffered (up to `max_response_bytes`) and redacted or replaced by
   a 403 problem; streams (SSE, chunked text) are redacted incrementally with a hold-back window, or only
   audited with `stream_mode="alert"`. The response start is held until the first body message, so a problem can
   still replace a response that has not started, and a second start is never sent.

Failure mode (`fail_mode`): if evaluation itself raises, "open" (default, the product's choice for detection)
forwards the traffic, logs the exception type, counts it in `stats` and audits a decision carrying an
`ASGI-EVAL-ERROR` finding; "closed" answers 503 instead. Headers are never scanned or logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cisora_mesh.auth.capability import CapabilityDenied, CapabilityGate
from cisora_mesh.config import FailMode
from cisora_mesh.events import Decision, Event, Finding, JSONValue, ModelOutput, Severity, Subject, Verdict, new_id
from cisora_mesh.mesh import Mesh
from cisora_mesh.pipeline.redaction import redact
from cisora_mesh.pipeline.runner import decide
from cisora_mesh.policy.apply import PolicyMesh, apply_policy
from cisora_mesh.policy.engine import PolicyEngine
from cisora_mesh.policy.errors import LifecycleError
from cisora_mesh.policy.lifecycle import Lifecycle, request_digest
from cisora_mesh.policy.routing import Router

from . import _scope
from ._extract import Extracted, apply_redaction, redaction_findings, request_event, response_event, text_event
from ._stream import DEFAULT_HOLDBACK, StreamRedactor
from .problems import (
    BLOCKED,
    RESPONSE_BLOCKED,
    REVIEW,
    BodyTooLarge,
    EvaluationUnavailable,
    MalformedBody,
    ProblemType,
    UnsupportedMediaType,
    problem_body,
    problem_response,
)

logger = logging.getLogger("cisora_mesh.asgi")

EVAL_ERROR_RULE: Final = "ASGI-EVAL-ERROR"
APPROVAL_HEADER: Final = "cisora-approval"
ACTOR: Final = "cisora-asgi"
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
    fail_open: int = 0
    fail_closed: int = 0


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
        scan_responses: bool = True,
        stream_mode: Literal["redact", "alert"] = "redact",
        holdback_chars: int = DEFAULT_HOLDBACK,
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
        if stream_mode not in ("redact", "alert"):
            raise ValueError("stream_mode must be 'redact' or 'alert'")
        if holdback_chars < 1:
            raise ValueError("holdback_chars must be at least 1")
        if capability_gate is not None and not capability_service:
            raise ValueError("capability_gate needs capability_service (the <server>/<agent> its resources name)")
        self.app = app
        self.mesh = mesh or Mesh()
        self.policy = policy
        self.evaluator = PolicyMesh(self.mesh, policy)
        self.lifecycle = lifecycle or Lifecycle()
        self.router = router or Router()
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.non_json = non_json
        self.scan_responses = scan_responses
        self.stream_mode = stream_mode
        self.holdback_chars = holdback_chars
        self.fail_mode = FailMode(fail_mode)
        self.subject = subject
        self.approval_header = approval_header.lower()
        self.capability_gate = capability_gate
        self.capability_service = capability_service or ""
        self.stats = MiddlewareStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id()
        headers = Headers(scope=scope)
        try:
            body = await self._read_body(receive, headers)
        except _Disconnected:
            return
        except BodyTooLarge as exc:
            await problem_response(exc, request_id=request_id)(scope, receive, send)
            return
        subject = self.subject(scope)
        context: dict[str, object] = {"http.method": scope["method"], "http.path": scope["path"]}
        media = _scope.media_type(headers)
        # Authorization before detection, and fail closed. The body is parsed whatever its declared media type, so
        # a JSON-RPC call sent as text/plain to a lenient app cannot slip past the gate.
        gate = self.capability_gate
        if gate is not None and body and self._capability_denied(gate, body, headers):
            await problem_response(CAPABILITY_DENIED, request_id=request_id)(scope, receive, send)
            return
        extracted: Extracted | None = None
        if body and _scope.is_json(media):
            try:
                doc: JSONValue = msgspec.json.decode(body)
            except msgspec.DecodeError:
                await problem_response(MalformedBody(), request_id=request_id)(scope, receive, send)
                return
            extracted = request_event(
                doc, method=scope["method"], path=scope["path"], subject=subject, event_id=request_id
            )
            outcome = self._enforce_request(extracted, doc, headers, scope, context, request_id)
            if isinstance(outcome, _Reply):
                await problem_response(outcome.problem, request_id=request_id, extra=outcome.extra)(
                    scope, receive, send
                )
                return
            if outcome is not None:
                body = outcome
                scope = _scope.with_content_length(scope, len(body))
        elif body and self.non_json == "reject":
            await problem_response(UnsupportedMediaType(), request_id=request_id)(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if self.scan_responses:
            guard = _ResponseGuard(self, send, request_id, extracted, subject, context)
            await self.app(scope, replay, guard)
        else:
            await self.app(scope, replay, send)

    def _capability_denied(self, gate: CapabilityGate, body: bytes, headers: Headers) -> bool:
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return False  # not JSON, so not a JSON-RPC call the gate covers
        verdict = gate.check_jsonrpc_body(doc, headers, service=self.capability_service)
        return isinstance(verdict, CapabilityDenied)

    # -- requests ------------------------------------------------------------------------------------------
    async def _read_body(self, receive: Receive, headers: Headers) -> bytes:
        declared = _scope.declared_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            raise BodyTooLarge()  # refuse before reading a byte of it
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _enforce_request(
        self,
        extracted: Extracted,
        doc: JSONValue,
        headers: Headers,
        scope: Scope,
        context: Mapping[str, object],
        request_id: str,
    ) -> _Reply | bytes | None:
        """A problem to answer with, a rewritten body to forward, or None to forward the body unchanged."""
        decision = self._evaluate(extracted.event, context, audit=True)
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
            approval = headers.get(self.approval_header)
            if approval:
                try:
                    self.lifecycle.execute(approval, actor=ACTOR, request_digest=digest)
                except LifecycleError as exc:
                    return _Reply(exc, {"decision_id": approval})
                self.stats.approvals_used += 1
                return None
            self.stats.requests_reviewed += 1
            severity = self.router.route(decision).severity
            self.lifecycle.create(decision.id, severity=severity, actor=ACTOR, request_digest=digest)
            return _Reply(REVIEW, {**extra, "approval_header": self.approval_header})
        if verdict is Verdict.REDACT:
            self.stats.requests_redacted += 1
            return msgspec.json.encode(apply_redaction(doc, decision, extracted))
        return None

    # -- evaluation ----------------------------------------------------------------------------------------
    def _evaluate(self, event: Event, context: Mapping[str, object], *, audit: bool) -> Decision | None:
        """The enforced decision, or None when evaluation failed (already logged, counted and audited)."""
        try:
            if audit:
                return self.evaluator.evaluate(event, context=context)
            policy = self.mesh.policy_for(event.subject.tenant)
            ctx, timings = self.mesh.pipeline.run(event, policy)
            decision = decide(ctx, timings)
            return decision if self.policy is None else apply_policy(decision, event, self.policy, context=context)
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
            decision = self._evaluate(event, context, audit=False)
            if decision is None:
                verdict = Verdict.BLOCK if self.fail_mode is FailMode.CLOSED else Verdict.ALLOW
                return Decision(event_id=event.id, event_type="model.output", subject=subject, verdict=verdict)
            return decision

        return scan


@dataclass(frozen=True, slots=True)
class _Reply:
    problem: ProblemType | BaseException  # an exception is mapped through the problems table
    extra: Mapping[str, object] | None = None


class _ResponseGuard:
    """Wraps `send`: holds the response start, then passes, buffers or stream-redacts the body."""

    def __init__(
        self,
        mw: CisoraMiddleware,
        send: Send,
        request_id: str,
        request: Extracted | None,
        subject: Subject,
        context: Mapping[str, object],
    ) -> None:
        self.mw = mw
        self.downstream = send
        self.request_id = request_id
        self.request = request
        self.subject = subject
        self.context = context
        self.start: Message | None = None
        self.started = False
        self.mode: Literal["pass", "json", "text", "stream"] | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.stream: StreamRedactor | None = None
        self.sse = False
        self.done = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("the application sent a second http.response.start")
            self.start = message
            return
        if kind != "http.response.body":
            await self._send_start()
            await self.downstream(message)  # trailers, pathsend, ...: not ours to inspect
            return
        if self.done:
            return  # a blocked stream: swallow whatever the app still sends
        if self.mode is None:
            self.mode = self._choose_mode(message)
        more = bool(message.get("more_body", False))
        chunk: bytes = message.get("body", b"")
        if self.mode == "pass":
            await self._send_start()
            await self.downstream(message)
        elif self.mode == "stream":
            await self._stream(chunk, more)
        else:
            self.chunks.append(chunk)
            self.size += len(chunk)
            if self.size > self.mw.max_response_bytes:
                # Too big to hold: fall back to incremental redaction of what we have and what follows.
                self.mode = "stream"
                held, self.chunks = b"".join(self.chunks), []
                await self._stream(held, more)
            elif not more:
                await self._finish_buffered(b"".join(self.chunks))

    def _choose_mode(self, first: Message) -> Literal["pass", "json", "text", "stream"]:
        if self.start is None:
            return "pass"
        headers = Headers(raw=self.start["headers"])
        encoding = headers.get("content-encoding", "identity").lower()
        status = int(self.start["status"])
        media = _scope.media_type(headers)
        if encoding != "identity" or status in (204, 304):
            return "pass"  # compressed bodies cannot be scanned here; mount the middleware inside GZip
        if media == "text/event-stream":
            self.sse = True
            return "stream"
        if _scope.is_json(media):
            return "json"
        if _scope.is_text(media):
            return "stream" if first.get("more_body", False) else "text"
        return "pass"

    async def _send_start(self, *, drop_length: bool = False) -> None:
        if self.started or self.start is None:
            return
        start = self.start
        if drop_length:
            headers = MutableHeaders(raw=list(start["headers"]))
            del headers["content-length"]
            start = {**start, "headers": headers.raw}
        self.started = True
        await self.downstream(start)

    async def _reply(self, status_start: Message, body: bytes) -> None:
        self.started = True
        await self.downstream(status_start)
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})

    async def _problem(self, decision_id: str | None) -> None:
        body = problem_body(
            RESPONSE_BLOCKED, request_id=self.request_id, extra={"decision_id": decision_id} if decision_id else None
        )
        start: Message = {
            "type": "http.response.start",
            "status": RESPONSE_BLOCKED.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
        await self._reply(start, body)

    async def _finish_buffered(self, body: bytes) -> None:
        mw = self.mw
        if not body or self.start is None:
            await self._send_start()
            await self.downstream({"type": "http.response.body", "body": body, "more_body": False})
            return
        extracted, doc = self._response_event(body)
        decision = mw._evaluate(extracted.event, self.context, audit=True)
        if decision is None and mw.fail_mode is FailMode.CLOSED:
            await self._problem(None)
            return
        if decision is not None and decision.verdict in (Verdict.BLOCK, Verdict.REVIEW):
            # A response cannot wait for a reviewer: review withholds it like a block, naming the decision.
            mw.stats.responses_blocked += 1
            await self._problem(decision.id)
            return
        if decision is not None and decision.verdict is Verdict.REDACT:
            mw.stats.responses_redacted += 1
            if doc is _NOT_JSON:
                body = self._redact_text(body, decision, extracted)
            else:
                body = msgspec.json.encode(apply_redaction(doc, decision, extracted))  # type: ignore[arg-type]
            headers = MutableHeaders(raw=list(self.start["headers"]))
            headers["content-length"] = str(len(body))
            self.start = {**self.start, "headers": headers.raw}
        await self._send_start()
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})

    def _response_event(self, body: bytes) -> tuple[Extracted, object]:
        event_id = new_id()
        if self.mode == "json":
            try:
                doc: JSONValue = msgspec.json.decode(body)
            except msgspec.DecodeError:
                pass  # the app's own malformed JSON: scan it as text rather than not at all
            else:
                return response_event(doc, self.request, subject=self.subject, event_id=event_id), doc
        text = body.decode("utf-8", errors="replace")
        return text_event(text, subject=self.subject, event_id=event_id), _NOT_JSON

    @staticmethod
    def _redact_text(body: bytes, decision: Decision, extracted: Extracted) -> bytes:
        text = extracted.event.text if isinstance(extracted.event, ModelOutput) else ""
        spans = [
            (f.start, f.end, f.label or "SENSITIVE")
            for f in redaction_findings(decision)
            if f.start is not None and f.end is not None
        ]
        return redact(text, spans).encode("utf-8") if spans else body

    async def _stream(self, chunk: bytes, more: bool) -> None:
        mw = self.mw
        if self.stream is None:
            self.stream = StreamRedactor(mw.scan_stream_text(self.subject, self.context), holdback=mw.holdback_chars)
        stream = self.stream
        alert = mw.stream_mode == "alert"
        released = stream.feed_bytes(chunk, final=not more)
        if stream.blocked and not alert:
            mw.stats.responses_blocked += 1
            self.done = True
            decision = self._record_stream()
            if not self.started:
                await self._problem(decision.id)
                return
            tail = b""
            if self.sse:  # tell an SSE client why the stream ends, in-band
                tail = b"event: error\ndata: " + problem_body(RESPONSE_BLOCKED, request_id=self.request_id) + b"\n\n"
            await self.downstream({"type": "http.response.body", "body": tail, "more_body": False})
            return
        if alert:
            await self._send_start()
            await self.downstream({"type": "http.response.body", "body": chunk, "more_body": more})
        else:
            await self._send_start(drop_length=True)  # redaction changes the length
            if released or not more:
                await self.downstream(
                    {"type": "http.response.body", "body": released.encode("utf-8"), "more_body": more}
                )
        if not more:
            self.done = True
            self._record_stream()

    def _record_stream(self) -> Decision:
        """One audited decision for a whole stream (chunk scans are not audited one by one)."""
        stream = self.stream
        if stream is None:  # pragma: no cover - only called once a stream exists
            raise RuntimeError("no stream")
        mw = self.mw
        if stream.findings and stream.verdict is Verdict.REDACT and mw.stream_mode == "redact":
            mw.stats.streams_redacted += 1
        tag = "asgi:stream-alert-only" if mw.stream_mode == "alert" else "asgi:stream-redact"
        event = ModelOutput(subject=self.subject, text="")  # the stream's text is not kept: the audit holds spans
        decision = Decision(
            event_id=event.id,
            event_type="model.output",
            subject=self.subject,
            verdict=stream.verdict,
            findings=tuple(stream.findings),
            policy_ids=(tag,),
        )
        if mw.mesh.audit is not None:
            mw.mesh.audit.append_decision(decision, event)
        return decision


_NOT_JSON: Final = object()
