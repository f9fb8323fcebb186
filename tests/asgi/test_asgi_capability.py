"""`CisoraMiddleware(capability_gate=...)`: MCP tools/call and A2A message/send over HTTP need a capability."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _asgi_support import client, make_app

from capability import AuditEvent, KeySet, Prefix, SigningKey, capability, issue, make_pop
from cisora_mesh.asgi import CisoraMiddleware
from cisora_mesh.auth.capability import CapabilityGate

NOW = 1_800_000_000
AUD = "api-1"
SERVICE = "svc"
PROBLEM = "urn:cisora:problem:capability-denied"


class _World:
    def __init__(self) -> None:
        self.anchor, self.agent = SigningKey.generate(), SigningKey.generate()
        self.token = issue(
            self.anchor,
            holder=self.agent.public,
            audience=AUD,
            now=NOW,
            capabilities=[
                capability(f"mcp://{SERVICE}/tools/reply", ["call"], {"/reply": Prefix(value="ok")}),
                capability(f"a2a://{SERVICE}/skills/chat", ["call"]),
            ],
        )
        self.events: list[AuditEvent] = []
        self.gate = CapabilityGate(
            KeySet.of(self.anchor), audience=AUD, clock=lambda: NOW + 1, on_event=self.events.append
        )

    def pop(self, method: str, resource: str, args: Any) -> str:
        return make_pop(self.agent, self.token, method=method, resource=resource, args=args, audience=AUD, now=NOW)

    def mcp_body(self, args: dict[str, Any], *, pop: str | None, token: bool = True) -> dict[str, Any]:
        meta = {"io.cisora/capability": self.token} if token else {}
        if pop is not None:
            meta["io.cisora/pop"] = pop
        return {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "reply", "arguments": args, "_meta": meta},
        }


def _denied(response: Any) -> bool:
    if response.status_code != 403:
        return False
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["type"] == PROBLEM
    # the public problem never names the private reason
    assert not any(r in json.dumps(body) for r in ("pop_", "not_granted", "expired", "missing_token"))
    return True


async def test_mcp_tools_call_needs_a_granting_token() -> None:
    w = _World()
    app = make_app(capability_gate=w.gate, capability_service=SERVICE)
    res = f"mcp://{SERVICE}/tools/reply"
    async with client(app) as c:
        ok = {"reply": "ok fine"}
        r = await c.post("/mcp", json=w.mcp_body(ok, pop=w.pop("tools/call", res, ok)))
        assert r.status_code == 200 and r.json()["result"]["content"][0]["text"] == "ok fine"
        assert _denied(await c.post("/mcp", json=w.mcp_body(ok, pop=None, token=False)))
        assert _denied(await c.post("/mcp", json=w.mcp_body(ok, pop=None)))
        bad = {"reply": "nope"}
        assert _denied(await c.post("/mcp", json=w.mcp_body(bad, pop=w.pop("tools/call", res, bad))))
        # credentials in headers work too
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "reply", "arguments": ok}}
        headers = {"Cisora-Capability": w.token, "Cisora-PoP": w.pop("tools/call", res, ok)}
        assert (await c.post("/mcp", json=body, headers=headers)).status_code == 200
        # other JSON-RPC methods are not gated
        r = await c.post("/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert r.status_code == 200
        # a batch cannot smuggle an ungranted call, nor can a text/plain body
        batch = [{"jsonrpc": "2.0", "id": 4, "method": "ping"}, w.mcp_body(bad, pop=None)]
        assert _denied(await c.post("/echo", json=batch))
        raw = json.dumps(w.mcp_body(ok, pop=None, token=False))
        assert _denied(await c.post("/echo", content=raw, headers={"content-type": "text/plain"}))
    assert [e.reason for e in w.events] == [
        "ok",
        "missing_token",
        "pop_missing",
        "not_granted",
        "ok",
        "not_granted",
        "missing_token",
    ]


async def test_a2a_message_send_needs_a_granting_token() -> None:
    w = _World()
    app = make_app(capability_gate=w.gate, capability_service=SERVICE)
    message = {"role": "user", "parts": [{"kind": "text", "text": "hi"}], "messageId": "m1"}

    def body(skill: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"message": message}
        if skill is not None:
            params["metadata"] = {"io.cisora/skill": skill}
        return {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": params}

    async with client(app) as c:
        pop = w.pop("message/send", f"a2a://{SERVICE}/skills/chat", message)
        r = await c.post("/a2a", json=body("chat"), headers={"Cisora-Capability": w.token, "Cisora-PoP": pop})
        assert r.status_code == 200 and r.json()["result"]["parts"][0]["text"] == "you said: hi"
        pop = w.pop("message/send", f"a2a://{SERVICE}/skills/admin", message)
        assert _denied(
            await c.post("/a2a", json=body("admin"), headers={"Cisora-Capability": w.token, "Cisora-PoP": pop})
        )
        assert _denied(await c.post("/a2a", json=body(None), headers={"Cisora-Capability": w.token}))
        assert _denied(await c.post("/a2a", json=body("chat")))


async def test_gate_is_optional_and_needs_a_service_name() -> None:
    async with client(make_app()) as c:
        assert (
            await c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}})
        ).status_code == 200
    w = _World()
    with pytest.raises(ValueError, match="capability_service"):
        CisoraMiddleware(make_app(), capability_gate=w.gate)


async def test_gate_sees_through_gzip_and_refuses_what_it_cannot_read() -> None:
    import gzip

    w = _World()
    app = make_app(capability_gate=w.gate, capability_service=SERVICE, unknown_encoding="unsafe_pass")
    raw = json.dumps(w.mcp_body({"reply": "ok"}, pop=None, token=False)).encode()
    async with client(app) as c:
        # a gzip body is decoded before the gate reads it: the missing token is seen
        r = await c.post("/mcp", content=gzip.compress(raw), headers={"content-encoding": "gzip"})
        assert _denied(r)
        # a coding nobody can read here is refused even with unsafe_pass: authorization fails closed
        r = await c.post("/mcp", content=b"\x0b\x02\x80", headers={"content-encoding": "br"})
        assert r.status_code == 415
        assert r.json()["type"] == "urn:cisora:problem:unsupported-content-encoding"
    assert [e.reason for e in w.events] == ["missing_token"]
