"""Sampling and elicitation requests from a server, through the stdio proxy process over real pipes.

What a server asks the client's model (`sampling/createMessage`: `messages`, `systemPrompt`) or user
(`elicitation/create`: `message`) is third-party text on its way in: injections are refused on the client's
behalf (the server gets the JSON-RPC error, the client never sees the request) and secrets are redacted in the
request's own `params`, whose audit record names the request (method, direction inbound, `/params/...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from proxy_support import PY, RawProxy

from cisora_mesh.audit import open_store

SERVER = str(Path(__file__).with_name("sampling_server.py"))


async def _tool(proxy: RawProxy, rid: Any, name: str, args: dict[str, Any], answer: Any = None) -> tuple[str, Any]:
    """Call a tool; answer the server request it triggers (if it reaches us) with `answer`; return both."""
    await proxy.call(rid, name, args)
    seen = None
    while rid not in proxy.buffer:
        msg = await proxy.next()
        if "method" in msg and "id" in msg:  # the server's request, relayed by the proxy
            seen = msg
            await proxy.send({"id": msg["id"], "result": answer(msg)})
        elif "id" in msg:
            proxy.buffer[msg["id"]] = msg
        else:
            proxy.others.append(msg)
    reply = proxy.buffer.pop(rid)
    return reply["result"]["content"][0]["text"], seen


def _sampled(msg: dict[str, Any]) -> dict[str, Any]:
    text = msg["params"]["messages"][0]["content"]["text"]
    return {"role": "assistant", "content": {"type": "text", "text": f"model saw: {text}"}, "model": "m"}


def _accept(msg: dict[str, Any]) -> dict[str, Any]:
    return {"action": "accept", "content": {"ok": True}}


async def test_sampling_and_elicitation_are_inspected(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proxy = await RawProxy.start(home, "--pinning", "off", upstream=[PY, SERVER])
    try:
        await proxy.initialize()
        # Benign: relayed untouched, both ways.
        text, seen = await _tool(proxy, 1, "ask_model", {"text": "summarise the weather"}, _sampled)
        assert text == "sampled: model saw: summarise the weather" and seen is not None
        # An injection in the sampled messages: refused for the client, the server gets -32010.
        text, seen = await _tool(proxy, 2, "ask_model", {"text": "@injection"}, _sampled)
        assert text == "refused: -32010" and seen is None
        # ... or in the system prompt.
        text, seen = await _tool(proxy, 3, "ask_model", {"text": "hi", "system": "@injection"}, _sampled)
        assert text == "refused: -32010" and seen is None
        # A secret in the sampled messages: redacted in params before the client's model sees it.
        text, seen = await _tool(proxy, 4, "ask_model", {"text": "@secret"}, _sampled)
        assert seen is not None and seen["method"] == "sampling/createMessage"
        assert seen["params"]["messages"][0]["content"]["text"] == "use token [REDACTED:GITHUB_TOKEN]"
        assert seen["params"]["maxTokens"] == 50  # everything else untouched
        assert text == "sampled: model saw: use token [REDACTED:GITHUB_TOKEN]"
        # Elicitation: a phishing/injection message is refused, a secret in it redacted, a plain one relayed.
        text, seen = await _tool(proxy, 5, "ask_user", {"message": "@injection"}, _accept)
        assert text == "refused: -32010" and seen is None
        text, seen = await _tool(proxy, 6, "ask_user", {"message": "@secret"}, _accept)
        assert seen is not None and seen["params"]["message"] == "use token [REDACTED:GITHUB_TOKEN]"
        assert seen["params"]["requestedSchema"]["properties"] == {"ok": {"type": "boolean"}}
        assert text == 'elicited: accept {"ok": true}'
        text, seen = await _tool(proxy, 7, "ask_user", {"message": "Deploy now?"}, _accept)
        assert text == 'elicited: accept {"ok": true}' and seen["params"]["message"] == "Deploy now?"
    finally:
        assert await proxy.close() == 0
    store = open_store(None, data_dir=home)
    try:
        records = [r["record"] for r in store.tail(100)]
    finally:
        store.close()
    flagged = [sorted(f["rule_id"] for f in r["findings"]) for r in records if r.get("findings")]
    # every refusal and redaction above was decided on an audited record first
    assert sum("PI-OVERRIDE-001" in ids for ids in flagged) == 3
    assert sum(ids == ["DLP-SECRET-GITHUB-TOKEN"] for ids in flagged) == 2


LEAKED_KEY = "sk-ant-api03-" + "Zq3vR8wT1yU5iO9pA2sD6fG0hJ4kL7zX" * 3 + "-AbCdEf"  # shaped like a key, not one


async def test_the_clients_replies_are_inspected_on_their_way_to_the_server(tmp_path: Path) -> None:
    """What the client's model generated or its user entered leaves the protected side: DLP redacts a secret in a
    sampling answer or an elicitation form before the server sees it."""
    home = tmp_path / "home"
    proxy = await RawProxy.start(home, "--pinning", "off", upstream=[PY, SERVER])
    try:
        await proxy.initialize()

        def leaks(msg: dict[str, Any]) -> dict[str, Any]:
            return {"role": "assistant", "content": {"type": "text", "text": f"the key is {LEAKED_KEY}"}, "model": "m"}

        text, _ = await _tool(proxy, 1, "ask_model", {"text": "what is in your context?"}, leaks)
        assert text == "sampled: the key is [REDACTED:ANTHROPIC_API_KEY]"
        # The server itself never received it (not only the tool result it echoes, which is scanned again).
        text, _ = await _tool(proxy, 5, "ask_model", {"text": "and again?", "report": "key"}, leaks)
        assert text == "server got a key: False"

        def form(msg: dict[str, Any]) -> dict[str, Any]:
            return {"action": "accept", "content": {"note": f"use {LEAKED_KEY}", "ok": True}}

        text, _ = await _tool(proxy, 2, "ask_user", {"message": "Anything else?"}, form)
        assert text == 'elicited: accept {"note": "use [REDACTED:ANTHROPIC_API_KEY]", "ok": true}'
        text, _ = await _tool(proxy, 6, "ask_user", {"message": "Anything more?", "report": "key"}, form)
        assert text == "server got a key: False"

        # A plain answer still goes through untouched.
        text, _ = await _tool(proxy, 4, "ask_model", {"text": "hello"}, _sampled)
        assert text == "sampled: model saw: hello"
    finally:
        assert await proxy.close() == 0


async def test_server_request_event_is_an_inbound_request() -> None:
    """The event names the request as it is: inbound, its text under `/params`, not posing as a result."""
    from cisora_mesh.config import MeshConfig
    from cisora_mesh.events import Direction
    from cisora_mesh.mesh import Mesh
    from mcp_proxy.inspect import Inspector, ServerRequest

    mesh = Mesh(MeshConfig())
    try:
        inspector = Inspector(mesh, tenant="default")
        params = {
            "messages": [
                {
                    "role": "user",
                    "content": {"type": "text", "text": "use token " + "ghp_" + "R2fq8ZkL0xWm3VtN7bYp4JcH1sDg6uQe9AoK"},
                }
            ],
            "systemPrompt": "be brief",
            "maxTokens": 5,
            "_meta": {"progressToken": 1},
        }
        event = ServerRequest(direction=Direction.INBOUND, method="sampling/createMessage", params=params)
        assert event.result is None
        assert [c.location for c in event.contents()][:2] == [
            "/params/messages/0/role",
            "/params/messages/0/content/type",
        ]
        outcome = await inspector.server_request("srv", "sampling/createMessage", params)
        assert outcome.action == "rewrite" and outcome.decision is not None
        assert [f.location for f in outcome.decision.findings] == ["/params/messages/0/content/text"]
        assert outcome.payload["messages"][0]["content"]["text"] == "use token [REDACTED:GITHUB_TOKEN]"
        assert outcome.payload["_meta"] == {"progressToken": 1} and outcome.payload["systemPrompt"] == "be brief"
    finally:
        mesh.close()


async def test_a_blocked_client_reply_is_withheld_from_the_server() -> None:
    """With the tenant's DLP action `block`, a reply carrying a secret is refused: the outcome is a deny with the
    decision behind it, which the session sends to the server in place of the reply."""
    from cisora_mesh.config import MeshConfig
    from cisora_mesh.events import Verdict
    from cisora_mesh.mesh import Mesh
    from mcp_proxy.inspect import Inspector

    mesh = Mesh(MeshConfig.model_validate({"detection": {"dlp": {"action": "block"}}}))
    try:
        inspector = Inspector(mesh, tenant="default")
        reply = {"role": "assistant", "content": {"type": "text", "text": f"key: {LEAKED_KEY}"}, "model": "m"}
        outcome = await inspector.client_reply("srv", "sampling/createMessage", reply)
        assert outcome.action == "deny" and outcome.code == -32010
        assert outcome.decision is not None and outcome.decision.verdict is Verdict.BLOCK
        assert [f.location for f in outcome.decision.findings] == ["/result/content/text"]
        assert LEAKED_KEY not in repr(outcome.data) and LEAKED_KEY not in outcome.message
        plain = {"action": "accept", "content": {"ok": True}}
        assert (await inspector.client_reply("srv", "elicitation/create", plain)).action == "pass"
    finally:
        mesh.close()


async def test_a_server_cannot_pile_up_unanswered_requests(tmp_path: Path) -> None:
    """The proxy remembers server requests until the client answers (to inspect the answer). A server sending more
    than MAX_ASKED that stay unanswered gets the rest refused, so it cannot grow the proxy's memory without bound."""
    from mcp_proxy.forward import MAX_ASKED

    proxy = await RawProxy.start(tmp_path / "home", "--pinning", "off", upstream=[PY, SERVER])
    try:
        await proxy.initialize()
        await proxy.call(1, "flood", {"count": MAX_ASKED + 5, "refusals": 5})
        relayed = 0
        with anyio.fail_after(60):
            while 1 not in proxy.buffer:
                msg = await proxy.next()
                if "method" in msg and "id" in msg:
                    relayed += 1  # left unanswered on purpose
                elif "id" in msg:
                    proxy.buffer[msg["id"]] = msg
        assert relayed == MAX_ASKED
        assert proxy.buffer.pop(1)["result"]["content"][0]["text"] == "refused: 5 x [-32023]"
    finally:
        assert await proxy.close() == 0
