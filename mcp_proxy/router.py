"""Several upstream servers behind one endpoint.

Each upstream keeps its own `Session` (inspection, pinning, restart and handshake replay work exactly as with one
server, on the server's own tool names); the router sits between the client and those sessions:

- names: tools and prompts are exposed as `<server>__<name>` (deterministic, reversible: server names may not
  contain `__`); `tools/call`, `prompts/get` and `completion/complete` are routed by that prefix and un-prefixed.
  Resource URIs are left alone (they are addresses, not names) and `resources/read`/`subscribe` are routed by the
  URI's owner as learned from `resources/list`, else by URI-template prefix, else to the first server.
- fan-out: `initialize`, `server/discover`, `ping` and the list methods go to every server; answers are merged
  (capabilities united, lists concatenated). A server that is down or answers with an error contributes nothing: the
  others' items are still returned. Pagination is followed per server by the client through a composite cursor.
- server-to-client requests (sampling, elicitation, roots) get router-unique ids so two servers cannot collide.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import msgspec

from mcp_proxy import jsonrpc
from mcp_proxy.forward import Downstream, PinGuard, Session
from mcp_proxy.framing import Oversized
from mcp_proxy.inspect import Inspector
from mcp_proxy.jsonrpc import FrameError, RequestId
from mcp_proxy.telemetry import MessageSpans
from mcp_proxy.upstream import Upstream

logger = logging.getLogger("mcp_proxy.router")

SEP: Final = "__"
FAN_OUT: Final = frozenset(
    {
        "initialize",
        "server/discover",
        "ping",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    }
)
_LIST_KEY: Final = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}
_PREFIXED: Final = frozenset({"tools/list", "prompts/list"})


@dataclass
class _FanOut:
    method: str
    waiting: set[str]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Leg:
    """One upstream's `Session`, fed from the router and writing back into it."""

    def __init__(self, router: Router, name: str) -> None:
        self.router = router
        self.name = name
        self.closed = False
        self.send_in, self.recv_in = anyio.create_memory_object_stream[bytes | Oversized](1024)

    async def send(self, frame: bytes) -> None:  # the Session's downstream
        await self.router.from_leg(self.name, frame)

    def frames(self) -> AsyncIterator[bytes | Oversized]:
        return self.recv_in.__aiter__()


class Router:
    def __init__(
        self,
        downstream: Downstream,
        upstreams: list[Upstream],
        *,
        inspector: Inspector | None,
        pins: PinGuard | None,
        spans: Callable[[Upstream], MessageSpans] | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream")
        self.down = downstream
        self.order = [u.name for u in upstreams]
        self.legs = {u.name: _Leg(self, u.name) for u in upstreams}
        # Spans are per leg: a fanned-out request (tools/list to every server) gets one span per server.
        self.sessions = {
            u.name: Session(
                self.legs[u.name], u, inspector=inspector, pins=pins, spans=spans(u) if spans is not None else None
            )
            for u in upstreams
        }
        self.fanouts: dict[RequestId, _FanOut] = {}
        self.resource_owner: dict[str, str] = {}
        self.template_owner: list[tuple[str, str]] = []
        self.server_requests: dict[str, tuple[str, RequestId]] = {}
        self._next = 0

    async def run(self, client_frames: AsyncIterator[bytes | Oversized]) -> None:
        async with anyio.create_task_group() as tg:
            for name, session in self.sessions.items():
                tg.start_soon(session.run, self.legs[name].frames())
            async for frame in client_frames:
                await self._from_client(frame)
            for leg in self.legs.values():
                leg.send_in.close()

    # --- client -> servers -------------------------------------------------------------------------------------

    async def _to(self, name: str, frame: bytes | Oversized) -> None:
        await self.legs[name].send_in.send(frame)

    async def _from_client(self, frame: bytes | Oversized) -> None:
        if isinstance(frame, Oversized):
            await self._to(self.order[0], frame)  # the session answers with -32021 and the id it finds
            return
        try:
            env = jsonrpc.decode(frame)
        except FrameError as exc:
            await self.down.send(jsonrpc.error_frame(exc.request_id, exc.code, str(exc)))
            return
        if env.is_response:
            await self._answer_server_request(env, frame)
            return
        method = str(env.method)
        if env.is_notification:
            for name in self.order:  # initialized, cancelled, roots changed: every server may care
                await self._to(name, frame)
            return
        rid = env.id
        assert isinstance(rid, int | str)
        if method in FAN_OUT:
            if rid in self.fanouts:
                await self.down.send(jsonrpc.error_frame(rid, jsonrpc.INVALID_REQUEST, "id already in use"))
                return
            self.fanouts[rid] = _FanOut(method, set(self.order))
            params = jsonrpc.load(env.params)
            cursors = _split_cursor(params.get("cursor")) if isinstance(params, dict) else None
            for name in self.order:
                if cursors is not None:
                    if name not in cursors:
                        self.fanouts[rid].waiting.discard(name)
                        continue
                    await self._to(name, _with_params(env, {**params, "cursor": cursors[name]}))
                else:
                    await self._to(name, frame)
            if not self.fanouts[rid].waiting:
                await self._finish(rid)
            return
        target, rewritten = self._route(method, env)
        if target is None:
            data = jsonrpc.problem("unknown-server", "Unknown server", servers=self.order)
            await self.down.send(jsonrpc.error_frame(rid, jsonrpc.UNKNOWN_SERVER, "no server owns this name", data))
            return
        await self._to(target, rewritten if rewritten is not None else frame)

    def _route(self, method: str, env: jsonrpc.Envelope) -> tuple[str | None, bytes | None]:
        params = jsonrpc.load(env.params)
        if not isinstance(params, dict):
            return self.order[0], None
        if method in ("tools/call", "prompts/get"):
            server, name = _unprefix(params.get("name"))
            if server not in self.legs:
                return None, None
            return server, _with_params(env, {**params, "name": name})
        if method == "completion/complete" and isinstance(params.get("ref"), dict):
            ref = params["ref"]
            if ref.get("type") == "ref/prompt":
                server, name = _unprefix(ref.get("name"))
                if server not in self.legs:
                    return None, None
                return server, _with_params(env, {**params, "ref": {**ref, "name": name}})
            return self._owner(str(ref.get("uri", ""))), None
        if "uri" in params:
            return self._owner(str(params["uri"])), None
        return self.order[0], None

    def _owner(self, uri: str) -> str:
        owner = self.resource_owner.get(uri)
        if owner is not None:
            return owner
        for prefix, name in self.template_owner:
            if prefix and uri.startswith(prefix):
                return name
        return self.order[0]

    async def _answer_server_request(self, env: jsonrpc.Envelope, frame: bytes) -> None:
        key = env.id if isinstance(env.id, str) else None
        route = self.server_requests.pop(key, None) if key is not None else None
        if route is None:
            logger.warning("dropped a response to an unknown server request")
            return
        name, original = route
        message = msgspec.json.decode(frame)
        message["id"] = original
        await self._to(name, jsonrpc.dumps(message))

    # --- servers -> client -------------------------------------------------------------------------------------

    async def from_leg(self, name: str, frame: bytes) -> None:
        env = jsonrpc.decode(frame)
        if env.is_request:
            self._next += 1
            key = f"cisora-{self._next}"
            assert isinstance(env.id, int | str)
            self.server_requests[key] = (name, env.id)
            message = msgspec.json.decode(frame)
            message["id"] = key
            await self.down.send(jsonrpc.dumps(message))
            return
        if env.is_response and isinstance(env.id, int | str) and env.id in self.fanouts:
            fan = self.fanouts[env.id]
            result = jsonrpc.load(env.result)
            if isinstance(result, dict):
                fan.answers[name] = result
            else:
                logger.warning("server %r failed %s; its items are left out", name, fan.method)
            fan.waiting.discard(name)
            if not fan.waiting:
                await self._finish(env.id)
            return
        await self.down.send(frame)

    async def _finish(self, rid: RequestId) -> None:
        fan = self.fanouts.pop(rid)
        if not fan.answers:
            data = jsonrpc.problem("upstream-unavailable", "Upstream unavailable", servers=self.order)
            await self.down.send(jsonrpc.error_frame(rid, jsonrpc.UPSTREAM_UNAVAILABLE, "no server answered", data))
            return
        await self.down.send(jsonrpc.result_frame(rid, self._merge(fan)))

    def _merge(self, fan: _FanOut) -> dict[str, Any]:
        answers = [(n, fan.answers[n]) for n in self.order if n in fan.answers]
        if fan.method in ("initialize", "server/discover"):
            merged = dict(answers[0][1])
            caps: dict[str, Any] = {}
            for _, a in answers:
                for key, value in (a.get("capabilities") or {}).items():
                    caps.setdefault(key, value)
            merged["capabilities"] = caps
            merged["serverInfo"] = {"name": "cisora-mesh-proxy", "version": "1"}
            text = "\n\n".join(f"[{n}] {a['instructions']}" for n, a in answers if a.get("instructions"))
            merged.pop("instructions", None)
            if text:
                merged["instructions"] = text
            return merged
        if fan.method == "ping":
            return {}
        key = _LIST_KEY[fan.method]
        items: list[Any] = []
        cursors: dict[str, str] = {}
        for name, answer in answers:
            for item in answer.get(key) or ():
                if not isinstance(item, dict):
                    continue
                if fan.method in _PREFIXED:
                    item = {**item, "name": f"{name}{SEP}{item.get('name')}"}
                elif fan.method == "resources/list" and isinstance(item.get("uri"), str):
                    self.resource_owner[item["uri"]] = name
                elif fan.method == "resources/templates/list" and isinstance(item.get("uriTemplate"), str):
                    prefix = item["uriTemplate"].split("{", 1)[0]
                    self.template_owner.append((prefix, name))
                items.append(item)
            if isinstance(answer.get("nextCursor"), str):
                cursors[name] = answer["nextCursor"]
        merged = {k: v for k, v in answers[0][1].items() if k not in (key, "nextCursor")}
        merged[key] = items
        if cursors:
            merged["nextCursor"] = msgspec.json.encode(cursors).hex()
        return merged


def _unprefix(value: Any) -> tuple[str | None, str]:
    if not isinstance(value, str) or SEP not in value:
        return None, str(value)
    server, name = value.split(SEP, 1)
    return server, name


def _split_cursor(cursor: Any) -> dict[str, str] | None:
    if not isinstance(cursor, str):
        return None
    try:
        value = msgspec.json.decode(bytes.fromhex(cursor))
    except (ValueError, msgspec.DecodeError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _with_params(env: jsonrpc.Envelope, params: dict[str, Any]) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": env.id, "method": env.method, "params": params}
    return jsonrpc.dumps(message)
