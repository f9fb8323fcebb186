"""Two a2a-sdk agents and a narrowed capability token: A delegates to B, B calls an MCP tool through the proxy.

    python examples/a2a_delegation.py

The flow, each step printed:

1. A root authority issues agent A a token for `mcp://echo/tools/*`, limited to texts that start with "hello".
2. The user's client fetches A's Agent Card, checks its signature (JWS over the JCS card, `capability.agent_card`)
   and sends A a task over A2A.
3. A fetches and verifies B's card, attenuates its token to `mcp://echo/tools/echo` only, texts of at most 40
   characters and a budget of 3 calls, with B's key as holder, and delegates the task to B over A2A; the token rides
   in the A2A message metadata (`io.cisora/capability`).
4. B fetches and verifies A's card, checks that the delegating link was signed by that card's key and names B as
   holder, and verifies the whole chain offline against the root authority's public key.
5. B calls `echo` through `cisora-mesh proxy stdio` (`[proxy.capability] required = true`, real stdio pipes), with
   the token and a fresh proof of possession in `_meta`: allowed. B then tries `fetch_page` (a tool the root token
   covers but the narrowed one does not) and an `echo` text the root would accept but the narrowed grant refuses:
   the proxy denies both.

Both agents are served in-process through `httpx.ASGITransport`, so no ports are opened.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from a2a.client import ClientConfig, create_client
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf import json_format
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from capability import (
    InvalidCapability,
    KeySet,
    MaxLength,
    Prefix,
    PublicKey,
    SigningKey,
    Verifier,
    attenuate,
    capability,
    decode_chain,
    issue,
    make_pop,
    sign_agent_card,
    verify_agent_card,
)

ROOT = Path(__file__).resolve().parents[1]
ECHO_SERVER = ROOT / "examples" / "mcp_echo_server.py"
AUDIENCE = "cisora-proxy-echo"  # the proxy's identity: every link and every PoP must name it
ECHO = "mcp://echo/tools/echo"
CARD_PATH = "/.well-known/agent-card.json"
A_URL, B_URL = "http://agent-a", "http://agent-b"
META_TOKEN, META_POP = "io.cisora/capability", "io.cisora/pop"
META_DELEGATOR = "io.cisora/delegator"
PROXY_DENIED = -32013  # the proxy's JSON-RPC code for a capability denial

Log = Callable[[str], None]


# -- Agent Cards -----------------------------------------------------------------------------------------------------


def signed_card(name: str, url: str, skill: str, key: SigningKey) -> AgentCard:
    """An Agent Card signed with the agent's Ed25519 key (the same key that holds its capability tokens).

    We sign the dict the SDK's card route will serve (`agent_card_to_dict` adds A2A 0.3 compatibility fields), so the
    bytes a client canonicalises are exactly the bytes we signed.
    """
    card = AgentCard(
        name=name,
        description=f"{name} (Cisora Mesh A2A delegation example)",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id=skill, name=skill, description=f"{skill} via MCP", tags=["echo"])],
    )
    signed = sign_agent_card(agent_card_to_dict(card), key)
    for sig in signed["signatures"]:
        card.signatures.add(protected=sig["protected"], signature=sig["signature"])
    return card


async def fetch_verified_card(
    http: httpx.AsyncClient, base_url: str, pinned: dict[str, PublicKey]
) -> tuple[AgentCard, str]:
    """Fetch an agent's card and verify its signature against keys pinned out of band; return (card, signer kid).

    Verification runs on the JSON as received, before it is parsed into the SDK type, so nothing the parser drops or
    normalises can change what was checked. Raises `capability.InvalidAgentCard` when no pinned key verifies it.
    """
    response = await http.get(base_url + CARD_PATH)
    response.raise_for_status()
    raw = response.json()
    kid = verify_agent_card(raw, pinned)
    return json_format.ParseDict(raw, AgentCard(), ignore_unknown_fields=True), kid


def text_message(text: str, metadata: dict[str, Any] | None = None) -> Message:
    message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=[Part(text=text)])
    if metadata:
        message.metadata.update(metadata)
    return message


async def send_task(http: httpx.AsyncClient, card: AgentCard, message: Message) -> str:
    """Send one message with the a2a-sdk client and return the text of the task's artifacts."""
    client = await create_client(card, client_config=ClientConfig(streaming=False, httpx_client=http))
    texts: list[str] = []
    try:
        async for event in client.send_message(SendMessageRequest(message=message)):
            if event.HasField("task"):
                texts = [p.text for a in event.task.artifacts for p in a.parts if p.WhichOneof("content") == "text"]
    finally:
        await client.close()
    return "".join(texts)


async def start_task(context: RequestContext, event_queue: EventQueue) -> TaskUpdater:
    """Open the task for a new request (the SDK wants a Task event before any status update) and mark it working."""
    assert context.task_id is not None
    assert context.context_id is not None
    if context.current_task is None:
        history = [context.message] if context.message is not None else []
        status = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)
        await event_queue.enqueue_event(
            Task(id=context.task_id, context_id=context.context_id, status=status, history=history)
        )
    updater = TaskUpdater(event_queue, context.task_id, context.context_id)
    await updater.start_work()
    return updater


# -- Agent B: verifies the delegation, then calls the tool through the proxy -------------------------------------------


class AgentB(AgentExecutor):
    def __init__(
        self, key: SigningKey, anchor: PublicKey, directory: dict[str, PublicKey], workdir: Path, log: Log
    ) -> None:
        self.key, self.anchor, self.directory, self.workdir, self.log = key, anchor, directory, workdir, log
        self.http: httpx.AsyncClient | None = None  # set once both apps exist (B resolves A's card through it)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        updater = await start_task(context, event_queue)
        metadata = json_format.MessageToDict(context.message.metadata)
        token, delegator = metadata.get(META_TOKEN), metadata.get(META_DELEGATOR)
        text = context.get_user_input()
        try:
            report = await self._run(token, delegator, text)
        except (InvalidCapability, PermissionError) as exc:
            # A delegation we cannot trust ends the task here: B never presents it to the proxy.
            self.log(f"[B] refusing the delegation: {exc}")
            await updater.failed(updater.new_agent_message([Part(text=str(exc))]))
            return
        await updater.add_artifact([Part(text=json.dumps(report))], name="echo-results", last_chunk=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError("the example's tasks are short and never cancelled")

    async def _run(self, token: object, delegator: object, text: str) -> dict[str, Any]:
        if not isinstance(token, str) or not isinstance(delegator, str) or self.http is None:
            raise PermissionError("no capability token or delegator in the A2A message metadata")
        # Who delegated? A's card, verified with A's pinned key, must be signed by the key that signed the last link.
        _, card_kid = await fetch_verified_card(self.http, delegator, self.directory)
        last = decode_chain(token)[-1].claims
        if last.iss != card_kid:
            raise PermissionError("the delegating link was not signed by the agent whose card we verified")
        self.log(f"[B] A's Agent Card signature verified (kid {card_kid[:12]}...); it signed the delegating link")
        args = {"text": text}
        # Offline check of the whole chain with only the root authority's public key. No PoP here: this is B checking
        # what it was given before using it; the proxy does the real, PoP-bound check. The budget this counts lives in
        # this verifier's own memory, not the proxy's.
        grant = Verifier(KeySet.of(self.anchor), audience=AUDIENCE, require_pop=False).verify(
            token, resource=ECHO, action="call", args=args, now=time.time()
        )
        if grant.holder != self.key.kid:
            raise PermissionError("the token is held by someone else, so B could not prove possession")
        self.log(f"[B] chain verified offline: links {list(grant.chain)}, holder B, budget {grant.budget}")
        return await self._call_through_proxy(token, args)

    async def _call_through_proxy(self, token: str, allowed_args: dict[str, Any]) -> dict[str, Any]:
        anchor = self.workdir / "root.pub.jwk"
        anchor.write_text(json.dumps(self.anchor.to_jwk()), encoding="utf-8")
        config = self.workdir / "mesh.toml"
        config.write_text(
            "[proxy.capability]\nrequired = true\n"
            f"trust_anchors = [{json.dumps(str(anchor))}]\naudience = {json.dumps(AUDIENCE)}\n",
            encoding="utf-8",
        )
        params = StdioServerParameters(
            command=sys.executable,
            # --name echo: the proxy names resources mcp://<name>/tools/<tool>, and the token grants mcp://echo/...
            args=[
                *("-m", "cisora_mesh", "proxy", "stdio", "--config", str(config), "--name", "echo"),
                *("--", sys.executable, str(ECHO_SERVER)),
            ],
            cwd=str(ROOT),
            env={"CISORA_MESH_HOME": str(self.workdir / "home")},
        )
        attempts = [
            ("echo", allowed_args),
            ("fetch_page", {"url": "hello.example"}),  # covered by A's root token, not by B's narrowed one
            ("echo", {"text": "hello " + "x" * 60}),  # root allows 200 characters, B's grant only 40
        ]
        report: dict[str, Any] = {"calls": []}
        async with Client(params) as mcp:
            listed = await mcp.list_tools(meta={META_TOKEN: token})
            report["tools"] = sorted(t.name for t in listed.tools)
            self.log(f"[B] proxy tools/list with B's token shows only: {report['tools']}")
            for tool, args in attempts:
                # A fresh proof of possession per call: it binds the method, resource and these exact arguments.
                pop = make_pop(
                    self.key,
                    token,
                    method="tools/call",
                    resource=f"mcp://echo/tools/{tool}",
                    args=args,
                    audience=AUDIENCE,
                    now=int(time.time()),
                )
                entry: dict[str, Any] = {"tool": tool, "args": args}
                try:
                    result = await mcp.call_tool(tool, args, meta={META_TOKEN: token, META_POP: pop})
                    entry |= {"allowed": True, "result": [getattr(c, "text", "") for c in result.content]}
                    self.log(f"[B] proxy ALLOWED {tool}({json.dumps(args)}) -> {entry['result']}")
                except MCPError as err:
                    entry |= {"allowed": False, "code": err.code, "message": err.message}
                    self.log(f"[B] proxy DENIED  {tool}({json.dumps(args)[:50]}) -> {err.code} {err.message}")
                report["calls"].append(entry)
        return report


# -- Agent A: receives the user's task, narrows its token and delegates to B -----------------------------------------


class AgentA(AgentExecutor):
    def __init__(self, key: SigningKey, root_token: str, directory: dict[str, PublicKey], log: Log) -> None:
        self.key, self.root_token, self.directory, self.log = key, root_token, directory, log
        self.http: httpx.AsyncClient | None = None

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert self.http is not None
        updater = await start_task(context, event_queue)
        text = context.get_user_input()
        self.log(f"[A] task from the user: {text!r}")
        # Verify B's card before handing it any right: the token will name the key B's card was signed with.
        card_b, kid_b = await fetch_verified_card(self.http, B_URL, self.directory)
        self.log(f"[A] B's Agent Card signature verified (kid {kid_b[:12]}...)")
        child = attenuate(
            self.root_token,
            self.key,
            holder=self.directory[kid_b],
            now=int(time.time()),
            ttl=300,
            budget=3,
            capabilities=[capability(ECHO, ["call"], {"/text": [Prefix(value="hello"), MaxLength(n=40)]})],
        )
        self.log("[A] attenuated to mcp://echo/tools/echo, /text prefix 'hello' and at most 40 chars, budget 3")
        reply = await send_task(self.http, card_b, text_message(text, {META_TOKEN: child, META_DELEGATOR: A_URL}))
        self.log("[A] delegated to B over A2A (token in the message metadata); B answered")
        await updater.add_artifact([Part(text=reply)], name="delegated-result", last_chunk=True)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError("the example's tasks are short and never cancelled")


def agent_app(executor: AgentExecutor, card: AgentCard) -> Starlette:
    handler = DefaultRequestHandler(executor, task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])


async def run(log: Log = print, task: str = "hello from the user") -> dict[str, Any]:
    """Run the whole flow and return B's report: `tools` listed for B, and one entry per attempted call."""
    authority, key_a, key_b = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    # Agent keys are pinned out of band (e.g. from a registry); card signatures are checked against this directory.
    directory = {key_a.kid: key_a.public, key_b.kid: key_b.public}
    root = issue(
        authority,
        holder=key_a.public,
        audience=AUDIENCE,
        now=int(time.time()),
        ttl=600,
        capabilities=[capability("mcp://echo/tools/*", ["call"], {"/text": [Prefix(value="hello"), MaxLength(n=200)]})],
    )
    log("[root] issued A a token for mcp://echo/tools/*, /text prefix 'hello' and at most 200 chars")
    with tempfile.TemporaryDirectory(prefix="cisora-a2a-") as tmp:
        agent_a = AgentA(key_a, root, directory, log)
        agent_b = AgentB(key_b, authority.public, directory, Path(tmp), log)
        app_a = agent_app(agent_a, signed_card("Agent A", A_URL, "delegate", key_a))
        app_b = agent_app(agent_b, signed_card("Agent B", B_URL, "echo", key_b))
        # One client reaches both in-process apps by host name; every agent (and the user) shares it.
        mounts = {A_URL: httpx.ASGITransport(app=app_a), B_URL: httpx.ASGITransport(app=app_b)}
        async with httpx.AsyncClient(mounts=mounts, timeout=60) as http:
            agent_a.http = agent_b.http = http
            card_a, kid_a = await fetch_verified_card(http, A_URL, directory)
            log(f"[user] A's Agent Card signature verified (kid {kid_a[:12]}...); sending the task")
            report: dict[str, Any] = json.loads(await send_task(http, card_a, text_message(task)))
    log(
        f"[user] result: {sum(c['allowed'] for c in report['calls'])} call allowed, "
        f"{sum(not c['allowed'] for c in report['calls'])} denied by the proxy"
    )
    return report


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
