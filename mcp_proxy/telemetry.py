"""One OpenTelemetry span per JSON-RPC message the proxy forwards, with the MCP semantic-convention attributes.

Span shape (the same names and attributes as the MCP SDK's own server middleware, plus what it leaves out):

- name: ``"{method}"``, or ``"{method} {name}"`` for `tools/call` and `prompts/get` (e.g. ``"tools/call echo"``).
  A response is named after the request it answers.
- kind: ``SERVER`` for every message arriving from the client (the proxy is the client's server) and ``CLIENT`` for
  every message arriving from an upstream server (the proxy is that server's client).
- attributes: ``mcp.method.name``, ``mcp.protocol.version`` (from `initialize`, or per request from the 2026-07-28
  ``_meta`` key), ``mcp.session.id`` (HTTP sessions), ``jsonrpc.request.id``, ``network.transport`` of the side the
  message came from (``pipe`` for stdio, ``tcp`` for HTTP), ``gen_ai.operation.name=execute_tool`` and
  ``gen_ai.tool.name`` on `tools/call`, ``gen_ai.prompt.name`` on `prompts/get`, ``mcp.resource.uri`` on
  `resources/*`; on an error response ``error.type`` (the JSON-RPC code, or ``tool_error`` for ``isError``),
  ``rpc.response.status_code`` and status ERROR; ``cisora.decision.id``/``cisora.verdict`` when inspected.
- parent: the W3C trace context (``traceparent``/``tracestate``) in ``params._meta`` (SEP-414, W3C Trace Context
  Level 1 §3.2) when the message carries one; a response is the child of its request's span.
- duration: from arrival to the moment the proxy has decided what to forward (inspection included).

Propagation upstream: when a client request carries a ``traceparent``, the proxy overwrites that value in place with
its own span's (both are 55 bytes in version ``00``, so the frame is spliced, never re-encoded), and the server's
spans become children of the proxy's. A message without one is forwarded unchanged: adding a ``_meta`` key would
mean re-encoding every frame. A frame the proxy rebuilds anyway (a redacted call) keeps the client's value.

Never on a span: payload text, arguments, results, tokens or other secrets (only names, ids, codes and verdicts).

Cost: with no tracer provider configured (the OpenTelemetry default) each message costs a clock read (the global
provider is looked up once a second, so one installed later is picked up within a second) and no allocation;
attributes are only built when ``span.is_recording()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cisora_mesh.telemetry import semconv as sc

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from cisora_mesh.events import Decision
    from mcp_proxy.jsonrpc import Envelope, RequestId

Transport = Literal["pipe", "tcp"]

_META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
_NAMED: Final = frozenset({"tools/call", "prompts/get"})
_W3C: Final = TraceContextTextMapPropagator()
# W3C Trace Context §3.2: version "00" is 2+1+32+1+16+1+2 = 55 characters.
_TRACEPARENT_LEN: Final = 55
_TOOL_ERROR: Final = re.compile(rb'"isError"\s*:\s*true')
_LOOK_EVERY: Final = 1.0
_MAX_SERVER_REQUESTS: Final = 1024


class _Meta(msgspec.Struct):
    traceparent: str | None = None
    tracestate: str | None = None
    version: str | None = msgspec.field(name=_META_VERSION, default=None)


class _Params(msgspec.Struct):
    """Only what a span needs from `params`; msgspec skips everything else without building it."""

    meta: _Meta | None = msgspec.field(name="_meta", default=None)
    name: Any = None
    uri: Any = None
    protocolVersion: Any = None  # the wire name (initialize)


class _Error(msgspec.Struct):
    code: Any = None


class _Version(msgspec.Struct):
    protocolVersion: Any = None  # the wire name (initialize result)


_params_decoder: Final = msgspec.json.Decoder(_Params)
_error_decoder: Final = msgspec.json.Decoder(_Error)
_version_decoder: Final = msgspec.json.Decoder(_Version)


def _params(raw: msgspec.Raw) -> _Params | None:
    if not len(raw):
        return None
    try:
        return _params_decoder.decode(raw)
    except msgspec.DecodeError:  # includes ValidationError: params that are not an object
        return None


class ProxyTelemetry:
    """Process-wide: where the proxy's tracer comes from.

    Args:
        provider: the tracer provider to use; None means the global one (``opentelemetry.trace``), looked up until
            one is installed, so spans start flowing whenever the embedding application configures OpenTelemetry.
            Do not pass the audit store's provider (``audit_tracer_provider``): message spans are not decisions.
    """

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = None
        self._off = False
        self._next_look = 0.0  # monotonic time of the next look at the global provider

    def tracer(self) -> Tracer | None:
        """The tracer, or None while tracing is off (no provider, or a no-op one): callers then do nothing."""
        if self._tracer is not None:
            return self._tracer
        if self._off:
            return None
        provider = self._provider
        if provider is None:
            # Looking the global provider up reads the environment (~1 us): once a second is enough to notice an
            # application installing one, and keeps an untraced proxy at one clock read per message.
            now = time.monotonic()
            if now < self._next_look:
                return None
            self._next_look = now + _LOOK_EVERY
            provider = trace.get_tracer_provider()
        if isinstance(provider, ProxyTracerProvider):
            return None  # nothing installed yet
        tracer = provider.get_tracer(sc.PROXY_TRACER_NAME)
        if isinstance(provider, NoOpTracerProvider) or isinstance(tracer, NoOpTracer):
            self._off = True  # an explicit no-op provider (or OTEL_SDK_DISABLED) stays off
            return None
        self._tracer = tracer
        return tracer

    def session(self, *, front: Transport, upstream: Transport = "pipe", session_id: str | None = None) -> MessageSpans:
        return MessageSpans(self, front=front, upstream=upstream, session_id=session_id)


@dataclass(slots=True)
class Traced:
    """A request's span context, kept until its response so the response span can be its child."""

    context: Context | None = None


@dataclass(slots=True)
class MessageSpans:
    """The spans of one proxy session (one client, one upstream)."""

    telemetry: ProxyTelemetry
    front: Transport
    upstream: Transport
    session_id: str | None = None
    protocol_version: str | None = None
    # server-to-client request id -> method, so the client's answer can be named (at most 1024 kept)
    server_requests: dict[RequestId, str] = field(default_factory=dict)
    # The client's own id for a request the front renamed (the 2026-07-28 hub makes ids unique across POSTs).
    client_id: Callable[[RequestId], RequestId] | None = None

    # --- client -> proxy ------------------------------------------------------------------------------------------

    def from_client(self, env: Envelope, frame: bytes) -> tuple[Span | None, bytes]:
        """Start the span of a client message; returns it and the frame to forward (traceparent spliced)."""
        tracer = self.telemetry.tracer()
        if tracer is None:
            return None, frame
        if env.method is msgspec.UNSET:  # the client's answer to a server request
            rid = env.id if isinstance(env.id, int | str) else None
            method = self.server_requests.pop(rid, "response") if rid is not None else "response"
            span = tracer.start_span(method, kind=SpanKind.SERVER)
            if span.is_recording():
                self._common(span, method, rid, self.front, None)
                self._error(span, env)
            return span, frame
        method = str(env.method)
        params = _params(env.params)
        if method == "initialize" and params is not None and isinstance(params.protocolVersion, str):
            self.protocol_version = params.protocolVersion
        span = self._start(tracer, method, params, SpanKind.SERVER, None)
        if span.is_recording():
            rid = env.id if isinstance(env.id, int | str) else None
            if rid is not None and self.client_id is not None:
                rid = self.client_id(rid)
            self._common(span, method, rid, self.front, params)
            frame = _propagate(span, params, frame)
        return span, frame

    # --- upstream -> proxy ----------------------------------------------------------------------------------------

    def from_upstream(
        self, env: Envelope, *, method: str | None = None, tool: str | None = None, parent: Context | None = None
    ) -> Span | None:
        """Start the span of an upstream message; `method`/`tool`/`parent` describe the request a response answers."""
        tracer = self.telemetry.tracer()
        if tracer is None:
            return None
        rid = env.id if isinstance(env.id, int | str) else None
        if env.method is msgspec.UNSET:  # a response
            name = method or "response"
            if tool is not None and name in _NAMED:
                name = f"{name} {tool}"
            span = tracer.start_span(name, context=parent, kind=SpanKind.CLIENT)
            if span.is_recording():
                if rid is not None and self.client_id is not None:
                    rid = self.client_id(rid)  # it answers a client request: name it by the client's id
                self._common(span, method or "response", rid, self.upstream, None)
                if tool is not None:
                    span.set_attribute(sc.GEN_AI_TOOL_NAME, tool)
                if method == "initialize" and len(env.result):
                    self._note_version(env.result)
                self._error(span, env)
            return span
        req_method = str(env.method)
        params = _params(env.params)
        if rid is not None:
            if len(self.server_requests) >= _MAX_SERVER_REQUESTS:  # never answered: forget the oldest
                del self.server_requests[next(iter(self.server_requests))]
            self.server_requests[rid] = req_method
        span = self._start(tracer, req_method, params, SpanKind.CLIENT, None)
        if span.is_recording():
            self._common(span, req_method, rid, self.upstream, params)
        return span

    # --- helpers --------------------------------------------------------------------------------------------------

    def _start(self, tracer: Tracer, method: str, params: _Params | None, kind: SpanKind, parent: Any) -> Span:
        name = method
        if params is not None and method in _NAMED and isinstance(params.name, str):
            name = f"{method} {params.name}"
        meta = params.meta if params is not None else None
        context = parent
        if meta is not None and meta.traceparent is not None:
            carrier = {"traceparent": meta.traceparent}
            if meta.tracestate is not None:
                carrier["tracestate"] = meta.tracestate
            # An invalid traceparent extracts to an empty context (W3C §4.3: restart the trace), never an error.
            context = _W3C.extract(carrier)
        return tracer.start_span(name, context=context, kind=kind)

    def _common(
        self, span: Span, method: str, rid: RequestId | None, transport: Transport, params: _Params | None
    ) -> None:
        span.set_attribute(sc.MCP_METHOD_NAME, method)
        span.set_attribute(sc.NETWORK_TRANSPORT, transport)
        if rid is not None:
            span.set_attribute(sc.JSONRPC_REQUEST_ID, str(rid))  # semconv: a string whatever its JSON type
        version = self.protocol_version
        if params is not None and params.meta is not None and params.meta.version is not None:
            version = params.meta.version  # 2026-07-28: every request names its version
        if version is not None:
            span.set_attribute(sc.MCP_PROTOCOL_VERSION, version)
        if self.session_id is not None:
            span.set_attribute(sc.MCP_SESSION_ID, self.session_id)
        if params is None:
            return
        if method == "tools/call" and isinstance(params.name, str):
            span.set_attribute(sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_OPERATION_EXECUTE_TOOL)
            span.set_attribute(sc.GEN_AI_TOOL_NAME, params.name)
        elif method == "prompts/get" and isinstance(params.name, str):
            span.set_attribute(sc.GEN_AI_PROMPT_NAME, params.name)
        elif method.startswith("resources/") and isinstance(params.uri, str):
            span.set_attribute(sc.MCP_RESOURCE_URI, params.uri)

    def _error(self, span: Span, env: Envelope) -> None:
        if len(env.error):
            try:
                code = _error_decoder.decode(env.error).code
            except msgspec.DecodeError:
                code = None
            error_type = str(code) if isinstance(code, int) else "jsonrpc_error"
            span.set_attribute(sc.ERROR_TYPE, error_type)
            span.set_attribute(sc.RPC_RESPONSE_STATUS_CODE, error_type)
            span.set_status(Status(StatusCode.ERROR, f"JSON-RPC error {error_type}"))
        elif len(env.result) and _TOOL_ERROR.search(env.result):
            # A tool that failed answers with a result, not an error (MCP spec 2025-11-25, tools: "isError").
            span.set_attribute(sc.ERROR_TYPE, "tool_error")
            span.set_status(Status(StatusCode.ERROR, "tool_error"))

    def _note_version(self, result: msgspec.Raw) -> None:
        try:
            version = _version_decoder.decode(result).protocolVersion
        except msgspec.DecodeError:
            return
        if isinstance(version, str):
            self.protocol_version = version  # the negotiated version wins over the client's offer


def context_of(span: Span | None) -> Context | None:
    """The context to parent a response's span on (None when there is no span)."""
    if span is None or not span.is_recording():
        return None
    return trace.set_span_in_context(span)


def note_decision(span: Span | None, decision: Decision | None) -> None:
    """Add the Cisora decision id and verdict to a message's span (never the findings' texts)."""
    if span is None or decision is None or not span.is_recording():
        return
    span.set_attribute(sc.CISORA_DECISION_ID, decision.id)
    span.set_attribute(sc.CISORA_VERDICT, str(decision.verdict))


def note_refused(span: Span | None, code: int) -> None:
    """The proxy answered the request itself with a JSON-RPC error (policy, pin, capability, fail-closed)."""
    if span is None or not span.is_recording():
        return
    span.set_attribute(sc.ERROR_TYPE, str(code))
    span.set_attribute(sc.RPC_RESPONSE_STATUS_CODE, str(code))
    span.set_status(Status(StatusCode.ERROR, f"refused by the proxy ({code})"))


def _propagate(span: Span, params: _Params | None, frame: bytes) -> bytes:
    """Replace the client's `_meta.traceparent` with this span's, in place (see the module docstring)."""
    meta = params.meta if params is not None else None
    old = meta.traceparent if meta is not None else None
    if old is None or len(old) != _TRACEPARENT_LEN or not old.isascii():
        return frame
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return frame
    needle = b'"' + old.encode() + b'"'
    at = frame.find(needle)
    if at < 0 or frame.find(needle, at + 1) >= 0:
        return frame  # escaped on the wire, or the same value elsewhere in the payload: leave it alone
    mine = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode()
    return frame[: at + 1] + mine + frame[at + 1 + _TRACEPARENT_LEN :]
