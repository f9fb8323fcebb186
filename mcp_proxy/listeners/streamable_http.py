"""The streamable-HTTP front at `/mcp`, both protocol eras.

- Handshake era (2025-11-25 and earlier): one SDK `StreamableHTTPServerTransport` per `Mcp-Session-Id` (SSE,
  GET stream, DELETE, resumption all handled by the SDK), each bridged into its own `Session` pump with its own
  upstream connection (a stream connection is locked to the era of its first message, libraries.md 1.5).
- 2026-07-28: single POST exchanges without a session. The `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`
  headers must agree with the body (else 400), request ids are remapped so concurrent clients cannot collide, and
  all modern traffic shares one upstream connection. A request with a `progressToken` from a client that accepts
  `text/event-stream` is answered as SSE: its progress notifications (token remapped back), then the response;
  other requests get one JSON response.

Every request first passes the Host and Origin checks (DNS-rebinding protection). The client's `Authorization`
header is never forwarded: upstreams are separate connections that the proxy opens with its own credentials.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from mcp_proxy import jsonrpc
from mcp_proxy.app import Runtime
from mcp_proxy.config import server_name_for
from mcp_proxy.errors import ProxyConfigError
from mcp_proxy.forward import Session
from mcp_proxy.jsonrpc import RequestId
from mcp_proxy.listeners.oauth import AuthFailure, JwtVerifier, encode_metadata, metadata_path
from mcp_proxy.telemetry import MessageSpans
from mcp_proxy.upstream import Upstream

logger = logging.getLogger("mcp_proxy.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]

MODERN = "2026-07-28"
_META_VERSION = "io.modelcontextprotocol/protocolVersion"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json", extra: Sequence[Any] = ()
) -> None:
    # An explicit length avoids chunked encoding: one fewer small write per answer (and no Nagle stall on it).
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _LegacyDownstream:
    """Session output -> SDK transport write stream, tagged with the request it belongs to (so it lands on the
    right POST SSE stream); messages without one go to the GET stream."""

    def __init__(self, write: Any, progress: dict[Any, Any]) -> None:
        from mcp.shared.message import ServerMessageMetadata, SessionMessage
        from mcp.types import jsonrpc_message_adapter

        self._write = write
        self._progress = progress
        self._adapter = jsonrpc_message_adapter
        self._meta = ServerMessageMetadata
        self._message = SessionMessage
        self.closed = False

    async def send(self, frame: bytes) -> None:
        if self.closed:
            return
        env = jsonrpc.decode(frame)
        related: Any = None
        if env.is_response:
            related = env.id
        elif env.method == "notifications/progress":
            params = jsonrpc.load(env.params)
            if isinstance(params, dict):
                related = self._progress.get(params.get("progressToken"))
        try:
            message = self._adapter.validate_json(frame)
        except ValueError:  # pydantic's ValidationError: a frame the SDK transport cannot carry
            logger.warning("dropped a message the HTTP transport cannot carry (%d bytes)", len(frame))
            return
        metadata = self._meta(related_request_id=related) if related is not None else None
        try:
            await self._write.send(self._message(message, metadata=metadata))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.closed = True


async def _legacy_frames(read: Any, progress: dict[Any, Any]) -> AsyncIterator[bytes]:
    async for item in _until_closed(read):
        yield _client_frame(item, progress)


async def _until_closed(read: Any) -> AsyncIterator[Any]:
    # The SDK closes the stream when the session is deleted or the server shuts down: that is a normal end.
    while True:
        try:
            item = await read.receive()
        except (anyio.ClosedResourceError, anyio.EndOfStream):
            return
        if isinstance(item, Exception):
            logger.warning("dropped an unreadable client message: %s", type(item).__name__)
            continue
        yield item


def _client_frame(item: Any, progress: dict[Any, Any]) -> bytes:
    message = item.message
    frame: bytes = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
    params = getattr(message, "params", None)
    if isinstance(params, dict):
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            # Progress for this request must go back on the request's own SSE stream.
            progress[meta["progressToken"]] = message.id
    return frame


@dataclass(slots=True)
class _Call:
    """One 2026-07-28 request in flight through the hub."""

    original_id: Any
    token: Any  # the client's progress token (None: progress is not relayed for this request)
    out: MemoryObjectSendStream[tuple[bool, bytes]]  # (is the answer, frame)


class _ModernHub:
    """All 2026-07-28 traffic through one `Session` and one upstream.

    Request ids and progress tokens are remapped to proxy-unique ones (two clients may both use id 1 or token "t"),
    so each response and each `notifications/progress` finds the POST it belongs to.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._calls: dict[str, _Call] = {}  # proxy request id -> call
        self._tokens: dict[str, str] = {}  # proxy progress token -> proxy request id
        self._send, self._recv = anyio.create_memory_object_stream[bytes](1024)
        self.closed = False

    def frames(self) -> AsyncIterator[bytes]:
        return self._recv.__aiter__()

    def original_id(self, rid: RequestId) -> RequestId:
        """The client's id of a request in flight under proxy id `rid` (for telemetry); `rid` if unknown."""
        call = self._calls.get(rid) if isinstance(rid, str) else None
        return call.original_id if call is not None else rid

    def close(self) -> None:
        self.closed = True
        self._send.close()

    def close_reader(self) -> None:
        self._recv.close()

    async def send(self, frame: bytes) -> None:
        env = jsonrpc.decode(frame)
        if env.is_response and isinstance(env.id, str):
            call = self._calls.get(env.id)
            if call is not None:
                message = msgspec.json.decode(frame)
                message["id"] = call.original_id
                # Never blocks: progress leaves one slot free for the answer (see below).
                call.out.send_nowait((True, jsonrpc.dumps(message)))
            return
        if env.method == "notifications/progress":
            params = jsonrpc.load(env.params)
            token = params.get("progressToken") if isinstance(params, dict) else None
            call = self._calls.get(self._tokens.get(token, "")) if isinstance(token, str) else None
            if call is None or call.out.statistics().current_buffer_used >= _STREAM_BUFFER - 1:
                return  # not ours, or a client too slow to read its progress: drop progress, never the answer
            assert isinstance(params, dict)
            relayed = {"jsonrpc": "2.0", "method": env.method, "params": {**params, "progressToken": call.token}}
            call.out.send_nowait((False, jsonrpc.dumps(relayed)))
        # Anything else has no POST to ride on (the 2026-07-28 era has no server-initiated requests).

    async def call(
        self, message: dict[str, Any], wait: float, progress: Callable[[bytes], Awaitable[None]] | None = None
    ) -> bytes | None:
        """Forward one message and return its answer (None for a notification).

        With `progress`, the request's progress notifications are passed to it (token restored) as they arrive.
        """
        if "id" not in message:
            await self._send.send(jsonrpc.dumps(message))
            return None
        proxy_id = f"modern-{next(self._ids)}"
        token = _progress_token(message) if progress is not None else None
        out, inbox = anyio.create_memory_object_stream[tuple[bool, bytes]](_STREAM_BUFFER)
        self._calls[proxy_id] = _Call(message["id"], token, out)
        forwarded = {**message, "id": proxy_id}
        if token is not None:
            self._tokens[proxy_id] = proxy_id
            params = message["params"]
            forwarded["params"] = {**params, "_meta": {**params["_meta"], "progressToken": proxy_id}}
        try:
            await self._send.send(jsonrpc.dumps(forwarded))
            with anyio.move_on_after(wait):
                async for is_answer, frame in inbox:
                    if is_answer:
                        return frame
                    if progress is not None:
                        await progress(frame)
        finally:
            self._calls.pop(proxy_id, None)
            self._tokens.pop(proxy_id, None)
            out.close()
            inbox.close()
        return jsonrpc.error_frame(message["id"], jsonrpc.INTERNAL_ERROR, "the upstream did not answer in time")


_STREAM_BUFFER: Final = 64


def _progress_token(message: dict[str, Any]) -> Any:
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


class Pump(Protocol):
    async def run(self, client_frames: Any) -> None: ...


def pump_factory(
    runtime: Runtime, *, upstream_url: str | None, command: Sequence[str], name: str | None
) -> Callable[[Any, str | None], Pump]:
    """What each HTTP session (and the shared 2026-07-28 hub) pumps into: one server, or the configured router."""
    settings = runtime.settings
    if upstream_url or command:
        server = name or (server_name_for(list(command)) if command else "upstream")

        def make_upstream() -> Upstream:
            if upstream_url:
                from mcp_proxy.upstream.streamable_http import HttpUpstream

                return HttpUpstream(server, upstream_url, backoff_max=settings.restart_backoff_max)
            from mcp_proxy.upstream.stdio import StdioUpstream

            return StdioUpstream(
                server, command, max_frame=settings.max_frame_bytes, backoff_max=settings.restart_backoff_max
            )

        def single(downstream: Any, session_id: str | None) -> Pump:
            pins = runtime.pin_guard({server: settings.pinning})
            upstream = make_upstream()
            spans = runtime.spans("tcp", upstream, _traced_session(session_id))
            spans.client_id = getattr(downstream, "original_id", None)
            return Session(downstream, upstream, inspector=runtime.inspector(session_id), pins=pins, spans=spans)

        return single
    if not settings.servers:
        raise ProxyConfigError("give --upstream URL, -- CMD, or [[proxy.servers]] in the config")
    from mcp_proxy.app import build_upstreams, pin_modes
    from mcp_proxy.router import Router

    def multi(downstream: Any, session_id: str | None) -> Pump:
        return Router(
            downstream,
            build_upstreams(settings),
            inspector=runtime.inspector(session_id),
            pins=runtime.pin_guard(pin_modes(settings)),
            spans=lambda upstream: _client_ids(runtime.spans("tcp", upstream, _traced_session(session_id)), downstream),
        )

    return multi


def _client_ids(spans: MessageSpans, downstream: Any) -> MessageSpans:
    spans.client_id = getattr(downstream, "original_id", None)
    return spans


def _traced_session(session_id: str | None) -> str | None:
    # "modern" names the shared 2026-07-28 pump, not an MCP session (that era has none): no mcp.session.id.
    return None if session_id == "modern" else session_id


class McpHttpApp:
    """ASGI app serving `/mcp` (mounted as a class instance so Starlette passes the raw ASGI triple)."""

    def __init__(
        self,
        runtime: Runtime,
        make_pump: Callable[[Any, str | None], Pump],
        *,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        request_timeout: float = 300.0,
        verifier: JwtVerifier | None = None,
    ) -> None:
        self.runtime = runtime
        self.make_pump = make_pump
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_origins = {o.lower().rstrip("/") for o in allowed_origins}
        self.request_timeout = request_timeout
        self.verifier = verifier
        self._owners: dict[str, str] = {}  # legacy session id -> token subject that created it
        self._sessions: dict[str, Any] = {}
        self._tg: TaskGroup | None = None
        self._modern: _ModernHub | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            hub = _ModernHub()
            self._modern = hub
            tg.start_soon(self.make_pump(hub, "modern").run, hub.frames())
            yield
            # Shutdown: end every legacy session (the SDK closes its streams) and the modern hub, then the pumps.
            for transport in list(self._sessions.values()):
                await transport.terminate()
            hub.close()
            tg.cancel_scope.cancel()
        hub.close_reader()

    def _check_host_origin(self, scope: Scope) -> tuple[int, str] | None:
        host = (_header(scope, b"host") or "").lower()
        if host not in self.allowed_hosts:
            return 421, "Misdirected Request: Host header not allowed"
        origin = _header(scope, b"origin")
        if origin is not None and origin.lower().rstrip("/") not in self.allowed_origins:
            return 403, "Forbidden: Origin not allowed"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        refused = self._check_host_origin(scope)
        if refused is not None:
            status, text = refused
            body = jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, text, jsonrpc.problem("forbidden-origin", text))
            await _respond(send, status, body)
            return
        subject: str | None = None
        if self.verifier is not None:
            try:
                subject = self.verifier.verify(_header(scope, b"authorization")).subject
            except AuthFailure as failure:
                body = jsonrpc.error_frame(
                    None,
                    jsonrpc.INVALID_REQUEST,
                    failure.description,
                    jsonrpc.problem("unauthorized", failure.description),
                )
                challenge = self.verifier.www_authenticate(failure).encode()
                await _respond(send, failure.status, body, extra=[(b"www-authenticate", challenge)])
                return
            session_id = _header(scope, b"mcp-session-id")
            # A session belongs to the credential that created it; anyone else is told it does not exist.
            if session_id is not None and self._owners.get(session_id, subject) != subject:
                await _respond(send, 404, jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, "Session not found"))
                return
        scope.setdefault("state", {})["cisora.subject"] = subject
        version = _header(scope, b"mcp-protocol-version")
        if version == MODERN and scope["method"] == "POST" and _header(scope, b"mcp-session-id") is None:
            await self._modern_post(scope, receive, send)
            return
        await self._legacy(scope, receive, send)

    async def _legacy(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mcp.server.streamable_http import StreamableHTTPServerTransport
        from mcp.server.transport_security import TransportSecuritySettings

        session_id = _header(scope, b"mcp-session-id")
        if session_id is not None:
            transport = self._sessions.get(session_id)
            if transport is None:
                body = jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, "Session not found")
                await _respond(send, 404, body)
                return
            await transport.handle_request(scope, receive, send)
            return
        if scope["method"] != "POST":
            body = jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id")
            await _respond(send, 400, body)
            return
        new_id = uuid.uuid4().hex
        subject = scope.get("state", {}).get("cisora.subject")
        if subject is not None:
            self._owners[new_id] = subject
        # Host/Origin were checked above; the SDK's own check would reject our configured names.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        transport = StreamableHTTPServerTransport(mcp_session_id=new_id, security_settings=security)
        assert self._tg is not None
        await self._tg.start(self._run_legacy, new_id, transport)
        await transport.handle_request(scope, receive, send)

    async def _run_legacy(self, session_id: str, transport: Any, *, task_status: TaskStatus[None]) -> None:
        self._sessions[session_id] = transport
        try:
            async with transport.connect() as (read, write):
                task_status.started()
                progress: dict[Any, Any] = {}
                downstream = _LegacyDownstream(write, progress)
                session = self.make_pump(downstream, session_id)
                await session.run(_legacy_frames(read, progress))
        except Exception:
            # One broken session must not take the app's task group (and every other session) down with it.
            logger.exception("session %s failed", session_id)
        finally:
            self._sessions.pop(session_id, None)
            self._owners.pop(session_id, None)

    async def _modern_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        limit = self.runtime.settings.max_frame_bytes
        while True:
            event = await receive()
            body += event.get("body", b"")
            if len(body) > limit:
                await _respond(send, 413, jsonrpc.error_frame(None, jsonrpc.FRAME_TOO_LARGE, "request too large"))
                return
            if not event.get("more_body"):
                break
        try:
            jsonrpc.decode(bytes(body))
            message = msgspec.json.decode(bytes(body))
        except (jsonrpc.FrameError, msgspec.DecodeError) as exc:
            code = exc.code if isinstance(exc, jsonrpc.FrameError) else jsonrpc.PARSE_ERROR
            await _respond(send, 400, jsonrpc.error_frame(None, code, str(exc)))
            return
        mismatch = _header_mismatch(scope, message)
        if mismatch is not None:
            data = jsonrpc.problem("header-mismatch", "HeaderMismatch", detail=mismatch)
            await _respond(send, 400, jsonrpc.error_frame(message.get("id"), jsonrpc.INVALID_REQUEST, mismatch, data))
            return
        assert self._modern is not None
        accept = _header(scope, b"accept") or ""
        if "id" in message and "text/event-stream" in accept and _progress_token(message) is not None:
            # The client asked for progress and accepts SSE: answer on an event stream carrying the progress
            # notifications, then the response (streamable HTTP, MCP 2026-07-28 / 2025-11-25 "Sending Messages
            # to the Server": the server MAY send notifications related to the request before its response).
            await self._modern_sse(send, message)
            return
        answer = await self._modern.call(message, self.request_timeout)
        if answer is None:
            await _respond(send, 202, b"")
            return
        await _respond(send, 200, answer)

    async def _modern_sse(self, send: Send, message: dict[str, Any]) -> None:
        assert self._modern is not None
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def event(frame: bytes) -> None:
            await send(
                {"type": "http.response.body", "body": b"event: message\ndata: " + frame + b"\n\n", "more_body": True}
            )

        answer = await self._modern.call(message, self.request_timeout, progress=event)
        assert answer is not None  # a request always gets an answer (or the timeout error)
        await event(answer)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _header_mismatch(scope: Scope, message: dict[str, Any]) -> str | None:
    method = message.get("method")
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    header_method = _header(scope, b"mcp-method")
    if header_method is not None and header_method != method:
        return f"Mcp-Method header {header_method!r} does not match the body's method {method!r}"
    header_name = _header(scope, b"mcp-name")
    if header_name is not None:
        body_name = params.get("name") if method in ("tools/call", "prompts/get") else params.get("uri")
        if body_name is not None and header_name != body_name:
            return "Mcp-Name header does not match the body"
    raw_meta = params.get("_meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    body_version = meta.get(_META_VERSION)
    if body_version is not None and body_version != MODERN:
        return "MCP-Protocol-Version header does not match the body's protocol version"
    return None


def _allowed(
    host: str, port: int, extra_hosts: Sequence[str], extra_origins: Sequence[str]
) -> tuple[list[str], list[str]]:
    names = {host, "127.0.0.1", "localhost", "[::1]"}
    hosts = [f"{n}:{port}" for n in names] + list(extra_hosts)
    origins = [f"{scheme}://{n}:{port}" for n in names for scheme in ("http", "https")] + list(extra_origins)
    return hosts, origins


def build_app(
    runtime: Runtime, *, host: str, port: int, upstream_url: str | None, command: Sequence[str], name: str | None
) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    settings = runtime.settings
    make_pump = pump_factory(runtime, upstream_url=upstream_url, command=command, name=name)
    hosts, origins = _allowed(host, port, settings.http.allowed_hosts, settings.http.allowed_origins)
    verifier = JwtVerifier(settings.http.oauth) if settings.http.oauth is not None else None
    mcp_app = McpHttpApp(runtime, make_pump, allowed_hosts=hosts, allowed_origins=origins, verifier=verifier)
    routes = [Route("/mcp", endpoint=mcp_app, methods=["GET", "POST", "DELETE"])]
    if verifier is not None:
        metadata = encode_metadata(verifier)

        async def protected_resource(scope: Scope, receive: Receive, send: Send) -> None:
            await _respond(send, 200, metadata)

        path = metadata_path(verifier.settings.resource)
        routes.append(Route(path, endpoint=_AsgiEndpoint(protected_resource), methods=["GET"]))
    return Starlette(routes=routes, lifespan=mcp_app.lifespan)


class _AsgiEndpoint:
    """Starlette treats a class instance as a raw ASGI app (a plain function would be a request handler)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def serve_http(
    runtime: Runtime, *, host: str, port: int, upstream_url: str | None, command: Sequence[str], name: str | None
) -> None:
    import uvicorn

    app = build_app(runtime, host=host, port=port, upstream_url=upstream_url, command=command, name=name)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")
