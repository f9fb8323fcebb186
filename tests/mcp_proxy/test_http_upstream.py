"""The streamable-HTTP upstream's own HTTP/1.1 client, over real loopback sockets.

Most tests script a raw asyncio server byte by byte (so they can send what no framework would: a bad status line,
a truncated chunked body, garbage SSE, a reset mid-call); the last ones run it against real MCP servers, the
example echo server (both eras) and `@modelcontextprotocol/server-everything` (handshake era, sessions, GET stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inproc import free_port
from proxy_support import ECHO, PY, ROOT, wait_listening

from mcp_proxy import jsonrpc
from mcp_proxy.errors import UpstreamError
from mcp_proxy.framing import Oversized
from mcp_proxy.upstream._http1 import Pool, TransportError, parse_url
from mcp_proxy.upstream._sse import SseParser
from mcp_proxy.upstream.streamable_http import HttpUpstream

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


# --- SSE parsing (WHATWG rules) ---------------------------------------------------------------------------------


def _feed_all(stream: bytes, cuts: list[int], max_data: int = 1 << 20) -> tuple[list[Any], SseParser]:
    parser = SseParser(max_data)
    events: list[Any] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        events += parser.feed(stream[start:cut])
        start = cut
    return events, parser


SSE_STREAM = (
    b"\xef\xbb\xbf: a comment, then a BOM-led stream\r\n"
    b'event: message\r\nid: 7\r\ndata: {"a":1}\r\n\r\n'
    b"data: line one\ndata:line two\ndata\n\n"  # no space after the colon, and a bare field name: empty value
    b"retry: 1500\rdata: cr only\r\r"
    b"event: other\ndata: not a message\n\n"
    b"id: 9\n\n"  # sets the id, dispatches nothing (empty data)
    b"data: x\nnonsense without colon\nfoo: bar\n\n"
    b"data: unterminated at end of stream"
)
SSE_EXPECTED = [
    ("message", b'{"a":1}'),
    ("message", b"line one\nline two\n"),
    ("message", b"cr only"),
    ("other", b"not a message"),
    ("message", b"x"),
]


def test_sse_parser_whatwg_rules() -> None:
    events, parser = _feed_all(SSE_STREAM, [])
    assert events == SSE_EXPECTED
    assert parser.last_id == "9"
    assert parser.retry == 1500


def test_sse_parser_every_split_point() -> None:
    for cut in range(len(SSE_STREAM) + 1):
        events, parser = _feed_all(SSE_STREAM, [cut])
        assert events == SSE_EXPECTED, cut
        assert parser.last_id == "9"
    events, _ = _feed_all(SSE_STREAM, list(range(len(SSE_STREAM))))  # one byte at a time
    assert events == SSE_EXPECTED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SSE_STREAM)), max_size=12))
def test_sse_parser_arbitrary_chunks(cuts: list[int]) -> None:
    events, _ = _feed_all(SSE_STREAM, cuts)
    assert events == SSE_EXPECTED


def test_sse_parser_caps_event_size_and_keeps_the_head() -> None:
    big = b'{"jsonrpc":"2.0","id":5,"result":"' + b"x" * 5000 + b'"}'
    stream = b"data: " + big + b"\n\n" + b"data: " + big[:10] + b"\ndata: " + big + b"\n\ndata: ok\n\n"
    for cuts in ([], list(range(0, len(stream), 333))):
        events, _ = _feed_all(stream, cuts, max_data=1000)
        assert len(events) == 3
        first, second, third = (data for _, data in events)
        assert (
            isinstance(first, Oversized)
            and first.size == len(big)
            and first.head.startswith(b'{"jsonrpc":"2.0","id":5')
        )
        assert isinstance(second, Oversized) and second.size == 10 + 1 + len(big)
        assert third == b"ok"  # the parser recovers for the next event


def test_sse_parser_garbage_does_not_break_it() -> None:
    garbage = bytes(range(256)) * 4 + b"\n\n\xff\xfe: \x00\ndata: \xff\xfe\n\n"
    events, _ = _feed_all(garbage + b"data: fine\n\n", [3, 100, 700])
    assert events[-1] == ("message", b"fine")


# --- URL and pool -----------------------------------------------------------------------------------------------


def test_parse_url() -> None:
    origin = parse_url("http://127.0.0.1:8000/mcp?x=1")
    assert (origin.host, origin.port, origin.target, origin.authority) == (
        "127.0.0.1",
        8000,
        b"/mcp?x=1",
        b"127.0.0.1:8000",
    )
    assert origin.ssl is None
    origin = parse_url("https://[::1]/")
    assert (origin.port, origin.authority, origin.ssl is not None) == (443, b"[::1]", True)
    for bad in ("ftp://x/mcp", "http://user:pw@host/mcp", "http:///mcp"):
        with pytest.raises(ValueError, match=r"upstream URL|credentials"):
            parse_url(bad)
    with pytest.raises(UpstreamError):
        HttpUpstream("x", "file:///etc/passwd")


# --- a scripted raw HTTP server ---------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    reader: asyncio.StreamReader = field(repr=False, compare=False)

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


Handler = Callable[[Req, asyncio.StreamWriter], Awaitable[bool]]  # returns: keep the connection open


@dataclass
class RawServer:
    handler: Handler
    requests: list[Req] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    url: str = ""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Req(method, target, headers, body, reader)
                self.requests.append(req)
                keep = await self.handler(req, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # the test is over (a handler task must not end cancelled: asyncio logs that as an error)
        finally:
            self.open_now -= 1
            writer.close()

    def posts(self) -> list[Req]:
        return [r for r in self.requests if r.method == "POST"]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    state = RawServer(handler)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    try:
        yield state
    finally:
        server.close()
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)


def json_response(body: bytes, status: int = 200, extra: bytes = b"", ctype: bytes = b"application/json") -> bytes:
    head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (status, ctype, len(body))
    return head + extra + b"\r\n" + body


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def result(rid: Any, value: Any = "ok") -> bytes:
    return jsonrpc.result_frame(rid, {"value": value})


def call(rid: Any, name: str = "echo", *, meta: dict[str, Any] | None = None) -> bytes:
    params: dict[str, Any] = {"name": name, "arguments": {"text": "hi"}}
    if meta is not None:
        params["_meta"] = meta
    return jsonrpc.request_frame(rid, "tools/call", params)


class Sink:
    def __init__(self) -> None:
        self.frames: list[bytes | Oversized] = []
        self.ups: list[bool] = []
        self.downs: list[str] = []

    async def on_frame(self, frame: bytes | Oversized) -> None:
        self.frames.append(frame)

    async def on_up(self, restarted: bool) -> None:
        self.ups.append(restarted)

    async def on_down(self, reason: str) -> None:
        self.downs.append(reason)

    def messages(self) -> list[dict[str, Any]]:
        decoded = []
        for frame in self.frames:
            if isinstance(frame, bytes):
                with contextlib.suppress(msgspec.DecodeError):  # garbage is delivered too: the pump drops it
                    decoded.append(msgspec.json.decode(frame))
        return decoded

    def by_id(self, rid: Any) -> dict[str, Any]:
        found = [m for m in self.messages() if m.get("id") == rid and "method" not in m]
        assert len(found) == 1, (rid, self.messages())
        return found[0]

    async def until(self, predicate: Callable[[], bool]) -> None:
        with anyio.fail_after(10):
            while not predicate():  # noqa: ASYNC110 - polling the state several callbacks change, in a test
                await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(upstream: HttpUpstream, *, wait_up: bool = True) -> AsyncIterator[Sink]:
    sink = Sink()
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run, sink.on_frame, sink.on_up, sink.on_down)
        if wait_up:
            await sink.until(lambda: upstream.ready)
        yield sink
        tg.cancel_scope.cancel()


async def answer_json(req: Req, writer: asyncio.StreamWriter) -> bool:
    msg = req.json()
    writer.write(
        json_response(result(msg["id"])) if "id" in msg else b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    )
    return True


# --- the exchange -----------------------------------------------------------------------------------------------


async def test_json_answer_headers_and_202() -> None:
    async with raw_server(answer_json) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            frame = call(1, "echo", meta=MODERN_META)
            await upstream.send(frame)
            await upstream.send(jsonrpc.notification_frame("notifications/progress", {"progressToken": 1}))
            await upstream.send(jsonrpc.request_frame(2, "resources/read", {"uri": "file:///a b"}))
            await upstream.send(jsonrpc.request_frame(3, "tools/call", {"name": "ünïcode", "arguments": {}}))
            await sink.until(lambda: len(sink.frames) == 3)
        assert sink.by_id(1)["result"] == {"value": "ok"}
        assert sink.ups == [False]
        first = server.posts()[0]
        assert first.body == frame  # the exact bytes, not a re-serialisation
        assert first.target == "/mcp"
        assert first.headers["content-type"] == "application/json"
        assert first.headers["accept"] == "application/json, text/event-stream"
        assert first.headers["mcp-method"] == "tools/call"
        assert first.headers["mcp-name"] == "echo"
        assert first.headers["mcp-protocol-version"] == "2026-07-28"
        assert "authorization" not in first.headers and "mcp-session-id" not in first.headers
        by_method = {r.json().get("method"): r.headers for r in server.posts()}
        assert by_method["notifications/progress"]["mcp-method"] == "notifications/progress"
        assert by_method["resources/read"]["mcp-name"] == "file:///a b"
        assert [r.headers.get("mcp-name") for r in server.posts() if r.json().get("id") == 3] == [None]
        assert server.connections == 4  # four frames in flight at once: the warm-up connection and three more


async def test_header_injection_is_not_possible() -> None:
    async with raw_server(answer_json) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1, "echo\r\nX-Evil: 1"))
            await upstream.send(call(2, "ok", meta={"io.modelcontextprotocol/protocolVersion": "1\r\nX-Evil: 2"}))
            await sink.until(lambda: len(sink.frames) == 2)
        for req in server.posts():
            assert "x-evil" not in req.headers
        assert "mcp-name" not in server.posts()[0].headers


async def test_sse_progress_arrives_before_the_result() -> None:
    release = asyncio.Event()

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        rid = req.json()["id"]
        writer.write(SSE_HEAD)
        progress = jsonrpc.notification_frame("notifications/progress", {"progressToken": "t", "progress": 1})
        # An event split across chunks, CRLF line ends, a comment and a priming event with only an id.
        writer.write(chunk(b": keep-alive\r\nid: 1\r\ndata:\r\n\r\nevent: message\r\nid: 2\r\ndata: " + progress[:9]))
        writer.write(chunk(progress[9:] + b"\r\n\r"))
        writer.write(chunk(b"\n"))
        await writer.drain()
        await release.wait()
        writer.write(chunk(b"id: 3\ndata: " + result(rid) + b"\n\n") + b"0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(7))
            await sink.until(lambda: len(sink.frames) == 1)
            assert sink.messages()[0]["method"] == "notifications/progress"
            release.set()
            await sink.until(lambda: len(sink.frames) == 2)
            assert sink.by_id(7)["result"] == {"value": "ok"}
            await upstream.send(call(8))  # the connection went back to the pool once its body ended
            await sink.until(lambda: len(sink.frames) == 4)
            assert sink.by_id(8)["result"] == {"value": "ok"}
        assert server.connections == 1


async def test_sse_stream_that_ends_without_an_answer_is_answered() -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        garbage = (
            b"\x00\xffnot sse at all\ndata: {broken json\n\nevent: other\ndata: " + result(req.json()["id"]) + b"\n\n"
        )
        writer.write(SSE_HEAD + chunk(garbage) + b"0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await sink.until(lambda: any(isinstance(f, bytes) and b'"error"' in f for f in sink.frames))
        error = sink.by_id(1)["error"]
        assert error["code"] == jsonrpc.UPSTREAM_UNAVAILABLE
        assert "without answering" in error["message"]
        assert sink.downs == []  # a misbehaving stream is not a dead upstream


@pytest.mark.parametrize(
    ("status", "body", "ctype", "code"),
    [
        (500, b"<html>Traceback: password=hunter2 at /srv/secret</html>", b"text/html", jsonrpc.UPSTREAM_UNAVAILABLE),
        (503, b"", b"text/plain", jsonrpc.UPSTREAM_UNAVAILABLE),
        (401, b'{"error":"token sk-live-SECRET expired"}', b"application/json", jsonrpc.INTERNAL_ERROR),
        (413, b"too big", b"text/plain", jsonrpc.FRAME_TOO_LARGE),
        (307, b"", b"text/plain", jsonrpc.INTERNAL_ERROR),
    ],
)
async def test_http_error_statuses_answer_without_leaking(status: int, body: bytes, ctype: bytes, code: int) -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        writer.write(json_response(body, status, b"Location: http://elsewhere/\r\n", ctype))
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await upstream.send(jsonrpc.notification_frame("notifications/initialized", None))  # logged, no answer
            await sink.until(lambda: len(sink.frames) >= 1)
            await anyio.sleep(0.05)
        assert len(sink.frames) == 1
        error = sink.by_id(1)["error"]
        assert error["code"] == code
        assert str(status) in error["message"]
        assert error["data"]["status"] == status and error["data"]["server"] == "web"
        text = sink.frames[0]
        assert isinstance(text, bytes)
        for secret in (b"hunter2", b"SECRET", b"Traceback", b"elsewhere"):
            assert secret not in text
        assert sink.downs == []


async def test_json_rpc_error_in_a_4xx_body_is_the_answer() -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        error = jsonrpc.error_frame(None, -32602, "Invalid params: no such tool")
        writer.write(json_response(error, 400))
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call("abc"))
            await sink.until(lambda: len(sink.frames) == 1)
        assert sink.by_id("abc")["error"] == {"code": -32602, "message": "Invalid params: no such tool"}


async def test_202_to_a_request_and_unexpected_content_type_are_answered() -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.json()["id"] == 1:
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(json_response(b"<p>hi</p>", 200, ctype=b"text/html"))
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await upstream.send(call(2))
            await sink.until(lambda: len(sink.frames) == 2)
        assert "no answer" in sink.by_id(1)["error"]["message"]
        assert "content type" in sink.by_id(2)["error"]["message"]


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem, key_pem = tmp / "cert.pem", tmp / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    return server, ssl.create_default_context(cafile=str(cert_pem))


async def test_https_with_an_ssl_context(tmp_path: Path) -> None:
    server_tls, client_tls = _self_signed(tmp_path)
    async with raw_server(answer_json, server_tls) as server:
        upstream = HttpUpstream("tls", server.url, ssl_context=client_tls)
        async with running(upstream) as sink:
            for i in range(5):
                await upstream.send(call(i))
            await sink.until(lambda: len(sink.frames) == 5)
        assert sorted(m["id"] for m in sink.messages()) == list(range(5))
        # Without trusting the certificate the handshake fails: down, never up.
        untrusted = HttpUpstream("tls", server.url, backoff_max=0.2)
        async with running(untrusted, wait_up=False) as sink:
            await sink.until(lambda: len(sink.downs) >= 1)
        assert sink.ups == [] and "TLS" in sink.downs[0]


# --- transport failures and malformed responses -----------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    writer.transport.abort()


@pytest.mark.parametrize(
    "fault",
    ["reset", "close-before-response", "bad-status-line", "truncated-chunked", "truncated-length", "huge-head"],
)
async def test_transport_failure_answers_then_reconnects(fault: str) -> None:
    calls = 0

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        nonlocal calls
        calls += 1
        if calls > 1:
            return await answer_json(req, writer)
        if fault == "reset":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Len")
            await writer.drain()
            _reset(writer)
        elif fault == "bad-status-line":
            writer.write(b"HTTP/9 two hundred\r\n\r\n")
        elif fault == "truncated-chunked":
            writer.write(SSE_HEAD + b"ff\r\ndata: {")
        elif fault == "truncated-length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}")
        elif fault == "huge-head":
            writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
        return False

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await sink.until(lambda: len(sink.downs) == 1 and sink.ups == [False, True])
            error = sink.by_id(1)["error"]
            assert error["code"] == jsonrpc.UPSTREAM_UNAVAILABLE
            assert "connection failed" in error["message"]
            assert "web" in sink.downs[0]
            await upstream.send(call(2))  # back up: served again
            await sink.until(lambda: len(sink.frames) == 2)
        assert sink.by_id(2)["result"] == {"value": "ok"}


async def test_unreachable_upstream_reports_down_and_backs_off() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    upstream = HttpUpstream("gone", f"http://127.0.0.1:{port}/mcp", backoff_max=0.4)
    async with running(upstream, wait_up=False) as sink:
        await sink.until(lambda: len(sink.downs) >= 3)
        assert not upstream.ready
        with pytest.raises(UpstreamError):
            await upstream.send(call(1))
    assert sink.ups == []
    assert "unreachable" in sink.downs[0]


# --- pool -------------------------------------------------------------------------------------------------------


async def test_64_concurrent_calls_each_get_their_answer() -> None:
    arrived = 0
    all_in = asyncio.Event()

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == 64:
            all_in.set()
        await all_in.wait()  # every call is in flight at once before any is answered
        return await answer_json(req, writer)

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            for i in range(64):
                await upstream.send(call(i))
            await sink.until(lambda: len(sink.frames) == 64)
        assert sorted(m["id"] for m in sink.messages()) == list(range(64))
        assert server.max_open == 64


async def test_pool_is_bounded_and_queues_in_order() -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.01)
        return await answer_json(req, writer)

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url, max_connections=3)
        async with running(upstream) as sink:
            for i in range(30):
                await upstream.send(call(i))
            await sink.until(lambda: len(sink.frames) == 30)
        assert server.max_open <= 3
        assert sorted(m["id"] for m in sink.messages()) == list(range(30))


async def test_notifications_overflow_a_full_pool_instead_of_deadlocking() -> None:
    """A call that waits for the client's reply to a server request must not starve that reply of a connection."""
    reply_seen = asyncio.Event()

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        msg = req.json()
        if "method" in msg:
            writer.write(
                SSE_HEAD + chunk(b"data: " + jsonrpc.request_frame("s1", "sampling/createMessage", {}) + b"\n\n")
            )
            await writer.drain()
            await reply_seen.wait()
            writer.write(chunk(b"data: " + result(msg["id"]) + b"\n\n") + b"0\r\n\r\n")
        else:
            reply_seen.set()
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url, max_connections=1)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(jsonrpc.result_frame("s1", {"content": {"type": "text", "text": "x"}}))
            await sink.until(lambda: len(sink.frames) == 2)
        assert sink.by_id(1)["result"] == {"value": "ok"}


async def test_pool_waiter_cancelled_passes_its_slot_on() -> None:
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    try:
        pool = Pool(parse_url(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"), max_connections=1)
        first = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        pool.release(first)  # not reusable (no exchange finished): closed, its slot freed
        second = await pool.acquire()
        assert pool.open_connections == 1
        second.close()
        pool.release(second)
        await pool.aclose()
        with pytest.raises(TransportError):
            await pool.acquire()
    finally:
        server.close()
        for writer in accepted:
            writer.close()


# --- sessions (handshake era) -----------------------------------------------------------------------------------

INIT = jsonrpc.request_frame(
    0, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
)


def session_server(*, get_status: int = 405, expire_after: int | None = None) -> Handler:
    state = {"session": 0, "posts": 0}

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.method == "DELETE":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            return True
        if req.method == "GET":
            if get_status == 200:
                note = jsonrpc.notification_frame("notifications/tools/list_changed", None)
                writer.write(SSE_HEAD + chunk(b"data: " + note + b"\n\n"))
                await writer.drain()
                await asyncio.sleep(30)
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % get_status)
            return True
        msg = req.json()
        state["posts"] += 1
        if msg.get("method") == "initialize":
            state["session"] += 1
            answer = jsonrpc.result_frame(msg["id"], {"protocolVersion": "2025-06-18", "capabilities": {}})
            writer.write(json_response(answer, extra=b"Mcp-Session-Id: s-%d\r\n" % state["session"]))
            return True
        if expire_after is not None and state["posts"] > expire_after and state["session"] == 1:
            writer.write(json_response(b"", 404))
            return True
        return await answer_json(req, writer)

    return handler


async def test_session_id_version_get_405_and_delete_on_close() -> None:
    async with raw_server(session_server()) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(jsonrpc.notification_frame("notifications/initialized", None))
            await upstream.send(call(1))
            await sink.until(lambda: len(sink.frames) == 2 and any(r.method == "GET" for r in server.requests))
        init, *later = server.posts()
        assert "mcp-session-id" not in init.headers and "mcp-protocol-version" not in init.headers
        for req in later:
            assert req.headers["mcp-session-id"] == "s-1"
            assert req.headers["mcp-protocol-version"] == "2025-06-18"  # from the initialize result
        gets = [r for r in server.requests if r.method == "GET"]
        assert len(gets) == 1  # 405: no retry
        assert gets[0].headers["accept"] == "text/event-stream" and gets[0].headers["mcp-session-id"] == "s-1"
        deletes = [r for r in server.requests if r.method == "DELETE"]
        assert [d.headers["mcp-session-id"] for d in deletes] == ["s-1"]


async def test_get_stream_delivers_server_messages() -> None:
    async with raw_server(session_server(get_status=200)) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(jsonrpc.notification_frame("notifications/initialized", None))
            await sink.until(lambda: len(sink.frames) == 2)
        assert sink.messages()[1]["method"] == "notifications/tools/list_changed"


async def test_expired_session_reports_down_and_starts_over() -> None:
    async with raw_server(session_server(expire_after=1)) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(call(1))
            await sink.until(lambda: len(sink.frames) == 2)
            assert "expired" in sink.by_id(1)["error"]["message"]
            await sink.until(lambda: sink.ups == [False, True])
            assert "ended the session" in sink.downs[0]
            await upstream.send(INIT)  # what the pump replays after a restart
            await sink.until(lambda: len(sink.frames) == 3)
            await upstream.send(call(2))
            await sink.until(lambda: len(sink.frames) == 4)
        posts = server.posts()
        assert "mcp-session-id" not in posts[-2].headers  # the new initialize carries no stale session
        assert posts[-1].headers["mcp-session-id"] == "s-2"


async def test_interrupted_sse_response_is_resumed_with_last_event_id() -> None:
    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.method == "GET":
            # The replay of what followed event "e2" on the interrupted stream: here, the response.
            writer.write(SSE_HEAD + chunk(b"id: e3\ndata: " + result(5) + b"\n\n") + b"0\r\n\r\n")
            return True
        if req.method == "DELETE":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            return True
        msg = req.json()
        if msg.get("method") == "initialize":
            answer = jsonrpc.result_frame(msg["id"], {"protocolVersion": "2025-11-25", "capabilities": {}})
            writer.write(json_response(answer, extra=b"Mcp-Session-Id: s-1\r\n"))
            return True
        progress = jsonrpc.notification_frame("notifications/progress", {"progressToken": "t", "progress": 1})
        # A priming event, a progress event, then the server closes the stream early (SEP-1699 polling).
        events = b"id: e1\nretry: 10\ndata:\n\nid: e2\ndata: " + progress + b"\n\n"
        writer.write(SSE_HEAD + chunk(events) + b"0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(call(5))
            await sink.until(lambda: len(sink.frames) == 3)
        assert sink.messages()[1]["method"] == "notifications/progress"
        assert sink.by_id(5)["result"] == {"value": "ok"}
        (get,) = [r for r in server.requests if r.method == "GET"]
        assert get.headers["last-event-id"] == "e2" and get.headers["mcp-session-id"] == "s-1"


# --- modern cancellation, oversized -----------------------------------------------------------------------------


async def test_modern_cancel_closes_the_post_and_is_not_sent() -> None:
    closed = asyncio.Event()

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        try:
            assert await asyncio.wait_for(req.reader.read(1), 5) == b""  # the client closed the connection
        finally:
            closed.set()
        return False

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url)
        async with running(upstream) as sink:
            await upstream.send(call(1, meta=MODERN_META))
            await sink.until(lambda: len(server.requests) == 1)
            cancel = {"requestId": 1, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}
            await upstream.send(jsonrpc.notification_frame("notifications/cancelled", cancel))
            with anyio.fail_after(5):
                await closed.wait()
            await anyio.sleep(0.05)
        assert sink.frames == []  # a cancelled request gets no response
        assert len(server.requests) == 1


@pytest.mark.parametrize("how", ["json-length", "json-chunked", "sse"])
async def test_oversized_answers_are_capped(how: str) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"result":{"text":"' + b"x" * 300_000 + b'"}}'

    async def handler(req: Req, writer: asyncio.StreamWriter) -> bool:
        if req.json()["id"] != 1:
            return await answer_json(req, writer)
        if how == "json-length":
            writer.write(json_response(big))
        elif how == "json-chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(big), 10_000):
                writer.write(chunk(big[i : i + 10_000]))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(SSE_HEAD + chunk(b"data: " + big + b"\n\n") + b"0\r\n\r\n")
        return True

    async with raw_server(handler) as server:
        upstream = HttpUpstream("web", server.url, max_frame=100_000)
        async with running(upstream) as sink:
            await upstream.send(call(1))
            await sink.until(lambda: len(sink.frames) == 1)
            await upstream.send(call(2))  # still serving
            await sink.until(lambda: len(sink.frames) == 2)
        over = sink.frames[0]
        assert isinstance(over, Oversized)
        assert over.size == len(big) and over.head.startswith(b'{"jsonrpc":"2.0","id":1') and len(over.head) <= 4096
        assert sink.by_id(2)["result"] == {"value": "ok"}


# --- real servers -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _process(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_example_server_both_eras() -> None:
    port = free_port()
    with _process([PY, ECHO, "--http", str(port)], port) as url:
        # Handshake era: a session, the version from initialize, progress over SSE.
        legacy = HttpUpstream("echo", url)
        async with running(legacy) as sink:
            await legacy.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            assert sink.by_id(0)["result"]["protocolVersion"] == "2025-11-25"
            await legacy.send(jsonrpc.notification_frame("notifications/initialized", None))
            for i in range(1, 21):
                await legacy.send(call(i))
            await sink.until(lambda: len(sink.frames) == 21)
            assert {m["result"]["content"][0]["text"] for m in sink.messages()[1:]} == {"hi"}
        # 2026-07-28: no initialize, the version in every request's _meta, one POST each.
        modern = HttpUpstream("echo", url)
        async with running(modern) as sink:
            for i in range(1, 33):
                await modern.send(call(i, meta=MODERN_META))
            await sink.until(lambda: len(sink.frames) == 32)
            assert all(m["result"]["content"][0]["text"] == "hi" for m in sink.messages())


EVERYTHING = Path.home() / ".cache" / "cisora-mesh-tests" / "npm" / "node_modules" / ".bin" / "mcp-server-everything"


@pytest.mark.skipif(not EVERYTHING.exists() or shutil.which("node") is None, reason="server-everything not installed")
async def test_server_everything_over_http() -> None:
    """Sessions, the GET stream, progress over SSE and DELETE against the reference server (handshake era)."""
    port = free_port()
    with _process([str(EVERYTHING), "streamableHttp"], port, {"PORT": str(port)}) as url:
        upstream = HttpUpstream("everything", url)
        async with running(upstream) as sink:
            await upstream.send(INIT)
            await sink.until(lambda: len(sink.frames) == 1)
            assert sink.by_id(0)["result"]["serverInfo"]
            await upstream.send(jsonrpc.notification_frame("notifications/initialized", None))
            await upstream.send(jsonrpc.request_frame(1, "tools/list", {}))
            await upstream.send(
                jsonrpc.request_frame(2, "tools/call", {"name": "echo", "arguments": {"message": "over http"}})
            )
            steps = {"name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3}}
            steps["_meta"] = {"progressToken": "p"}
            await upstream.send(jsonrpc.request_frame(3, "tools/call", steps))
            await sink.until(lambda: all(any(m.get("id") == i for m in sink.messages()) for i in (1, 2, 3)))
            tools = {t["name"] for t in sink.by_id(1)["result"]["tools"]}
            assert {"echo", "get-sum"} <= tools
            assert sink.by_id(2)["result"]["content"][0]["text"] == "Echo: over http"
            kinds = [m.get("method") or m.get("id") for m in sink.messages()]
            assert kinds.count("notifications/progress") >= 2
            assert kinds.index("notifications/progress") < kinds.index(3)  # progress first, as it happened
        assert sink.downs == []


def test_configured_frame_limit_reaches_http_upstreams() -> None:
    from mcp_proxy.app import Runtime, build_upstreams
    from mcp_proxy.config import ProxySettings, ServerSettings
    from mcp_proxy.listeners.streamable_http import pump_factory

    url = "http://127.0.0.1:9/mcp"
    settings = ProxySettings(max_frame_bytes=123_456, servers=[ServerSettings(name="web", url=url)])
    (routed,) = build_upstreams(settings)
    assert isinstance(routed, HttpUpstream)
    assert routed.max_frame == 123_456
    runtime = Runtime(settings=settings, tenant="t", mesh=None, pins=None, audit=None)
    pump = pump_factory(runtime, upstream_url=url, command=[], name="web")(None, None)
    single = getattr(pump, "up", None)
    assert isinstance(single, HttpUpstream)
    assert single.max_frame == 123_456
