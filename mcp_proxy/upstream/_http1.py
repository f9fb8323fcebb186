"""A small HTTP/1.1 client for one origin: a bounded keep-alive pool of asyncio stream connections.

Only what the MCP streamable-HTTP upstream needs: requests with a fully known body (`Content-Length`), responses
parsed by `httptools` (llhttp, the C parser uvicorn uses) and read as a stream of body chunks, so an SSE response
can be handled event by event while it is still arriving. No redirects, no cookies, no proxies, no pipelining.

Failures are `TransportError`s whose text is safe to show a client (no response bodies, no addresses beyond
what the operator configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httptools

_READ: Final = 256 * 1024
_MAX_HEAD: Final = 64 * 1024  # response status line + header fields; llhttp itself sets no limit
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class TransportError(Exception):
    """The exchange failed below HTTP semantics: connect, reset, timeout, or a response we cannot parse."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: the parts of the configured URL, pre-encoded for the request line."""

    scheme: str
    host: str
    port: int
    target: bytes  # request-target in origin-form (RFC 9112 §3.2.1): path and query
    authority: bytes  # the Host field value (RFC 9112 §3.2: required in every HTTP/1.1 request)
    ssl: ssl.SSLContext | None


def parse_url(url: str, ssl_context: ssl.SSLContext | None = None) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"upstream URL must be http:// or https://, not {parts.scheme or 'schemeless'}")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and process listings; the proxy sends none it was not configured with.
        raise ValueError("credentials in the upstream URL are not supported")
    host = parts.hostname
    if not host:
        raise ValueError("upstream URL has no host")
    port = parts.port or _DEFAULT_PORTS[scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    context = None
    if scheme == "https":
        context = ssl_context or ssl.create_default_context()
    return Origin(scheme, host, port, target.encode("ascii"), authority.encode("idna"), context)


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]  # lower-cased names; repeated fields joined with ", " (RFC 9110 §5.3)

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased (RFC 9110 §8.3.1)."""
        value = self.headers.get(b"content-type", b"")
        return value.split(b";", 1)[0].strip().lower().decode("latin-1")

    @property
    def content_length(self) -> int | None:
        value = self.headers.get(b"content-length")
        return int(value) if value is not None and value.isdigit() else None


class Connection:
    """One TCP (or TLS) connection and its response parser. Not shared: one exchange at a time uses it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = httptools.HttpResponseParser(self)
        self.idle_since = 0.0
        self.reusable = False
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[bytes, bytes] = {}
        self._headers_done = False
        self._interim = False
        self._complete = False
        self._keep_alive = False
        self._extra = False  # bytes after the end of the response: we never pipeline, so the peer is confused
        self._body: list[bytes] = []
        self._head_bytes = 0
        self._until_close = False

    # --- httptools callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._extra = True
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        key = name.lower()
        prior = self._headers.get(key)
        self._headers[key] = value if prior is None else prior + b", " + value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        # RFC 9110 §15.2: a 1xx response is interim; the final one follows on the same connection.
        self._interim = 100 <= status < 200
        if self._interim:
            return
        self._headers_done = True
        # RFC 9112 §6.3 item 8: with neither Transfer-Encoding nor Content-Length, the body runs to the close.
        self._until_close = (
            b"transfer-encoding" not in self._headers
            and b"content-length" not in self._headers
            and status not in (204, 304)
        )

    def on_body(self, body: bytes) -> None:
        if not self._complete:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        # Asked now: llhttp resets its flags once the callback returns, and answers False afterwards.
        self._keep_alive = self._parser.should_keep_alive()

    # --- the exchange ----------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Still open as far as we can tell (the peer closes idle keep-alive connections when it likes)."""
        return not (self._writer.is_closing() or self._reader.at_eof() or self._reader.exception() is not None)

    def send(self, head: bytes, body: bytes = b"") -> None:
        """Start a request. The head is written first, then the body: a large body is not copied to join them."""
        self._reset()
        self.reusable = False
        if len(body) < 16384:
            self._writer.write(head + body)  # one send(2) for the usual small frame
        else:
            self._writer.write(head)
            self._writer.write(body)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise TransportError(_describe(exc, "connection lost while sending the request")) from None

    async def read_head(self) -> Response:
        received = 0
        while not self._headers_done:
            data = await self._read()
            if not data:
                raise TransportError("connection closed before the response")
            received += len(data)
            self._feed(data)
            # Fields counted as parsed; bytes counted while the section has not ended (a header that never ends).
            if self._head_bytes > _MAX_HEAD or (received > _MAX_HEAD and not self._have_head()):
                raise TransportError("response header section too large")
        return Response(self._parser.get_status_code(), self._headers)

    def _have_head(self) -> bool:
        return self._headers_done  # a call, so the type checker does not assume _feed left it unchanged

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call (waiting for some), or None once the body is complete."""
        while True:
            if self._body:
                chunk = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body.clear()
                return chunk
            if self._complete:
                self.reusable = self._keep_alive and not (self._extra or self._until_close)
                return None
            data = await self._read()
            if not data:
                if self._until_close:
                    self._complete = True  # the close delimits the body; the connection is done, though
                    continue
                raise TransportError("response truncated: the connection closed mid-body")
            self._feed(data)

    @property
    def complete(self) -> bool:
        return self._complete and not self._body

    async def _read(self) -> bytes:
        try:
            return await self._reader.read(_READ)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise TransportError(_describe(exc, "connection lost")) from None

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise TransportError("malformed HTTP response: unexpected protocol upgrade") from None
        except httptools.HttpParserError as exc:
            raise TransportError(f"malformed HTTP response ({type(exc).__name__})") from None

    def close(self) -> None:
        self.reusable = False
        with contextlib.suppress(RuntimeError):  # the loop may already be closed at interpreter exit
            self._writer.close()


def _describe(exc: BaseException, fallback: str) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{fallback}: {exc.strerror}"
    return f"{fallback} ({type(exc).__name__})"


class Pool:
    """Keep-alive connections to one origin, at most `max_connections` for requests (RFC 9112 §9.3, §9.4).

    Requests beyond the limit wait, in order, for a connection to come back. Frames that are not requests
    (responses to server requests, notifications) may open a connection past the limit: the server answers
    them at once, and they must not queue behind requests that are themselves waiting for them (a tool call
    that waits for the client's sampling answer would otherwise deadlock a full pool).
    """

    def __init__(
        self, origin: Origin, *, max_connections: int = 64, idle_timeout: float = 4.0, connect_timeout: float = 30.0
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.origin = origin
        self.max_connections = max_connections
        # Shorter than the usual server keep-alive timeouts (uvicorn and Node.js: 5 s), so we close an idle
        # connection before the server does instead of racing its close with a new request (RFC 9112 §9.6).
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: list[Connection] = []  # LIFO: the most recently used first, so the others age out
        self._open = 0  # connections counted against the limit: idle ones and those in use
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    def take_idle(self) -> Connection | None:
        """An idle connection ready for a request, without waiting; None if there is none."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable and now - conn.idle_since < self.idle_timeout:
                return conn
            conn.close()
            self._open -= 1
        return None

    async def acquire(self, *, overflow: bool = False) -> Connection:
        if self._closed:
            raise TransportError("connection pool closed")
        conn = self.take_idle()
        if conn is not None:
            return conn
        if self._open >= self.max_connections and not overflow:
            fut: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                handed = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._hand_over(fut.result())  # it was ours already: pass it on
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(fut)
                raise
            if handed is not None:
                return handed
            # A slot was handed over (its connection closed): it is ours, counted already.
        else:
            self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._hand_over(None)
            raise

    async def warm(self) -> None:
        """Open one connection and park it: proves the origin is reachable before we report the upstream up."""
        conn = await self.acquire()
        conn.reusable = True
        self.release(conn)

    def release(self, conn: Connection) -> None:
        if not conn.reusable or self._closed:
            conn.close()
            self._hand_over(None)
            return
        if self._waiters:
            self._hand_over(conn)
            return
        if self._open > self.max_connections:
            conn.close()  # an overflow connection: do not keep the pool above its bound
            self._open -= 1
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def _hand_over(self, conn: Connection | None) -> None:
        """Give a connection, or the slot of a closed one, to the first waiter still waiting; else free it."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)

    async def _connect(self) -> Connection:
        origin = self.origin
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    origin.host,
                    origin.port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                    limit=_READ,
                )
        except TimeoutError:
            raise TransportError(f"connect timed out after {self.connect_timeout:g}s") from None
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake failed ({exc.reason or type(exc).__name__})") from None
        except OSError as exc:
            raise TransportError(_describe(exc, "connection failed")) from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # A peer that vanished without a FIN (host down, NAT state dropped) is found out eventually
                # instead of holding an exchange open forever.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._open -= len(idle)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(TransportError("connection pool closed"))
