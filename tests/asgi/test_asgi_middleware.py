from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _asgi_support import CARD, FORBIDDEN, INJECTION, OUTPUT_POLICY, TOKEN, Sink, client, make_app, middleware_of
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cisora_mesh.asgi import CisoraMiddleware
from cisora_mesh.asgi.middleware import ACTOR, EVAL_ERROR_RULE
from cisora_mesh.events import Subject, Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.policy import PolicyEngine, starter_pack
from cisora_mesh.policy.lifecycle import DecisionState, Lifecycle

PROBLEM = "application/problem+json"


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": text}]}


def assert_problem(resp: Any, status: int, slug: str, *, secret: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["type"] == f"urn:cisora:problem:{slug}"
    assert body["status"] == status
    assert body["instance"] == f"urn:uuid:{body['request_id']}"
    assert {"title", "detail"} <= set(body)
    if secret is not None:
        assert secret not in resp.text
    return body


async def test_clean_chat_request_passes_unchanged() -> None:
    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink))) as c:
        resp = await c.post("/echo", json=chat("What is the capital of France?"))
    assert resp.status_code == 200
    assert json.loads(resp.json()["received"]) == chat("What is the capital of France?")
    assert [d.verdict for d, _ in sink.records] == [Verdict.ALLOW, Verdict.ALLOW]  # request and response


async def test_injection_in_chat_is_blocked_with_a_problem() -> None:
    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink))) as c:
        resp = await c.post("/echo", json=chat(INJECTION), headers={"authorization": "Bearer s3cr3t"})
    body = assert_problem(resp, 403, "request-blocked", secret="Ignore all previous")
    decision, event = sink.records[0]
    assert body["request_id"] == event.id == decision.event_id
    assert body["decision_id"] == decision.id
    assert "s3cr3t" not in repr(sink.records)  # headers are never scanned, stored or logged


async def test_secret_in_chat_is_redacted_before_the_app_sees_it() -> None:
    async with client(make_app()) as c:
        resp = await c.post("/echo", json=chat(f"my token is {TOKEN} ok"))
    assert resp.status_code == 200
    out = resp.json()
    received = json.loads(out["received"])
    assert received["messages"][1]["content"] == "my token is [REDACTED:GITHUB_TOKEN] ok"
    assert received["messages"][0]["content"] == "be nice"
    assert int(out["content_length"]) == out["length"]  # Content-Length fixed after the rewrite
    assert TOKEN not in resp.text


async def test_mcp_tool_call_arguments_are_redacted_and_policy_blocks_destructive_tools() -> None:
    app = make_app(policy=starter_pack())
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"q": "hello", "reply": "fine"}},
    }
    async with client(app) as c:
        ok = await c.post("/mcp", json=call)
        assert ok.json()["result"]["content"][0]["text"] == "fine"
        call["params"]["name"] = "delete_repo"  # type: ignore[index]
        blocked = await c.post("/mcp", json=call)
        body = assert_problem(blocked, 403, "request-blocked")
        assert body["decision_id"]
        # the starter pack blocks secrets in tool arguments outright
        call["params"] = {"name": "search", "arguments": {"q": TOKEN}}
        assert_problem(await c.post("/mcp", json=call), 403, "request-blocked", secret=TOKEN)


async def test_mcp_redaction_without_policy_and_tool_result_scanning() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"q": f"x {TOKEN}", "reply": f"result {TOKEN}"}},
    }
    async with client(make_app()) as c:
        resp = await c.post("/mcp", json=call)
    assert resp.status_code == 200
    # the app received redacted arguments (reply echoes one of them back) ...
    assert resp.json()["result"]["content"][0]["text"] == "result [REDACTED:GITHUB_TOKEN]"
    assert TOKEN not in resp.text


async def test_mcp_tool_result_is_redacted_on_the_way_back() -> None:
    async def leaky(request: Request) -> Response:
        rpc = await request.json()
        return JSONResponse(
            {"jsonrpc": "2.0", "id": rpc["id"], "result": {"content": [{"type": "text", "text": f"secret {TOKEN}"}]}}
        )

    app = Starlette(routes=[Route("/mcp", leaky, methods=["POST"])], middleware=[])
    app.add_middleware(CisoraMiddleware)
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "read", "arguments": {}}}
    async with client(app) as c:
        resp = await c.post("/mcp", json=call)
    assert resp.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "secret [REDACTED:GITHUB_TOKEN]"}]},
    }
    assert int(resp.headers["content-length"]) == len(resp.content)


async def test_a2a_message_parts_are_scanned_both_ways() -> None:
    def send(*texts: str) -> dict[str, Any]:
        parts = [{"kind": "text", "text": t} for t in texts]
        return {
            "jsonrpc": "2.0",
            "id": "1",
            "method": "message/send",
            "params": {"message": {"role": "user", "messageId": "m1", "parts": parts}, "metadata": {"skill": "chat"}},
        }

    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink))) as c:
        resp = await c.post("/a2a", json=send("hello", f"key {TOKEN} here", "bye"))
        assert resp.status_code == 200
        parts = resp.json()["result"]["parts"]
        assert [p["text"] for p in parts] == [
            "you said: hello",
            "you said: key [REDACTED:GITHUB_TOKEN] here",
            "you said: bye",
        ]
        assert sink.records[0][1].skill == "chat"  # type: ignore[attr-defined]
        blocked = await c.post("/a2a", json={**send(INJECTION), "method": "SendMessage"})
        assert_problem(blocked, 403, "request-blocked")


async def test_review_then_approve_then_retry_exact_request() -> None:
    lifecycle = Lifecycle()
    policy = PolicyEngine.from_text('rule R review tool_call when tool.name == "wire_money"')
    app = make_app(policy=policy, lifecycle=lifecycle)
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "wire_money", "arguments": {"amount": 5, "reply": "sent"}},
    }
    async with client(app) as c:
        first = await c.post("/mcp", json=call)
        body = assert_problem(first, 409, "review-required")
        decision_id = body["decision_id"]
        assert body["approval_header"] == "cisora-approval"
        assert lifecycle.get(decision_id).state is DecisionState.AWAITING_APPROVAL
        # retrying before approval is an illegal transition: 409 with its own type
        early = await c.post("/mcp", json=call, headers={"cisora-approval": decision_id})
        assert_problem(early, 409, "illegal-transition")
        lifecycle.approve(decision_id, actor="alice")
        # a changed request is not covered by the approval
        changed = {**call, "params": {"name": "wire_money", "arguments": {"amount": 5000, "reply": "sent"}}}
        assert_problem(
            await c.post("/mcp", json=changed, headers={"cisora-approval": decision_id}), 409, "approval-invalid"
        )
        # key order does not matter: the digest is canonical
        reordered = {"params": call["params"], "method": "tools/call", "id": 1, "jsonrpc": "2.0"}
        ok = await c.post("/mcp", json=reordered, headers={"cisora-approval": decision_id})
        assert ok.status_code == 200
        assert ok.json()["result"]["content"][0]["text"] == "sent"
        assert lifecycle.get(decision_id).state is DecisionState.EXECUTED
        # one approval, one execution
        again = await c.post("/mcp", json=call, headers={"cisora-approval": decision_id})
        assert_problem(again, 409, "illegal-transition")
        unknown = await c.post("/mcp", json=call, headers={"cisora-approval": "nope"})
        assert_problem(unknown, 404, "unknown-decision")
    assert middleware_of(app).stats.approvals_used == 1


async def test_malformed_json_is_a_400_problem() -> None:
    async with client(make_app()) as c:
        for raw in (b'{"messages": [', b"\xff\xfe", b"[1, 2", b'{"a": "' + TOKEN.encode() + b'"'):
            resp = await c.post("/echo", content=raw, headers={"content-type": "application/json"})
            assert_problem(resp, 400, "malformed-json", secret=TOKEN)


async def test_oversized_bodies_are_413_by_declared_and_actual_length() -> None:
    async with client(make_app(max_body_bytes=100)) as c:
        resp = await c.post("/echo", json={"x": "a" * 200})
        assert_problem(resp, 413, "payload-too-large")

        async def chunks() -> Any:
            for _ in range(5):
                yield b"a" * 40  # no Content-Length: chunked upload, counted as it arrives

        resp = await c.post("/echo", content=chunks(), headers={"content-type": "application/json"})
        assert_problem(resp, 413, "payload-too-large")
        assert (await c.post("/echo", json={"x": "a" * 50})).status_code == 200


async def test_non_json_passes_or_is_415_by_option() -> None:
    async with client(make_app()) as c:
        resp = await c.post("/echo", content=b"plain body", headers={"content-type": "text/plain"})
        assert resp.json()["received"] == "plain body"
        assert (await c.get("/echo")).status_code == 200  # no body: nothing to scan
    async with client(make_app(non_json="reject")) as c:
        resp = await c.post("/echo", content=b"plain body", headers={"content-type": "text/plain"})
        assert_problem(resp, 415, "unsupported-media-type")
        assert (await c.post("/echo", json={"a": 1})).status_code == 200


async def test_buffered_json_and_text_responses_are_redacted_or_blocked() -> None:
    app = make_app(policy=PolicyEngine.from_text(OUTPUT_POLICY))
    async with client(app) as c:
        resp = await c.get("/leak")
        assert resp.status_code == 200
        assert resp.json() == {
            "answer": "your token is [REDACTED:GITHUB_TOKEN]",
            "n": 1,
            "nested": [{"note": "again [REDACTED:GITHUB_TOKEN]"}],
        }
        assert int(resp.headers["content-length"]) == len(resp.content)
        text = await c.get("/text")
        assert text.text == "plain [REDACTED:GITHUB_TOKEN] text"
        assert int(text.headers["content-length"]) == len(text.content)
        blocked = await c.get("/leak", params={"what": "forbidden"})
        assert_problem(blocked, 403, "response-blocked", secret=FORBIDDEN)
        clean = await c.get("/leak", params={"what": "clean"})
        assert clean.json()["answer"] == "all good"
        broken = await c.get("/broken")  # the app's own malformed JSON is scanned as text
        assert TOKEN not in broken.text
        binary = await c.get("/binary")  # not text: passed through untouched
        assert binary.content == f"bin {TOKEN}".encode()
    stats = middleware_of(app).stats
    assert (stats.responses_redacted, stats.responses_blocked) == (3, 1)


async def test_response_scanning_can_be_disabled() -> None:
    async with client(make_app(scan_responses=False)) as c:
        assert TOKEN in (await c.get("/leak")).text


@pytest.mark.parametrize("size", [1, 3, 7, 16, 40, 1000])
async def test_streaming_redaction_across_chunk_boundaries(size: int) -> None:
    app = make_app(holdback_chars=64)
    async with client(app) as c:
        resp = await c.get("/stream", params={"size": str(size)})
    assert resp.status_code == 200
    assert resp.text == "start of stream; token=[REDACTED:GITHUB_TOKEN]; end of stream"
    assert "content-length" not in resp.headers or int(resp.headers["content-length"]) == len(resp.content)


async def test_sse_stream_is_redacted_and_audited_once() -> None:
    sink = Sink()
    events = f"data: hello\n\ndata: the key is {TOKEN}\n\ndata: bye\n\n"
    async with client(make_app(mesh=Mesh(audit=sink))) as c:
        resp = await c.get("/stream", params={"size": "5", "type": "text/event-stream", "text": events})
    assert resp.text == "data: hello\n\ndata: the key is [REDACTED:GITHUB_TOKEN]\n\ndata: bye\n\n"
    ((decision, _),) = sink.records
    assert decision.verdict is Verdict.REDACT
    assert [f.rule_id for f in decision.findings] == ["DLP-SECRET-GITHUB-TOKEN"]
    assert decision.findings[0].start == len("the key is ")  # spans are offsets into the event's data
    assert decision.policy_ids == ("asgi:sse-events",)


async def test_stream_alert_only_mode_passes_bytes_but_audits() -> None:
    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink), stream_mode="alert")) as c:
        resp = await c.get("/stream", params={"size": "4"})
    assert TOKEN in resp.text
    ((decision, _),) = sink.records
    assert [f.rule_id for f in decision.findings] == ["DLP-SECRET-GITHUB-TOKEN"]
    assert decision.policy_ids == ("asgi:stream-alert-only",)


async def test_stream_blocked_mid_way_ends_without_a_second_start() -> None:
    text = "x" * 300 + " " + FORBIDDEN + " " + "y" * 50
    async with client(make_app(holdback_chars=32, policy=PolicyEngine.from_text(OUTPUT_POLICY))) as c:
        plain = await c.get("/stream", params={"size": "50", "text": text})
        events = "".join(f"data: {'x' * 20} {i}\n\n" for i in range(15)) + f"data: {FORBIDDEN}\n\ndata: after\n\n"
        sse = await c.get("/stream", params={"size": "50", "text": events, "type": "text/event-stream"})
        # no SSE framing at all: nothing is a complete event, so nothing was sent before the block
        unframed = await c.get("/stream", params={"size": "50", "text": text, "type": "text/event-stream"})
        early = await c.get("/stream", params={"size": "500", "text": FORBIDDEN})
    assert plain.status_code == 200  # already started: truncated, never restarted (httpx asserts one start)
    assert FORBIDDEN not in plain.text
    assert plain.text.startswith("x" * 100)
    assert sse.text.startswith(events[: events.index("data: " + FORBIDDEN)])  # the events before it went out
    assert "event: error" in sse.text
    assert "urn:cisora:problem:response-blocked" in sse.text
    assert FORBIDDEN not in sse.text
    assert "after" not in sse.text
    assert_problem(unframed, 403, "response-blocked", secret=FORBIDDEN)
    assert_problem(early, 403, "response-blocked")  # blocked before anything was sent: a clean problem


class Boom:
    name = "boom"

    def run(self, ctx: Any) -> None:
        raise RuntimeError(f"detector crashed on {ctx.event!r}")


async def test_fail_open_forwards_audits_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    mesh = Mesh(audit=sink)
    app = make_app(mesh=mesh)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("policy store unreachable")

    async with client(app) as c:
        await c.get("/echo")  # build the stack
        mw = middleware_of(app)
        monkeypatch.setattr(mw.evaluator, "aevaluate", broken)
        resp = await c.post("/echo", json=chat(INJECTION))
    assert resp.status_code == 200
    assert mw.stats.fail_open >= 1
    failure = next(d for d, _ in sink.records if d.findings and d.findings[0].rule_id == EVAL_ERROR_RULE)
    assert failure.verdict is Verdict.ALLOW
    assert failure.findings[0].label == "RuntimeError"


async def test_fail_closed_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(fail_mode="closed")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    async with client(app) as c:
        await c.get("/echo")
        mw = middleware_of(app)
        monkeypatch.setattr(mw.evaluator, "aevaluate", broken)
        resp = await c.post("/echo", json=chat("hi"))
        assert_problem(resp, 503, "evaluation-unavailable")
        leak = await c.get("/leak")  # responses fail closed too
        assert_problem(leak, 403, "response-blocked", secret=TOKEN)
    assert mw.stats.fail_closed == 2


async def test_detector_crash_inside_pipeline_is_fail_open_by_default() -> None:
    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink, stages=[Boom()]))) as c:
        resp = await c.post("/echo", json=chat("hello"))
    assert resp.status_code == 200
    assert sink.records[0][0].findings[0].rule_id == "PIPE-STAGE-ERROR"


async def test_policy_log_only_and_card_review_from_starter_pack() -> None:
    sink = Sink()
    async with client(make_app(mesh=Mesh(audit=sink), policy=starter_pack())) as c:
        resp = await c.post("/echo", json=chat(f"my card is {CARD}"))
    body = assert_problem(resp, 409, "review-required", secret=CARD)
    decision = sink.records[0][0]
    assert body["decision_id"] == decision.id
    assert "policy:starter@2026.11.1" in decision.policy_ids
    assert "rule:STARTER-PCI-002@1" in decision.policy_ids


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = CisoraMiddleware(inner)
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_client_disconnect_while_reading_body_ends_quietly() -> None:
    called = False

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise AssertionError("nothing must be sent")

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", b"application/json")]}
    await CisoraMiddleware(inner)(scope, receive, send)
    assert not called


@pytest.mark.parametrize(
    "options",
    [
        {"max_body_bytes": -1},
        {"non_json": "maybe"},
        {"stream_mode": "loud"},
        {"holdback_chars": 0},
        {"fail_mode": "sideways"},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any of several messages
        CisoraMiddleware(make_app(), **options)


async def test_review_lifecycle_goes_to_the_mesh_audit_store(tmp_path: Path) -> None:
    """Without an explicit lifecycle, a review decision's transitions land in the mesh's chained audit store,
    under the tenant of the request's subject."""
    from cisora_mesh.audit import open_store

    policy = PolicyEngine.from_text('rule R review tool_call when tool.name == "wire_money"')
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "wire_money", "arguments": {}}}
    with open_store(None, data_dir=tmp_path) as store:
        inner = make_app(mesh=Mesh(audit=store), policy=policy)

        async def as_acme(scope: Any, receive: Any, send: Any) -> None:
            await inner({**scope, "cisora.subject": Subject(tenant="acme")}, receive, send)

        async with client(as_acme) as c:
            body = assert_problem(await c.post("/mcp", json=call), 409, "review-required")
            decision_id = body["decision_id"]
            middleware_of(inner).lifecycle.approve(decision_id, actor="alice")
            ok = await c.post("/mcp", json=call, headers={"cisora-approval": decision_id})
            assert ok.status_code == 200
        moves = [r["record"] for r in store.tail(50) if r["record"]["kind"] == "transition"]
        assert [(m["from_state"], m["to_state"], m["actor"], m["tenant"]) for m in moves] == [
            ("created", "awaiting_approval", ACTOR, "acme"),
            ("awaiting_approval", "approved", "alice", "acme"),
            ("approved", "executed", ACTOR, "acme"),
        ]
        assert {m["decision_id"] for m in moves} == {decision_id}
        assert store.verify().ok


async def test_a_blocked_request_waits_for_its_durable_record_without_stalling_the_event_loop(
    tmp_path: Path,
) -> None:
    """A preventive decision is durable before it is enforced; while its commit is pending, the worker's event loop
    keeps serving (here: ticking), instead of sitting in fsync."""
    import asyncio
    import itertools
    import threading

    from cisora_mesh.audit import open_store

    with open_store(None, data_dir=tmp_path) as store:
        gate = threading.Event()
        commit = store._commit

        def gated(jobs: list[Any]) -> bool:
            assert gate.wait(10), "gate never opened"
            return commit(jobs)

        store._commit = gated  # type: ignore[method-assign]
        async with client(make_app(mesh=Mesh(audit=store))) as c:
            task = asyncio.create_task(c.post("/echo", json=chat(INJECTION)))
            opener = threading.Timer(0.5, gate.set)
            opener.start()
            loop = asyncio.get_running_loop()
            ticks = []
            while not task.done():
                ticks.append(loop.time())
                await asyncio.sleep(0.01)
            opener.cancel()
            gate.set()
            resp = await task
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) > 10 and max(gaps) < 0.3, "the event loop stalled while the block's record was committed"
        body = assert_problem(resp, 403, "request-blocked")
        assert store.tail(1)[0]["record"]["decision_id"] == body["decision_id"]  # durable before the 403
