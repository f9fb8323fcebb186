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

import asyncio
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
from msgspec import UNSET

from mcp_proxy import jsonrpc
from mcp_proxy.app import Runtime
from mcp_proxy.config import server_name_for
from mcp_proxy.errors import ProxyConfigError
from mcp_proxy.forward import Session
from mcp_proxy.jsonrpc import Envelope, RequestId
from mcp_proxy.listeners.oauth import AuthFailure, JwtVerifier, encode_metadata, metadata_path
from mcp_proxy.telemetry import MessageSpans
from mcp_proxy.upstream import Upstream

logger = logging.getLogger("mcp_proxy.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]

MODERN = "2026-07-28"
_META_VERSION = "io.modelcontextprotocol/protocolVersion"


# The request headers the front reads, collected in one pass over the request (ASGI already lowercases names; the
# first occurrence wins, as it did when each was looked up on its own).
_READ: Final = frozenset(
    {
        b"host",
        b"origin",
        b"authorization",
        b"accept",
        b"mcp-session-id",
        b"mcp-protocol-version",
        b"mcp-method",
        b"mcp-name",
    }
)


def _headers(scope: Scope) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        key = bytes(key).lower()
        if key in _READ and key not in found:
            found[key] = bytes(value).decode("latin-1")
    return found


_JSON: Final = (b"content-type", b"application/json")


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json", extra: Sequence[Any] = ()
) -> None:
    # An explicit length avoids chunked encoding: one fewer small write per answer (and no Nagle stall on it).
    kind = _JSON if content_type == b"application/json" else (b"content-type", content_type)
    headers = [kind, (b"content-length", b"%d" % len(body)), *extra]
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
    answer: asyncio.Future[bytes] | None  # without progress: the answer, and nothing else, arrives here
    events: asyncio.Queue[tuple[bool, bytes]] | None  # with progress: (is the answer, frame), in arrival order


class _Params(msgspec.Struct):
    """What the front reads of a request's params (everything else, arguments included, stays undecoded)."""

    name: Any = None
    uri: Any = None
    meta: Any = msgspec.field(default=None, name="_meta")


_NO_PARAMS: Final = _Params()
_params_decoder: Final = msgspec.json.Decoder(_Params)


def _params(env: Envelope) -> _Params:
    if not len(env.params):
        return _NO_PARAMS
    try:
        return _params_decoder.decode(env.params)
    except msgspec.ValidationError:  # params that are not an object carry no name, uri or _meta
        return _NO_PARAMS


class _ModernHub:
    """All 2026-07-28 traffic through one `Session` and one upstream.

    Request ids and progress tokens are remapped to proxy-unique ones (two clients may both use id 1 or token "t"),
    so each response and each `notifications/progress` finds the POST it belongs to. A relayed progress token is
    the proxy id of its request.

    Plain asyncio primitives on purpose: this runs once per POST, and anyio's memory streams and cancel scopes
    cost a loop round trip (checkpoint) and a backend lookup per operation.
    """

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._calls: dict[str, _Call] = {}  # proxy request id -> call
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue(1024)  # frames for the session, None ends them
        self.closed = False

    async def frames(self) -> AsyncIterator[bytes]:
        while (frame := await self._inbox.get()) is not None:
            yield frame

    def original_id(self, rid: RequestId) -> RequestId:
        """The client's id of a request in flight under proxy id `rid` (for telemetry); `rid` if unknown."""
        call = self._calls.get(rid) if isinstance(rid, str) else None
        return call.original_id if call is not None else rid

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):  # full: the pump is being cancelled anyway (see lifespan)
            self._inbox.put_nowait(None)

    async def send(self, frame: bytes) -> None:
        env = jsonrpc.decode(frame)
        if env.is_response:
            call = self._calls.get(env.id) if isinstance(env.id, str) else None
            if call is None:
                return
            # Only the id changes: the result or error is re-emitted as the raw bytes that arrived.
            answer = jsonrpc.dumps(msgspec.structs.replace(env, id=call.original_id))
            if call.events is not None:
                call.events.put_nowait((True, answer))
            elif call.answer is not None and not call.answer.done():
                call.answer.set_result(answer)
            return
        if env.method == "notifications/progress":
            params = jsonrpc.load(env.params)
            token = params.get("progressToken") if isinstance(params, dict) else None
            call = self._calls.get(token) if isinstance(token, str) else None
            if call is None or call.events is None or call.events.qsize() >= _STREAM_BUFFER - 1:
                return  # not ours, or a client too slow to read its progress: drop progress, never the answer
            assert isinstance(params, dict)
            relayed = {"jsonrpc": "2.0", "method": env.method, "params": {**params, "progressToken": call.token}}
            call.events.put_nowait((False, jsonrpc.dumps(relayed)))
        # Anything else has no POST to ride on (the 2026-07-28 era has no server-initiated requests).

    async def call(
        self,
        env: Envelope,
        frame: bytes,
        wait: float,
        progress: Callable[[bytes], Awaitable[None]] | None = None,
        token: Any = None,
    ) -> bytes | None:
        """Forward one message (`frame`, decoded as `env`) and return its answer (None for a notification).

        With `progress`, the request's progress notifications (for the client's progress `token`) are passed to it
        as they arrive.
        """
        if env.id is UNSET:
            await self._inbox.put(frame)
            return None
        proxy_id = f"modern-{next(self._ids)}"
        if progress is None:
            call = _Call(env.id, None, asyncio.get_running_loop().create_future(), None)
            forwarded = jsonrpc.dumps(msgspec.structs.replace(env, id=proxy_id))
        else:
            call = _Call(env.id, token, None, asyncio.Queue())
            params = jsonrpc.load(env.params)
            params = {**params, "_meta": {**params["_meta"], "progressToken": proxy_id}}
            forwarded = jsonrpc.dumps(
                msgspec.structs.replace(env, id=proxy_id, params=msgspec.Raw(jsonrpc.dumps(params)))
            )
        self._calls[proxy_id] = call
        try:
            await self._inbox.put(forwarded)
            async with asyncio.timeout(wait):
                if call.answer is not None:
                    return await call.answer
                assert call.events is not None
                assert progress is not None
                while True:
                    is_answer, out = await call.events.get()
                    if is_answer:
                        return out
                    await progress(out)
        except TimeoutError:
            pass
        finally:
            self._calls.pop(proxy_id, None)
        return jsonrpc.error_frame(env.id, jsonrpc.INTERNAL_ERROR, "the upstream did not answer in time")


_STREAM_BUFFER: Final = 64


def _progress_token(params: _Params) -> Any:
    meta = params.meta
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

                return HttpUpstream(
                    server, upstream_url, max_frame=settings.max_frame_bytes, backoff_max=settings.restart_backoff_max
                )
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

    def _check_host_origin(self, headers: dict[bytes, str]) -> tuple[int, str] | None:
        host = headers.get(b"host", "").lower()
        if host not in self.allowed_hosts:
            return 421, "Misdirected Request: Host header not allowed"
        origin = headers.get(b"origin")
        if origin is not None and origin.lower().rstrip("/") not in self.allowed_origins:
            return 403, "Forbidden: Origin not allowed"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = _headers(scope)
        refused = self._check_host_origin(headers)
        if refused is not None:
            status, text = refused
            body = jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, text, jsonrpc.problem("forbidden-origin", text))
            await _respond(send, status, body)
            return
        subject: str | None = None
        if self.verifier is not None:
            try:
                subject = self.verifier.verify(headers.get(b"authorization")).subject
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
            session_id = headers.get(b"mcp-session-id")
            # A session belongs to the credential that created it; anyone else is told it does not exist.
            if session_id is not None and self._owners.get(session_id, subject) != subject:
                await _respond(send, 404, jsonrpc.error_frame(None, jsonrpc.INVALID_REQUEST, "Session not found"))
                return
        version = headers.get(b"mcp-protocol-version")
        if version == MODERN and scope["method"] == "POST" and b"mcp-session-id" not in headers:
            await self._modern_post(receive, send, headers)
            return
        await self._legacy(scope, receive, send, headers.get(b"mcp-session-id"), subject)

    async def _legacy(
        self, scope: Scope, receive: Receive, send: Send, session_id: str | None, subject: str | None
    ) -> None:
        from mcp.server.streamable_http import StreamableHTTPServerTransport
        from mcp.server.transport_security import TransportSecuritySettings

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

    async def _modern_post(self, receive: Receive, send: Send, headers: dict[bytes, str]) -> None:
        event = await receive()
        body: bytes = event.get("body", b"")
        if event.get("more_body"):
            body = await self._rest_of_body(receive, body)
        if len(body) > self.runtime.settings.max_frame_bytes:
            await _respond(send, 413, jsonrpc.error_frame(None, jsonrpc.FRAME_TOO_LARGE, "request too large"))
            return
        try:
            env = jsonrpc.decode(body)
        except jsonrpc.FrameError as exc:
            await _respond(send, 400, jsonrpc.error_frame(None, exc.code, str(exc)))
            return
        params = _params(env)
        mismatch = _header_mismatch(headers, env, params)
        if mismatch is not None:
            data = jsonrpc.problem("header-mismatch", "HeaderMismatch", detail=mismatch)
            rid = None if env.id is UNSET else env.id
            await _respond(send, 400, jsonrpc.error_frame(rid, jsonrpc.INVALID_REQUEST, mismatch, data))
            return
        assert self._modern is not None
        token = _progress_token(params) if env.id is not UNSET else None
        if token is not None and "text/event-stream" in headers.get(b"accept", ""):
            # The client asked for progress and accepts SSE: answer on an event stream carrying the progress
            # notifications, then the response (streamable HTTP, MCP 2026-07-28 / 2025-11-25 "Sending Messages
            # to the Server": the server MAY send notifications related to the request before its response).
            await self._modern_sse(send, env, body, token)
            return
        answer = await self._modern.call(env, body, self.request_timeout)
        if answer is None:
            await _respond(send, 202, b"")
            return
        await _respond(send, 200, answer)

    async def _rest_of_body(self, receive: Receive, first: bytes) -> bytes:
        """A body that arrived in several ASGI events, cut short past the frame limit (the caller answers 413)."""
        body = bytearray(first)
        limit = self.runtime.settings.max_frame_bytes
        while len(body) <= limit:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        return bytes(body)

    async def _modern_sse(self, send: Send, env: Envelope, body: bytes, token: Any) -> None:
        assert self._modern is not None
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def event(frame: bytes) -> None:
            await send(
                {"type": "http.response.body", "body": b"event: message\ndata: " + frame + b"\n\n", "more_body": True}
            )

        answer = await self._modern.call(env, body, self.request_timeout, progress=event, token=token)
        assert answer is not None  # a request always gets an answer (or the timeout error)
        await event(answer)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _header_mismatch(headers: dict[bytes, str], env: Envelope, params: _Params) -> str | None:
    method = None if env.method is UNSET else env.method
    header_method = headers.get(b"mcp-method")
    if header_method is not None and header_method != method:
        return f"Mcp-Method header {header_method!r} does not match the body's method {method!r}"
    header_name = headers.get(b"mcp-name")
    if header_name is not None:
        body_name = params.name if method in ("tools/call", "prompts/get") else params.uri
        if body_name is not None and header_name != body_name:
            return "Mcp-Name header does not match the body"
    meta = params.meta
    body_version = meta.get(_META_VERSION) if isinstance(meta, dict) else None
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
    routes = [Route("/mcp", endpoint=mcp_app, methods=list(_MCP_METHODS))]
    if verifier is not None:
        metadata = encode_metadata(verifier)

        async def protected_resource(scope: Scope, receive: Receive, send: Send) -> None:
            await _respond(send, 200, metadata)

        path = metadata_path(verifier.settings.resource)
        routes.append(Route(path, endpoint=_AsgiEndpoint(protected_resource), methods=["GET"]))
    return _Front(mcp_app, Starlette(routes=routes, lifespan=mcp_app.lifespan))


_MCP_METHODS: Final = ("GET", "POST", "DELETE")


class _Front:
    """`/mcp` goes straight to the MCP app; everything else (lifespan, OAuth metadata, 404/405/redirects) to Starlette.

    The MCP app does all its own checks (Host, Origin, OAuth) on every request, so skipping Starlette's middleware
    and router here changes no answer, only the per-request cost. Starlette still routes `/mcp` for the requests
    this fast path leaves to it (HEAD, or a server mounted under a root path).
    """

    def __init__(self, mcp: McpHttpApp, other: Any) -> None:
        self.mcp = mcp
        self.other = other

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/mcp"
            and scope["method"] in _MCP_METHODS
            and not scope.get("root_path")
        ):
            await self.mcp(scope, receive, send)
            return
        await self.other(scope, receive, send)


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
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on", **UVICORN_OPTIONS)


# uvicorn settings for the front. Its defaults already pick uvloop and httptools when installed.
UVICORN_OPTIONS: Final[dict[str, Any]] = {
    # X-Forwarded-For/-Proto are not trusted (the default trusts them from 127.0.0.1): nothing here reads the client
    # address or scheme, and a local process must not be able to spoof them; it also skips a middleware per request.
    "proxy_headers": False,
    "access_log": False,
    # No `server: uvicorn` (RFC 9110 section 10.2.4: optional; it only tells an attacker what runs here). `Date`
    # stays: an origin server with a clock MUST send it (RFC 9110 section 6.6.1).
    "server_header": False,
}
