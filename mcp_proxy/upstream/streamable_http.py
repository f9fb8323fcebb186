"""A streamable-HTTP MCP server as an upstream: raw JSON-RPC frames over a lean HTTP/1.1 client.

What the MCP transport spec asks of a client (2025-11-25, "Transports" > "Streamable HTTP"; 2026-07-28 keeps the
POST exchange and drops the session), and where it is done here:

- Every frame is POSTed on its own ("Sending Messages to the Server"): `send`. A request is answered by one JSON
  body or by an SSE stream carrying its progress notifications and server requests, then its response; a
  notification or a response gets 202 Accepted and no body: `_answer`.
- Handshake era ("Session Management"): the server may assign `Mcp-Session-Id` on the initialize response; it rides
  on every later request; 404 on a request that carried it means the session is gone, so we report the upstream
  down and the pump replays the client's initialize on the new connection; DELETE ends it on close. After
  `notifications/initialized` the client may open a GET SSE stream for server-initiated messages ("Listening for
  Messages from the Server"); 405 means the server offers none: `_listen`. A stream that ends before the response,
  after events with ids, is resumed with GET and `Last-Event-ID` ("Resumability and Redelivery"): `_resume`.
- Headers (libraries.md 1.5): `Mcp-Method`, `Mcp-Name` (ASCII only) and `MCP-Protocol-Version`, whose value comes
  from the initialize result (handshake era) or the request's `_meta` (2026-07-28). At 2026-07-28 closing a
  request's connection is its cancellation, so an outbound `notifications/cancelled` closes it instead of POSTing.

Frames never become SDK models (the SDK client path, pydantic validation and re-serialisation of every frame, was
~45% of the proxy's CPU per call): the frame is the POST body, and a JSON body or an SSE event's data is delivered
as the frame. Each POST is its own task so calls overlap; frames reach `on_frame` one at a time, as from a pipe.
A request is always answered: by the server, or by a JSON-RPC error naming what went wrong at the HTTP level
(never the upstream's body or headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import msgspec
from msgspec import UNSET, UnsetType

from mcp_proxy import jsonrpc
from mcp_proxy.errors import UpstreamError
from mcp_proxy.framing import DEFAULT_MAX_FRAME, Oversized
from mcp_proxy.jsonrpc import FrameError, RequestId
from mcp_proxy.upstream import FrameHandler
from mcp_proxy.upstream._http1 import Connection, Pool, Response, TransportError, parse_url
from mcp_proxy.upstream._sse import SseParser

logger = logging.getLogger("mcp_proxy.upstream")

_FIRST_BACKOFF: Final = 0.1
_MODERN: Final = frozenset({"2026-07-28"})  # mcp_types.version.MODERN_PROTOCOL_VERSIONS, without importing mcp
_META_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
_SMALL_BODY: Final = 64 * 1024  # bodies we read only to drain or to find a JSON-RPC error in: more is not kept
_ANSWER_GRACE: Final = 1.0  # seconds an SSE body may stay open after its response (the server SHOULD close it)
_RETRIES: Final = 2  # GET stream reconnections and resumption attempts in a row, as the SDK client does
_DEFAULT_RETRY_MS: Final = 1000
_DELETE_TIMEOUT: Final = 2.0
_USER_AGENT: Final = b"cisora-mesh-proxy"


class _Meta(msgspec.Struct):
    version: str | None = msgspec.field(default=None, name=_META_VERSION)


class _Params(msgspec.Struct):
    """The few params the headers need; msgspec skips everything else without building it."""

    name: str | None = None
    uri: str | None = None
    requestId: int | str | None = None  # the wire name (notifications/cancelled)
    meta: _Meta | None = msgspec.field(default=None, name="_meta")


class _Outbound(msgspec.Struct):
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: _Params | None = None


class _InitResult(msgspec.Struct):
    protocolVersion: str | None = None  # the wire name


class _InitReply(msgspec.Struct):
    result: _InitResult | None = None


_outbound_decoder: Final = msgspec.json.Decoder(_Outbound)
_init_decoder: Final = msgspec.json.Decoder(_InitReply)


def _outbound(frame: bytes) -> _Outbound:
    try:
        return _outbound_decoder.decode(frame)
    except msgspec.ValidationError:
        pass  # e.g. a non-string tool name or params that are not an object: read it the general way
    except msgspec.DecodeError:
        raise UpstreamError("the frame is not valid JSON") from None
    try:
        env = jsonrpc.decode(frame)
    except FrameError as exc:
        raise UpstreamError(str(exc)) from None
    params = jsonrpc.load(env.params)
    out = _Outbound(id=env.id if isinstance(env.id, int | str) or env.id is None else UNSET, method=env.method)
    if isinstance(params, dict):
        meta = params.get("_meta")
        version = meta.get(_META_VERSION) if isinstance(meta, dict) else None
        out.params = _Params(
            name=_str(params.get("name")),
            uri=_str(params.get("uri")),
            requestId=params.get("requestId") if isinstance(params.get("requestId"), int | str) else None,
            meta=_Meta(_str(version)),
        )
    return out


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _field_ok(value: str) -> bool:
    # RFC 9110 §5.5: a field value is visible ASCII, spaces and tabs; CR, LF and NUL would split the header
    # section (request smuggling), so a value that is not plain printable ASCII is not sent at all.
    return value.isascii() and value.isprintable()


def _reply_to(frame: bytes, rid: RequestId) -> bytes | None:
    """`frame` if it is the response to request `rid`; a server error with a null id becomes one; else None."""
    try:
        env = jsonrpc.decode(frame)
    except FrameError:
        return None
    if not env.is_response:
        return None
    if env.id == rid and type(env.id) is type(rid):
        return frame
    if env.id is None and len(env.error):
        # A server that could not read the request answers with a null id (JSON-RPC 2.0 §5); it is still ours.
        error = jsonrpc.load(env.error)
        if isinstance(error, dict):
            return jsonrpc.dumps({"jsonrpc": "2.0", "id": rid, "error": error})
    return None


class _Lost(Exception):
    """The upstream must be reconnected (transport failure, expired session); `reason` goes to on_down."""


class HttpUpstream:
    transport: Final = "tcp"  # network.transport on the spans of its messages

    def __init__(
        self,
        name: str,
        url: str,
        *,
        backoff_max: float = 5.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_connections: int = 64,
        connect_timeout: float = 30.0,
        idle_timeout: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.backoff_max = backoff_max
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        try:
            self.origin = parse_url(url, ssl_context)
        except ValueError as exc:
            raise UpstreamError(f"upstream {name!r}: {exc}") from None
        origin = self.origin
        self._host_line = b"Host: " + origin.authority + b"\r\nUser-Agent: " + _USER_AGENT + b"\r\n"
        self._post_head = (
            b"POST " + origin.target + b" HTTP/1.1\r\n" + self._host_line
            + b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        )  # fmt: skip
        self._pool: Pool | None = None  # set while the upstream is up: `send` refuses without it
        self._lost: asyncio.Future[str] | None = None
        self._on_frame: FrameHandler | None = None
        self._deliver_lock = asyncio.Lock()  # uncontended (the usual case), acquiring it does not yield
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[RequestId, tuple[asyncio.Task[None], bool]] = {}  # request id -> (its POST, modern)
        self._listen_task: asyncio.Task[None] | None = None
        self._version: str | None = None  # negotiated by initialize (handshake era)
        self._stamped: str | None = None  # the last version a request carried: for GET, DELETE, unstamped frames
        self._session: bytes | None = None  # Mcp-Session-Id, once the initialize response gave one
        self._served = False  # an answer arrived since the last up: a later failure is not a crash loop

    @property
    def ready(self) -> bool:
        return self._pool is not None

    # --- client -> server ----------------------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        pool = self._pool
        if pool is None:
            raise UpstreamError(f"upstream {self.name!r} is not connected")
        out = _outbound(frame)
        method = out.method if isinstance(out.method, str) else None
        rid = out.id if method is not None and isinstance(out.id, int | str) else None
        params = out.params
        version = params.meta.version if params is not None and params.meta is not None else None
        if method == "initialize":
            self._version = None  # a new negotiation: nothing earlier applies to it
        elif version is None:
            version = self._version if method is not None else (self._version or self._stamped)
        if method == "notifications/cancelled" and self._cancelled(params, version):
            return
        head = bytearray(self._post_head)
        head += b"Content-Length: %d\r\n" % len(frame)
        if method is not None and _field_ok(method):
            head += b"Mcp-Method: " + method.encode() + b"\r\n"
            if params is not None:
                name = params.name if method in ("tools/call", "prompts/get") else params.uri
                if name is not None and _field_ok(name):
                    head += b"Mcp-Name: " + name.encode() + b"\r\n"
        if version is not None and method != "initialize" and _field_ok(version):
            head += b"MCP-Protocol-Version: " + version.encode() + b"\r\n"
            self._stamped = version
        session = self._session
        if session is not None:
            head += b"Mcp-Session-Id: " + session + b"\r\n"
        head += b"\r\n"
        # Write at once when a connection is idle (the usual case): frames leave in the order they were sent and
        # the request is on the wire before this task yields. Otherwise the POST's task waits for a connection.
        conn = pool.take_idle()
        if conn is not None:
            conn.send(bytes(head), frame)
        task = asyncio.get_running_loop().create_task(
            self._exchange(pool, conn, (bytes(head), frame), rid, method, session)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if rid is not None:
            superseded = self._in_flight.get(rid)
            if superseded is not None:
                superseded[0].cancel()  # a reused id: the old POST must not answer the new request
            self._in_flight[rid] = (task, version in _MODERN)

    def _cancelled(self, params: _Params | None, version: str | None) -> bool:
        """Handle `notifications/cancelled` at 2026-07-28 (closing the POST is the signal); True: do not POST it."""
        target = params.requestId if params is not None else None
        post = self._in_flight.get(target) if target is not None else None
        if post is not None:
            if not post[1]:
                return False  # a handshake-era request: the notification is the signal, POST it
            post[0].cancel()  # closes its connection; a cancelled request gets no response
            return True
        return (version or self._stamped) in _MODERN  # nothing to close; a late cancel must not reach the wire

    async def _exchange(
        self,
        pool: Pool,
        conn: Connection | None,
        data: tuple[bytes, bytes],
        rid: RequestId | None,
        method: str | None,
        session: bytes | None,
    ) -> None:
        try:
            if conn is None:
                # Frames that are not requests may go past the pool's bound (see Pool).
                conn = await pool.acquire(overflow=rid is None)
                conn.send(*data)
            await conn.drain()
            response = await conn.read_head()
            await self._answer(pool, conn, response, rid, method, session)
        except TransportError as exc:
            reason = f"upstream {self.name!r} connection failed ({exc})"
            logger.warning("%s", reason)
            if rid is not None:
                await self._fail(rid, jsonrpc.UPSTREAM_UNAVAILABLE, f"{reason} during the request")
            self._lose(pool, reason)
        except _Lost as exc:
            self._lose(pool, str(exc))
        except Exception:  # a bug here must answer the caller, not leave it waiting forever
            logger.exception("HTTP exchange with upstream %r crashed", self.name)
            if rid is not None:
                await self._fail(rid, jsonrpc.INTERNAL_ERROR, "the proxy failed while talking to the upstream")
        finally:
            if conn is not None:
                pool.release(conn)
            if rid is not None:
                current = self._in_flight.get(rid)
                if current is not None and current[0] is asyncio.current_task():
                    del self._in_flight[rid]

    # --- server -> client ----------------------------------------------------------------------------------

    async def _answer(
        self,
        pool: Pool,
        conn: Connection,
        response: Response,
        rid: RequestId | None,
        method: str | None,
        session: bytes | None,
    ) -> None:
        status = response.status
        if not 200 <= status < 300:
            await self._refused(conn, response, rid, method, session)
            return
        if method == "initialize":
            self._take_session(response)
        if rid is None:
            # 202 Accepted, or a 2xx we do not need: a notification or response has nothing coming back.
            await _drain(conn)
            if method == "notifications/initialized" and self._session is not None:
                self._start_listen(pool)
            return
        media = response.media_type
        if media == "text/event-stream":
            parser = SseParser(self.max_frame)
            if await self._events(conn, parser, rid, method):
                return
            if parser.last_id and self._session is not None:
                await self._resume(pool, parser, rid, method)
                return
            if parser.oversized:
                message = "a message of the upstream's SSE stream exceeded the proxy's frame limit"
                await self._fail(rid, jsonrpc.FRAME_TOO_LARGE, message)
                return
            await self._fail(rid, jsonrpc.UPSTREAM_UNAVAILABLE, "the upstream ended its SSE stream without answering")
            return
        if media == "application/json":
            await self._json(conn, response, rid, method)
            return
        await _drain(conn)
        if status == 202 or status == 204:
            await self._fail(
                rid, jsonrpc.INTERNAL_ERROR, f"the upstream accepted the request (HTTP {status}) but sent no answer"
            )
            return
        await self._fail(rid, jsonrpc.INTERNAL_ERROR, "the upstream answered with an unexpected content type")

    async def _json(self, conn: Connection, response: Response, rid: RequestId, method: str | None) -> None:
        body = await _read_capped(conn, response, self.max_frame)
        if isinstance(body, Oversized):
            await self._deliver(body)
            if jsonrpc.id_in_head(body.head) != rid:  # the pump cannot tell whose answer it was: tell it here
                await self._fail(
                    rid,
                    jsonrpc.FRAME_TOO_LARGE,
                    f"the server's answer ({body.size} bytes) exceeds the proxy's frame limit",
                )
            return
        reply = _reply_to(body, rid)
        if reply is None:
            logger.warning("upstream %r answered request %r with a body that is not its response", self.name, rid)
            await self._fail(
                rid, jsonrpc.INTERNAL_ERROR, "the upstream's answer is not a JSON-RPC response to this request"
            )
            return
        if method == "initialize":
            self._note_version(reply)
        self._served = True
        await self._deliver(reply)

    async def _events(self, conn: Connection, parser: SseParser, rid: RequestId | None, method: str | None) -> bool:
        """Deliver an SSE body's `message` events as they arrive; True once the response to `rid` came."""
        while (chunk := await conn.next_chunk()) is not None:
            for event, data in parser.feed(chunk):
                if event != "message" or not data:
                    # MCP sends only message events; an empty one is a "priming" event that only sets the id
                    # to resume from (2025-11-25, "Resumability and Redelivery"), not a frame.
                    continue
                if rid is None:
                    await self._deliver(data)
                    continue
                if isinstance(data, Oversized):
                    await self._deliver(data)
                    if jsonrpc.id_in_head(data.head) != rid:
                        continue
                    return await _finish(conn)
                reply = _reply_to(data, rid)
                if reply is None:
                    await self._deliver(data)  # progress, a log message, a server request
                    continue
                if method == "initialize":
                    self._note_version(reply)
                self._served = True
                await self._deliver(reply)
                return await _finish(conn)
        return False

    async def _refused(
        self, conn: Connection, response: Response, rid: RequestId | None, method: str | None, session: bytes | None
    ) -> None:
        status = response.status
        body = await _drain(conn)
        if status == 404 and session is not None:
            # "Session Management" item 4: the session is gone. A new one needs the client's initialize, which the
            # pump replays once we report the upstream down and up again.
            if rid is not None:
                await self._fail(rid, jsonrpc.UPSTREAM_UNAVAILABLE, "the upstream's session expired; reconnecting")
            raise _Lost(f"upstream {self.name!r} ended the session")
        if rid is None:
            logger.warning("upstream %r refused a %s (HTTP %d)", self.name, method or "response", status)
            return
        if 400 <= status < 500 and body and response.media_type == "application/json":
            # A server may put its JSON-RPC error in a 4xx body: that is its answer, pass it on.
            reply = _reply_to(body, rid)
            if reply is not None:
                await self._deliver(reply)
                return
        if 300 <= status < 400:
            code, message = (
                jsonrpc.INTERNAL_ERROR,
                f"the upstream redirected the request (HTTP {status}); redirects are not followed",
            )
        elif status == 413:
            code, message = jsonrpc.FRAME_TOO_LARGE, "the upstream refused the request as too large (HTTP 413)"
        elif status >= 500 or status in (408, 429):
            code, message = jsonrpc.UPSTREAM_UNAVAILABLE, f"the upstream is unavailable (HTTP {status})"
        else:
            code, message = jsonrpc.INTERNAL_ERROR, f"the upstream refused the request (HTTP {status})"
        await self._fail(rid, code, message, status)

    async def _resume(self, pool: Pool, parser: SseParser, rid: RequestId, method: str | None) -> None:
        """Reopen an interrupted response stream with GET and `Last-Event-ID` ("Resumability and Redelivery")."""
        for _ in range(_RETRIES):
            await asyncio.sleep((parser.retry if parser.retry is not None else _DEFAULT_RETRY_MS) / 1000)
            conn = await pool.acquire()
            try:
                conn.send(self._get_head(parser.last_id))
                await conn.drain()
                response = await conn.read_head()
                if response.status != 200 or response.media_type != "text/event-stream":
                    await _drain(conn)
                    break
                if await self._events(conn, parser, rid, method):
                    return
            finally:
                pool.release(conn)
        await self._fail(rid, jsonrpc.UPSTREAM_UNAVAILABLE, "the upstream's SSE stream ended and could not be resumed")

    def _start_listen(self, pool: Pool) -> None:
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.get_running_loop().create_task(self._listen(pool))

    async def _listen(self, pool: Pool) -> None:
        """The optional GET stream for server-initiated messages; reconnected when it ends, as the SDK does."""
        parser = SseParser(self.max_frame)
        failures = 0
        while failures <= _RETRIES:
            try:
                conn = await pool.acquire(overflow=True)  # long-lived: it must not take a request's place
            except TransportError:
                failures += 1
            else:
                try:
                    conn.send(self._get_head(parser.last_id))
                    await conn.drain()
                    response = await conn.read_head()
                    if response.status == 405:
                        logger.debug("upstream %r offers no GET stream", self.name)
                        return
                    if response.status != 200 or response.media_type != "text/event-stream":
                        logger.info("upstream %r refused the GET stream (HTTP %d)", self.name, response.status)
                        return
                    failures = 0
                    await self._events(conn, parser, None, None)
                except TransportError as exc:
                    logger.debug("upstream %r GET stream failed: %s", self.name, exc)
                    failures += 1
                finally:
                    pool.release(conn)
            await asyncio.sleep((parser.retry if parser.retry is not None else _DEFAULT_RETRY_MS) / 1000)

    def _get_head(self, last_event_id: str = "") -> bytes:
        head = bytearray(b"GET " + self.origin.target + b" HTTP/1.1\r\n" + self._host_line)
        head += b"Accept: text/event-stream\r\n" + self._common_fields()
        if last_event_id and _field_ok(last_event_id):
            head += b"Last-Event-ID: " + last_event_id.encode() + b"\r\n"
        return bytes(head + b"\r\n")

    def _common_fields(self) -> bytes:
        fields = b""
        if self._session is not None:
            fields += b"Mcp-Session-Id: " + self._session + b"\r\n"
        version = self._version or self._stamped
        if version is not None and _field_ok(version):
            fields += b"MCP-Protocol-Version: " + version.encode() + b"\r\n"
        return fields

    def _take_session(self, response: Response) -> None:
        value = response.headers.get(b"mcp-session-id")
        if value is None:
            return
        # The spec limits a session id to visible ASCII (0x21-0x7E); anything else could not be sent back safely.
        if value and all(0x21 <= b <= 0x7E for b in value):
            self._session = value
        else:
            logger.warning("upstream %r sent an unusable Mcp-Session-Id; ignored", self.name)

    def _note_version(self, reply: bytes) -> None:
        try:
            result = _init_decoder.decode(reply).result
        except msgspec.MsgspecError:
            return
        if result is not None and result.protocolVersion is not None:
            self._version = result.protocolVersion

    async def _deliver(self, frame: bytes | Oversized) -> None:
        assert self._on_frame is not None
        async with self._deliver_lock:  # one frame at a time, in arrival order, as a pipe would give them
            await self._on_frame(frame)

    async def _fail(self, rid: RequestId, code: int, message: str, status: int | None = None) -> None:
        data = jsonrpc.problem("upstream-unavailable", "Upstream unavailable", server=self.name)
        if code != jsonrpc.UPSTREAM_UNAVAILABLE:
            data = jsonrpc.problem("upstream-error", "Upstream error", server=self.name)
        if status is not None:
            data["status"] = status
        await self._deliver(jsonrpc.error_frame(rid, code, f"upstream {self.name!r}: {message}", data))

    def _lose(self, pool: Pool, reason: str) -> None:
        if pool is not self._pool:
            return  # an exchange of an earlier connection: that one is already being replaced
        self._pool = None  # refuse new frames at once; run() reports down and reconnects
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def run(
        self,
        on_frame: FrameHandler,
        on_up: Callable[[bool], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
    ) -> None:
        self._on_frame = on_frame
        backoff = _FIRST_BACKOFF
        was_up = False
        failing = False
        pool: Pool | None = None
        try:
            while True:
                pool = Pool(
                    self.origin,
                    max_connections=self.max_connections,
                    idle_timeout=self.idle_timeout,
                    connect_timeout=self.connect_timeout,
                )
                try:
                    await pool.warm()  # up means reachable: requests fail fast while it is not
                except TransportError as exc:
                    await pool.aclose()
                    reason = f"upstream {self.name!r} unreachable ({exc})"
                    # Once per outage at WARNING; the retries that follow it are routine until it answers again.
                    logger.log(logging.DEBUG if failing else logging.WARNING, "%s; retrying in %.1fs", reason, backoff)
                    failing = True
                    await on_down(reason)
                else:
                    self._lost = asyncio.get_running_loop().create_future()
                    self._served = False
                    self._pool = pool
                    if failing:
                        logger.info("upstream %r reachable again", self.name)
                    failing = False
                    await on_up(was_up)
                    was_up = True
                    reason = await self._lost
                    await self._teardown(pool, delete=False)
                    if self._served:
                        backoff = _FIRST_BACKOFF  # it worked for a while: this is not a crash loop
                    logger.warning("%s; reconnecting in %.1fs", reason, backoff)
                    await on_down(reason)
                pool = None
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
        finally:
            with anyio.CancelScope(shield=True):
                await self._teardown(pool, delete=True)

    async def _teardown(self, pool: Pool | None, *, delete: bool) -> None:
        self._pool = None
        tasks = [t for t in (*self._tasks, self._listen_task) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()
        self._listen_task = None
        if pool is not None:
            if delete and self._session is not None:
                with anyio.move_on_after(_DELETE_TIMEOUT):
                    await self._delete(pool)
            await pool.aclose()
        self._session = None
        self._version = None
        self._stamped = None

    async def _delete(self, pool: Pool) -> None:
        """End the session (best effort): "Session Management" item 5."""
        try:
            conn = await pool.acquire(overflow=True)
        except TransportError:
            return
        try:
            head = b"DELETE " + self.origin.target + b" HTTP/1.1\r\n" + self._host_line + self._common_fields()
            conn.send(head + b"Content-Length: 0\r\n\r\n")
            await conn.drain()
            response = await conn.read_head()
            await _drain(conn)
            if response.status not in (200, 202, 204, 405):  # 405: the server does not let clients end sessions
                logger.debug("upstream %r: DELETE of the session answered HTTP %d", self.name, response.status)
        except TransportError as exc:
            logger.debug("upstream %r: DELETE of the session failed: %s", self.name, exc)
        finally:
            pool.release(conn)


async def _drain(conn: Connection) -> bytes | None:
    """Read a body we have no use for beyond a glance; None when it was too large to keep (the connection then
    closes instead of being read to the end)."""
    parts: list[bytes] = []
    size = 0
    while (chunk := await conn.next_chunk()) is not None:
        size += len(chunk)
        if size > _SMALL_BODY:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _read_capped(conn: Connection, response: Response, limit: int) -> bytes | Oversized:
    """The whole body, or `Oversized` with its first bytes once it goes past `limit` (nothing more is kept)."""
    declared = response.content_length
    parts: list[bytes] = []
    size = 0
    head: bytes | None = None
    while (chunk := await conn.next_chunk()) is not None:
        size += len(chunk)
        if head is not None:
            continue  # counting an oversized chunked body to its end, keeping nothing
        if size <= limit:
            parts.append(chunk)
            continue
        head = (b"".join(parts) + chunk)[:4096]
        parts.clear()
        if declared is not None:
            return Oversized(head, declared)  # its size is known: close the connection rather than read it all
    if head is not None:
        return Oversized(head, size)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _finish(conn: Connection) -> bool:
    """After the response: let the server end the SSE body so the connection can be reused; True either way."""
    # A failure now is no failure of the exchange: the caller has its answer, and the connection just closes.
    with contextlib.suppress(TimeoutError, TransportError):
        async with asyncio.timeout(_ANSWER_GRACE):
            while await conn.next_chunk() is not None:
                pass  # events after the response have no request to belong to
    return True
