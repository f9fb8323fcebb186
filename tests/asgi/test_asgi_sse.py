"""Server-sent events scanned per event, over real HTTP (uvicorn on loopback), with secrets split across chunks."""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from _asgi_support import FORBIDDEN, OUTPUT_POLICY, TOKEN, Sink, serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cisora_mesh.asgi import CisoraMiddleware
from cisora_mesh.asgi._sse import SseSplitter
from cisora_mesh.events import Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.policy import PolicyEngine

REDACTED = "[REDACTED:GITHUB_TOKEN]"
HALF = len(TOKEN) // 2

# Each stream is a list of network chunks; `TOKEN[:HALF]` / `TOKEN[HALF:]` put the two halves of the secret in
# separate chunks of the same event.
STREAMS: dict[str, list[str]] = {
    "text": ["data: hello\n\n", f"data: here is the key {TOKEN[:HALF]}", f"{TOKEN[HALF:]} done\n\n", "data: bye\n\n"],
    "crlf": [f"data: key {TOKEN[:HALF]}", f"{TOKEN[HALF:]}\r", "\n\r", "\ndata: next\r\n\r\n"],
    "multiline": [f"event: note\ndata: line one\ndata: token {TOKEN[:HALF]}", f"{TOKEN[HALF:]}\n\n"],
    "fields": [f"id: {TOKEN[:HALF]}", f"{TOKEN[HALF:]}\n: comment {TOKEN}\ndata: visible\n\n"],
    "bom": ["\ufeffda", f"ta: {TOKEN}\n\n"],
    "unterminated": ["data: first\n\n", f"data: last {TOKEN[:HALF]}", TOKEN[HALF:]],
    "openai": [
        'data: {"choices": [{"delta": {"content": "the key is ' + TOKEN[:HALF],
        TOKEN[HALF:] + '"}}]}\n\n',
        "data: [DONE]\n\n",
    ],
    "forbidden": ["data: one\n\n", f"data: the {FORBIDDEN[:6]}", f"{FORBIDDEN[6:]} now\n\n", "data: after\n\n"],
}


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# Token-by-token streams, as chat APIs send them: the secret is split across many events, never whole in one.
SAID = f"Sure. The deploy key is {TOKEN} and the host is db1."
OPENAI_DELTAS = (
    [json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    + [json.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}) for p in _pieces(SAID)]
    + [json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), "[DONE]"]
)
ANTHROPIC_DELTAS = (
    [json.dumps({"type": "message_start", "message": {"id": "m1"}})]
    + [json.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    + [
        json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in _pieces(SAID)
    ]
    + [json.dumps({"type": "content_block_stop", "index": 0}), json.dumps({"type": "message_stop"})]
)
PLAN_DELTAS = [json.dumps({"choices": [{"delta": {"content": p}}]}) for p in _pieces(f"ok, the {FORBIDDEN} is")]
STREAMS["openai-deltas"] = [f"data: {d}\n\n" for d in OPENAI_DELTAS]
STREAMS["anthropic-deltas"] = [f"event: x\ndata: {d}\n\n" for d in ANTHROPIC_DELTAS]
STREAMS["plan-deltas"] = [f"data: {d}\n\n" for d in PLAN_DELTAS] + ["data: [DONE]\n\n"]


async def stream(request: Request) -> Response:
    name = request.path_params["name"]
    coded = request.query_params.get("gzip") == "1"
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)

    async def gen() -> AsyncIterator[bytes]:
        for chunk in STREAMS[name]:
            data = chunk.encode()
            yield c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH) if coded else data
        if coded:
            yield c.flush()

    headers = {"content-encoding": "gzip"} if coded else None
    return StreamingResponse(gen(), media_type="text/event-stream", headers=headers)


async def mcp(request: Request) -> Response:
    rpc: dict[str, Any] = await request.json()
    message = json.dumps(
        {"jsonrpc": "2.0", "id": rpc["id"], "result": {"content": [{"type": "text", "text": f"secret {TOKEN}"}]}}
    )
    cut = message.index(TOKEN) + HALF

    async def gen() -> AsyncIterator[bytes]:  # MCP streamable HTTP answers a POST with an SSE stream
        yield f"event: message\ndata: {message[:cut]}".encode()
        yield f"{message[cut:]}\n\n".encode()

    return StreamingResponse(gen(), media_type="text/event-stream")


async def big(request: Request) -> Response:
    async def gen() -> AsyncIterator[bytes]:
        yield b"data: " + b"x" * 300
        yield f" {TOKEN} ".encode() + b"y" * 300
        yield b"\n\ndata: small\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


ROUTES = [Route("/sse/{name}", stream), Route("/mcp", mcp, methods=["POST"]), Route("/big", big)]


def app_with(**options: Any) -> Starlette:
    # holdback_chars=4: far shorter than the secret, so only per-event reassembly (not the hold-back window) can
    # catch a secret split across chunks.
    options.setdefault("holdback_chars", 4)
    return Starlette(routes=ROUTES, middleware=[Middleware(CisoraMiddleware, **options)])


@pytest.fixture(scope="module")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="module")
def url(sink: Sink) -> Iterator[str]:
    with serve(app_with(mesh=Mesh(audit=sink), policy=PolicyEngine.from_text(OUTPUT_POLICY))) as base:
        yield base


def fetch(base: str, path: str, **params: str) -> tuple[int, str]:
    with httpx.Client(base_url=base, timeout=10) as c, c.stream("GET", path, params=params) as resp:
        return resp.status_code, "".join(resp.iter_text())


@pytest.mark.parametrize("coded", ["0", "1"])
def test_secret_split_across_chunks_inside_one_event_is_redacted(url: str, coded: str) -> None:
    status, text = fetch(url, "/sse/text", gzip=coded)
    assert status == 200
    assert text == f"data: hello\n\ndata: here is the key {REDACTED} done\n\ndata: bye\n\n"


def test_crlf_split_between_chunks(url: str) -> None:
    _, text = fetch(url, "/sse/crlf")
    assert TOKEN[:HALF] not in text
    assert text == f"data: key {REDACTED}\n\n\ndata: next\r\n\r\n"  # the LF of the split CRLF starts the next event


def test_multiline_data_and_other_fields_kept(url: str) -> None:
    _, text = fetch(url, "/sse/multiline")
    assert text == f"event: note\ndata: line one\ndata: token {REDACTED}\n\n"


def test_secret_in_id_field_and_comment_is_redacted(url: str) -> None:
    _, text = fetch(url, "/sse/fields")
    assert TOKEN[:HALF] not in text
    assert text == f"id: {REDACTED}\n: comment {REDACTED}\ndata: visible\n\n"


def test_byte_order_mark_does_not_hide_the_data_field(url: str) -> None:
    _, text = fetch(url, "/sse/bom")
    assert text == f"data: {REDACTED}\n\n"


def test_unterminated_last_event_is_scanned(url: str) -> None:
    _, text = fetch(url, "/sse/unterminated")
    assert text == f"data: first\n\ndata: last {REDACTED}\n"


def delta_text(text: str, path: tuple[str | int, ...] = ("choices", 0, "delta", "content")) -> tuple[str, list[str]]:
    """The text a client assembles from a stream of delta events, and the raw data of every event."""
    datas = [
        line[len("data: ") :] for event in text.split("\n\n") for line in event.split("\n") if line.startswith("data: ")
    ]
    joined = ""
    for data in datas:
        if data == "[DONE]":
            continue
        value: Any = json.loads(data)  # every delta event stays valid JSON
        for step in path:
            value = value[step] if isinstance(value, list) or step in value else ""
            if value == "":
                break
        joined += value if isinstance(value, str) else ""
    return joined, datas


def test_json_data_is_redacted_inside_strings_and_stays_json(url: str) -> None:
    _, text = fetch(url, "/sse/openai")
    joined, datas = delta_text(text)
    assert joined == f"the key is {REDACTED}"
    assert TOKEN[:HALF] not in text
    assert datas[-1] == "[DONE]"  # what the channel held went out before the end marker


@pytest.fixture(scope="module")
def deltas_url(sink: Sink) -> Iterator[str]:
    """The default hold-back window (256 characters): a secret streamed in pieces is caught while it is shorter."""
    options = {"mesh": Mesh(audit=sink), "policy": PolicyEngine.from_text(OUTPUT_POLICY), "holdback_chars": 256}
    with serve(app_with(**options)) as base:
        yield base


def test_a_secret_streamed_token_by_token_is_redacted_openai_style(deltas_url: str) -> None:
    status, text = fetch(deltas_url, "/sse/openai-deltas")
    assert status == 200
    joined, datas = delta_text(text)
    assert joined == SAID.replace(TOKEN, REDACTED)
    assert TOKEN[:9] not in text.replace("\n", "")  # no run of the secret survives anywhere in the stream
    assert datas[-1] == "[DONE]" and '"finish_reason": "stop"' in text  # framing events kept, in order


def test_a_secret_streamed_token_by_token_is_redacted_anthropic_style(deltas_url: str) -> None:
    _, text = fetch(deltas_url, "/sse/anthropic-deltas")
    joined, datas = delta_text(text, ("delta", "text"))
    assert joined == SAID.replace(TOKEN, REDACTED)
    assert TOKEN[:9] not in text.replace("\n", "")
    kinds = [json.loads(d)["type"] for d in datas]
    assert text.count("event: x\n") == len(datas)  # the flushed delta keeps its event line, as clients dispatch on it
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-2:] == ["content_block_stop", "message_stop"]
    assert set(kinds[2:-2]) == {"content_block_delta"}


def test_a_policy_block_streamed_token_by_token_ends_the_stream(deltas_url: str, sink: Sink) -> None:
    before = len(sink.records)
    _, text = fetch(deltas_url, "/sse/plan-deltas")
    joined, _ = delta_text(text.split("event: error")[0])
    assert FORBIDDEN not in joined and "[DONE]" not in text
    assert "urn:cisora:problem:response-blocked" in text
    (decision, _), *_ = sink.records[before:]
    assert decision.verdict is Verdict.BLOCK
    assert "asgi:sse-deltas" in decision.policy_ids


def test_mcp_streamable_http_result_event_is_redacted(url: str) -> None:
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "read", "arguments": {}}}
    with httpx.Client(base_url=url, timeout=10) as c:
        resp = c.post("/mcp", json=call)
    assert resp.status_code == 200
    head, data = resp.text.strip().split("\n")
    assert head == "event: message"
    message = json.loads(data[len("data: ") :])
    assert message == {
        "jsonrpc": "2.0",
        "id": 9,
        "result": {"content": [{"type": "text", "text": f"secret {REDACTED}"}]},
    }


def test_policy_block_split_across_chunks_ends_the_stream_in_band(url: str, sink: Sink) -> None:
    before = len(sink.records)
    status, text = fetch(url, "/sse/forbidden")
    assert status == 200
    assert text.startswith("data: one\n\nevent: error\ndata: ")
    assert "urn:cisora:problem:response-blocked" in text
    assert FORBIDDEN[:6] not in text
    assert "after" not in text
    (decision, _), *_ = sink.records[before:]
    assert decision.verdict is Verdict.BLOCK
    assert decision.policy_ids == ("asgi:sse-events",)


def test_the_meshs_own_rules_apply_to_streamed_events_too() -> None:
    """Rules configured on the mesh (not passed to the middleware) judge each streamed event, as they judge a
    buffered response."""
    with serve(app_with(mesh=Mesh(policy=PolicyEngine.from_text(OUTPUT_POLICY)))) as base:
        _, text = fetch(base, "/sse/forbidden")
    assert "urn:cisora:problem:response-blocked" in text
    assert FORBIDDEN[:6] not in text and "after" not in text


def test_event_over_the_limit_falls_back_to_holdback_redaction() -> None:
    with serve(app_with(max_sse_event_bytes=128, holdback_chars=64)) as base:
        _, text = fetch(base, "/big")
    assert TOKEN not in text
    assert REDACTED in text
    assert text.endswith("data: small\n\n")


def test_event_over_the_limit_can_end_the_stream_instead() -> None:
    with serve(app_with(max_sse_event_bytes=128, sse_overflow="block")) as base:
        status, text = fetch(base, "/big")
    assert status == 403  # nothing was sent yet: a clean problem
    assert TOKEN not in text
    assert "urn:cisora:problem:response-blocked" in text


def test_alert_mode_forwards_bytes_and_audits_the_event_findings() -> None:
    sink = Sink()
    with serve(app_with(mesh=Mesh(audit=sink), stream_mode="alert")) as base:
        _, text = fetch(base, "/sse/text")
    assert text == "".join(STREAMS["text"])
    ((decision, _),) = sink.records
    assert [f.rule_id for f in decision.findings] == ["DLP-SECRET-GITHUB-TOKEN"]
    assert decision.policy_ids == ("asgi:stream-alert-only",)


def test_alert_mode_finds_a_secret_streamed_token_by_token_without_touching_the_stream() -> None:
    sink = Sink()
    with serve(app_with(mesh=Mesh(audit=sink), stream_mode="alert", holdback_chars=256)) as base:
        _, text = fetch(base, "/sse/openai-deltas")
    assert text == "".join(STREAMS["openai-deltas"])
    ((decision, _),) = sink.records
    assert "DLP-SECRET-GITHUB-TOKEN" in [f.rule_id for f in decision.findings]
    assert decision.policy_ids == ("asgi:stream-alert-only", "asgi:sse-deltas")


# -- the splitter -----------------------------------------------------------------------------------------------

RAW = (
    "\ufeffdata: a\r\n\r\n"
    ": comment\rdata: b1\rdata:b2\r\rdata\n\n"
    "event: x\nid: 7\ndata: c\n\n"
    "retry: 10\n\n"
    "data: d\r\n\n"
    "database: not data\ndata:  e\n\n"
).encode()
EXPECTED = ["a", "b1\nb2", "", "c", None, "d", " e"]


def events_of(chunks: list[bytes]) -> tuple[list[str | None], bytes]:
    split = SseSplitter(max_event=1 << 16)
    events = [e for chunk in chunks for e in split.feed(chunk)]
    assert split.finish() is None
    return [e.data for e in events], b"".join(e.raw for e in events)


def test_splitter_in_one_piece() -> None:
    assert events_of([RAW]) == (EXPECTED, RAW)


def test_splitter_every_two_way_split() -> None:
    for i in range(1, len(RAW)):
        assert events_of([RAW[:i], RAW[i:]]) == (EXPECTED, RAW), i


def test_splitter_byte_at_a_time() -> None:
    assert events_of([RAW[i : i + 1] for i in range(len(RAW))]) == (EXPECTED, RAW)


def test_splitter_bounds_an_unterminated_event() -> None:
    split = SseSplitter(max_event=100)
    assert split.feed(b"data: ok\n\ndata: " + b"z" * 60) != []
    assert not split.too_large
    split.feed(b"z" * 60)
    assert split.too_large
    assert split.pending() == b"data: " + b"z" * 120
