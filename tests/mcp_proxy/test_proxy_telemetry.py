"""One span per forwarded message: names, semconv attributes, `_meta` trace parents, error status.

The proxy runs in this process with an injected tracer provider (no global provider is installed), over real
OS pipes and a real loopback HTTP socket, forwarding to examples/mcp_echo_server.py as a real child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from inproc import MODERN, MODERN_META, http_proxy, runtime, sse_messages, stdio_proxy
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from proxy_support import ECHO, PY

from mcp_proxy import jsonrpc
from mcp_proxy.telemetry import ProxyTelemetry

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
SECRET_TEXT = "hello-span-payload-7f3a"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _by_name(spans: tuple[ReadableSpan, ...], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert found, f"no {kind.name} span {name!r} in {[(s.name, s.kind.name) for s in spans]}"
    return found[-1]


def _no_payload(spans: tuple[ReadableSpan, ...]) -> None:
    for span in spans:
        for value in (span.attributes or {}).values():
            assert SECRET_TEXT not in str(value), span.name
            assert "Ignore all previous" not in str(value), span.name


def _check_call_spans(
    spans: tuple[ReadableSpan, ...], *, version: str, front: str, session_id: str | None, rid: str
) -> None:
    call = _by_name(spans, "tools/call echo", SpanKind.SERVER)
    attrs = dict(call.attributes or {})
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["gen_ai.tool.name"] == "echo"
    assert attrs["jsonrpc.request.id"] == rid
    assert attrs["network.transport"] == front
    assert attrs["mcp.protocol.version"] == version
    assert attrs.get("mcp.session.id") == session_id
    assert attrs["cisora.verdict"] == "allow" and attrs["cisora.decision.id"]
    # Parented on the W3C trace context the client put in params._meta (SEP-414).
    assert call.parent is not None and call.parent.is_remote
    assert format(call.context.trace_id, "032x") == TRACE_ID
    assert format(call.parent.span_id, "016x") == PARENT_SPAN
    # Its response is a CLIENT span (from the upstream), the child of the request's span.
    answer = _by_name(spans, "tools/call echo", SpanKind.CLIENT)
    assert answer.parent is not None and answer.parent.span_id == call.context.span_id
    assert dict(answer.attributes or {})["network.transport"] == "pipe"  # the upstream is a stdio child
    assert answer.status.status_code is StatusCode.UNSET

    # An injection in a result: withheld, and the response span names the decision.
    withheld = _by_name(spans, "tools/call fetch_page", SpanKind.CLIENT)
    assert dict(withheld.attributes or {})["cisora.verdict"] == "block"
    # A JSON-RPC error from the server: error.type is the code, status ERROR.
    failed = _by_name(spans, "no/such/method", SpanKind.CLIENT)
    assert dict(failed.attributes or {})["error.type"] == str(jsonrpc.METHOD_NOT_FOUND)
    assert failed.status.status_code is StatusCode.ERROR
    read = _by_name(spans, "resources/read", SpanKind.SERVER)
    assert dict(read.attributes or {})["mcp.resource.uri"] == "info://about"
    _no_payload(spans)


async def _exchange(request: Any, meta: dict[str, Any]) -> None:
    """The same calls in either era; `request(rid, method, params)` returns the response message."""
    ok = await request(2, "tools/call", {"name": "echo", "arguments": {"text": SECRET_TEXT}, "_meta": meta})
    assert ok["result"]["content"][0]["text"] == SECRET_TEXT
    bad = await request(3, "tools/call", {"name": "fetch_page", "arguments": {"url": "https://x"}, "_meta": meta})
    assert "withheld by policy" in bad["result"]["content"][0]["text"]
    missing = await request(4, "no/such/method", {"_meta": meta})
    assert missing["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
    about = await request(5, "resources/read", {"uri": "info://about", "_meta": meta})
    assert "result" in about


@pytest.mark.parametrize("era", ["2025-11-25", MODERN])
async def test_stdio_spans(era: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    rt = runtime(tmp_path, provider=provider)
    async with stdio_proxy(rt, [PY, ECHO]) as client:
        meta: dict[str, Any] = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
        if era == MODERN:
            meta.update(MODERN_META)
        else:
            await client.handshake()
        await _exchange(client.request, meta)
    spans = exporter.get_finished_spans()
    _check_call_spans(spans, version=era, front="pipe", session_id=None, rid="2")
    if era != MODERN:
        init = _by_name(spans, "initialize", SpanKind.SERVER)
        assert init.parent is None  # no _meta: a new trace
        assert _by_name(spans, "notifications/initialized", SpanKind.SERVER).status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("era", ["2025-11-25", MODERN])
async def test_http_spans(era: str, tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    rt = runtime(tmp_path, provider=provider)
    async with http_proxy(rt, [PY, ECHO]) as url, httpx.AsyncClient(timeout=30) as http:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        session_id: str | None = None
        meta: dict[str, Any] = {"traceparent": TRACEPARENT}
        if era == MODERN:
            headers["mcp-protocol-version"] = MODERN
            meta.update(MODERN_META)
        else:
            init = {
                "protocolVersion": era,
                "capabilities": {},
                "clientInfo": {"name": "span-test", "version": "1"},
            }
            resp = await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=headers
            )
            assert resp.status_code == 200, resp.text
            session_id = resp.headers["mcp-session-id"]
            headers.update({"mcp-session-id": session_id, "mcp-protocol-version": era})
            done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(url, json=done, headers=headers)).status_code == 202

        async def request(rid: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
            extra = {"mcp-method": method}
            if isinstance(params.get("name"), str):
                extra["mcp-name"] = params["name"]
            body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
            resp = await http.post(url, json=body, headers={**headers, **extra})
            return next(m for m in sse_messages(resp) if m.get("id") == rid)

        await _exchange(request, meta)
    spans = exporter.get_finished_spans()
    # The 2026-07-28 hub remaps ids internally (a client's id is not unique across HTTP requests), yet the spans
    # name the request, and the response answering it, by the id the client sent.
    call = _by_name(spans, "tools/call echo", SpanKind.SERVER)
    assert dict(call.attributes or {})["jsonrpc.request.id"] == "2"
    answer = _by_name(spans, "tools/call echo", SpanKind.CLIENT)
    assert dict(answer.attributes or {})["jsonrpc.request.id"] == "2"
    _check_call_spans(spans, version=era, front="tcp", session_id=session_id, rid="2")


async def test_traceparent_is_spliced_upstream(provider: TracerProvider) -> None:
    spans = ProxyTelemetry(provider).session(front="pipe")
    frame = jsonrpc.dumps(
        {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": {"traceparent": TRACEPARENT}},
        }
    )
    span, out = spans.from_client(jsonrpc.decode(frame), frame)
    assert span is not None
    ctx = span.get_span_context()
    span.end()
    mine = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    assert len(out) == len(frame) and out == frame.replace(TRACEPARENT.encode(), mine.encode())
    assert format(ctx.trace_id, "032x") == TRACE_ID  # same trace, the proxy's span as the new parent
    # The same value twice (in the arguments too): left alone rather than guessing which one is _meta's.
    twice = frame.replace(b'"text":"x"', b'"text":"' + TRACEPARENT.encode() + b'"')
    span, out = spans.from_client(jsonrpc.decode(twice), twice)
    assert span is not None and out == twice
    span.end()


def test_no_provider_means_no_work() -> None:
    from opentelemetry.trace import NoOpTracerProvider

    assert ProxyTelemetry(NoOpTracerProvider()).tracer() is None
    spans = ProxyTelemetry(NoOpTracerProvider()).session(front="pipe")
    frame = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    span, out = spans.from_client(jsonrpc.decode(frame), frame)
    assert span is None and out is frame


async def test_server_request_spans(tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A sampling request from the server: its span (CLIENT) carries the decision; a refusal is an error."""
    server = str(Path(__file__).with_name("sampling_server.py"))
    rt = runtime(tmp_path, provider=provider)
    async with stdio_proxy(rt, [PY, server]) as client:
        await client.handshake()
        await client.send(
            {"id": 1, "method": "tools/call", "params": {"name": "ask_model", "arguments": {"text": "hi"}}}
        )
        asked = await client.next()
        assert asked["method"] == "sampling/createMessage"
        answer = {"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"}
        await client.send({"id": asked["id"], "result": answer})
        assert (await client.response(1))["result"]["content"][0]["text"] == "sampled: ok"
        refused = await client.request(2, "tools/call", {"name": "ask_model", "arguments": {"text": "@injection"}})
        assert refused["result"]["content"][0]["text"] == "refused: -32010"
    spans = exporter.get_finished_spans()
    relayed, blocked = [s for s in spans if s.name == "sampling/createMessage" and s.kind is SpanKind.CLIENT]
    assert dict(relayed.attributes or {})["cisora.verdict"] == "allow"
    assert relayed.status.status_code is StatusCode.UNSET
    attrs = dict(blocked.attributes or {})
    assert attrs["cisora.verdict"] == "block" and attrs["error.type"] == "-32010"
    assert blocked.status.status_code is StatusCode.ERROR
    # The client's answer to the server's request is named after it.
    reply = _by_name(spans, "sampling/createMessage", SpanKind.SERVER)
    assert dict(reply.attributes or {})["jsonrpc.request.id"] == str(asked["id"])
    _no_payload(spans)
