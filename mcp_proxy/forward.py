"""The message pump: downstream client <-> one upstream server, every message forwarded without per-method code.

Frames are decoded into msgspec envelopes (payloads stay raw bytes) and forwarded as the exact bytes that arrived.
Only the inspection points decode a payload: `tools/call` requests, and the responses to `initialize`,
`server/discover`, `tools/list`, `tools/call`, `resources/read` and `prompts/get`, plus sampling/elicitation
requests from the server. Everything else (progress, cancellation, list_changed, `subscriptions/listen`,
`input_required` rounds, unknown methods) passes through untouched, ids included.

Ordering: each direction is a queue of pending outputs written strictly in arrival order. When every decision waits
for its durable audit commit (`audit.durable_before = "all"`) the inspections behind them run concurrently (so 64
calls in flight share group commits instead of waiting in line); otherwise (the default: only preventive decisions
wait, allows commit in the background) they run inline, which skips a task, a future and a queue hop per message.

Telemetry: each message gets one span (`mcp_proxy.telemetry`), started on arrival and ended once the proxy has
decided what to forward; without a tracer provider this is a clock read per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import anyio
from anyio.abc import TaskGroup
from msgspec import UNSET

from cisora_mesh.auth.capability import CapabilityDenied, credentials_from_meta, tool_digest
from mcp_proxy import jsonrpc
from mcp_proxy.capability import denial as capability_denial
from mcp_proxy.capability import without_credentials
from mcp_proxy.errors import PinStoreError, UpstreamError
from mcp_proxy.framing import Oversized
from mcp_proxy.inspect import Inspector, Outcome
from mcp_proxy.jsonrpc import Envelope, FrameError, RequestId
from mcp_proxy.pinning import PinStore
from mcp_proxy.telemetry import MessageSpans, context_of, note_decision, note_refused
from mcp_proxy.upstream import Upstream

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

logger = logging.getLogger("mcp_proxy")

INSPECTED_RESULTS: Final = frozenset(
    {"initialize", "server/discover", "tools/list", "tools/call", "resources/read", "prompts/get"}
)
SERVER_REQUESTS_INSPECTED: Final = frozenset({"sampling/createMessage", "elicitation/create"})
# Server requests awaiting the client's reply (whose reply is then inspected). The server is the untrusted side:
# past this many, its further requests are refused rather than remembered without bound.
MAX_ASKED: Final = 1024
_REPLAY_PREFIX: Final = "cisora-proxy-replay-"


class Downstream(Protocol):
    closed: bool

    async def send(self, frame: bytes) -> None: ...


@dataclass(slots=True)
class Pending:
    method: str
    tool: str | None = None
    complete_listing: bool = True  # tools/list asked without a cursor
    capability_token: str | None = None  # the token a tools/list carried, to show only the tools it grants
    trace: Context | None = None  # the request's span, parent of its response's span


class PinGuard:
    """Pinning as the session sees it: one store, one tenant, one mode per server."""

    def __init__(self, store: PinStore, tenant: str, modes: dict[str, Literal["tofu", "approve", "off"]]) -> None:
        self.store = store
        self.tenant = tenant
        self.modes = modes

    def mode(self, server: str) -> Literal["tofu", "approve", "off"]:
        return self.modes.get(server, "tofu")


Out = tuple[Literal["down", "up"], bytes, RequestId | None]


async def _guarded(
    work: Callable[[], Awaitable[list[Out]]], fallback: Callable[[], list[Out]], span: Span | None
) -> list[Out]:
    try:
        return await work()
    except (UpstreamError, PinStoreError) as exc:
        logger.error("inspection failed: %s", exc)
        note_refused(span, jsonrpc.INTERNAL_ERROR)
        return fallback()
    except Exception:
        # A bug in an inspection must not wedge the queue or the session: fail closed for this message.
        logger.exception("inspection crashed")
        note_refused(span, jsonrpc.INTERNAL_ERROR)
        return fallback()
    finally:
        if span is not None:
            span.end()


class _Ordered:
    """Outputs of one direction, written in arrival order; each may still be under inspection."""

    def __init__(self, tg: TaskGroup, emit: Callable[[list[Out]], Awaitable[None]], *, concurrent: bool) -> None:
        self._tg = tg
        self._emit = emit
        # Concurrent inspections only pay off when they wait (a durable audit commit); a pure-CPU inspection of
        # ~50 us is cheaper inline than a task switch and a queue hop.
        self._concurrent = concurrent
        self._send, self._recv = anyio.create_memory_object_stream[asyncio.Future[list[Out]]](256)
        self._queued = 0  # outputs enqueued and not yet written

    async def now(self, outs: list[Out], span: Span | None = None) -> None:
        if span is not None:
            span.end()
        if self._queued == 0:
            # Nothing ahead of it: write directly and skip the queue hop (the common case, and the hot path).
            await self._emit(outs)
            return
        fut: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        fut.set_result(outs)
        self._queued += 1
        await self._send.send(fut)

    async def later(
        self, work: Callable[[], Awaitable[list[Out]]], fallback: Callable[[], list[Out]], span: Span | None = None
    ) -> None:
        if not self._concurrent and self._queued == 0:
            await self._emit(await _guarded(work, fallback, span))
            return
        fut: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            fut.set_result(await _guarded(work, fallback, span))

        self._tg.start_soon(run)
        self._queued += 1
        await self._send.send(fut)

    async def drain(self) -> None:
        async with self._recv:
            async for fut in self._recv:
                try:
                    await self._emit(await fut)
                finally:
                    self._queued -= 1

    def close(self) -> None:
        self._send.close()

    def dispose(self) -> None:
        """Release both ends (after the session's task group is gone, so nothing reads or writes any more)."""
        self._send.close()
        self._recv.close()


class Session:
    """One downstream client connected to one upstream server."""

    def __init__(
        self,
        downstream: Downstream,
        upstream: Upstream,
        *,
        inspector: Inspector | None,
        pins: PinGuard | None,
        spans: MessageSpans | None = None,
    ) -> None:
        self.down = downstream
        self.up = upstream
        self.spans = spans  # one span per forwarded message (mcp_proxy.telemetry); None: no tracing at all
        self.server = upstream.name
        self.inspector = inspector
        self.pins = pins
        self.pending: dict[RequestId, Pending] = {}
        self.asked: dict[RequestId, str] = {}  # server requests (sampling, elicitation) awaiting the client's reply
        self.hidden: dict[str, str] = {}  # tool name -> why it is hidden (poisoning, pin state)
        # tool name -> digest of its definition as last listed, for tokens pinned to an approved definition
        self.descriptors: dict[str, str] = {}
        self._init_frames: list[bytes] = []  # the client's handshake, replayed to a restarted upstream
        self._replays = 0
        self._up_ready = anyio.Event()
        self._up_state: Literal["starting", "up", "down"] = "starting"
        self._to_up: _Ordered | None = None
        self._to_down: _Ordered | None = None

    # --- wiring ------------------------------------------------------------------------------------------------

    async def run(
        self, client_frames: Any, *, upstream_task: Callable[..., Coroutine[Any, Any, None]] | None = None
    ) -> None:
        """Pump until the client's input ends (then the upstream is stopped)."""
        runner: Callable[..., Coroutine[Any, Any, None]] = upstream_task or self.up.run
        try:
            async with anyio.create_task_group() as tg:
                concurrent = self.inspector is not None and self.inspector.waits
                self._to_up = _Ordered(tg, self._emit, concurrent=concurrent)
                self._to_down = _Ordered(tg, self._emit, concurrent=concurrent)
                tg.start_soon(self._to_up.drain)
                tg.start_soon(self._to_down.drain)
                tg.start_soon(runner, self._from_upstream, self._upstream_up, self._upstream_down)
                async for frame in client_frames:
                    await self._from_client(frame)
                self._to_up.close()
                # Let answers already under way reach the client before tearing the upstream down.
                with anyio.move_on_after(0.5 if self.pending else 0):
                    while self.pending and not self.down.closed:  # noqa: ASYNC110 - a bounded grace period
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        finally:
            for queue in (self._to_up, self._to_down):
                if queue is not None:
                    queue.dispose()

    async def _emit(self, outs: list[Out]) -> None:
        for where, frame, rid in outs:
            if where == "down":
                await self.down.send(frame)
                continue
            try:
                await self._send_up(frame)
            except UpstreamError as exc:
                if rid is not None and self.pending.pop(rid, None) is not None:
                    await self.down.send(
                        jsonrpc.error_frame(rid, jsonrpc.UPSTREAM_UNAVAILABLE, str(exc), _unavailable(self.server))
                    )

    async def _send_up(self, frame: bytes) -> None:
        if self._up_state == "down":
            raise UpstreamError(f"upstream {self.server!r} is not running (restarting)")
        if self._up_state == "starting":
            try:
                with anyio.fail_after(30):
                    await self._up_ready.wait()
            except TimeoutError:
                raise UpstreamError(f"upstream {self.server!r} did not come up") from None
        await self.up.send(frame)

    async def _upstream_up(self, restarted: bool) -> None:
        if not restarted or not self._init_frames:
            self._up_state = "up"
            self._up_ready.set()
            return
        self._up_state = "starting"
        # A restarted legacy-era server needs the handshake again; replay the client's and swallow the answer.
        self._up_ready = anyio.Event()
        init = jsonrpc.decode(self._init_frames[0])
        self._replays += 1
        rid = f"{_REPLAY_PREFIX}{self._replays}"
        self.pending[rid] = Pending("initialize")
        await self.up.send(jsonrpc.request_frame(rid, "initialize", jsonrpc.load(init.params)))

    async def _upstream_down(self, reason: str) -> None:
        self._up_state = "down"
        self._up_ready = anyio.Event()
        lost = [rid for rid in self.pending if not (isinstance(rid, str) and rid.startswith(_REPLAY_PREFIX))]
        for rid in lost:
            self.pending.pop(rid, None)
            await self.down.send(
                jsonrpc.error_frame(
                    rid, jsonrpc.UPSTREAM_UNAVAILABLE, f"{reason} during the request", _unavailable(self.server)
                )
            )

    # --- client -> server --------------------------------------------------------------------------------------

    async def _from_client(self, frame: bytes | Oversized) -> None:
        assert self._to_up is not None
        if isinstance(frame, Oversized):
            rid = jsonrpc.id_in_head(frame.head)
            msg = f"frame of {frame.size} bytes exceeds the proxy's limit"
            await self._to_up.now([("down", jsonrpc.error_frame(rid, jsonrpc.FRAME_TOO_LARGE, msg), None)])
            return
        try:
            env = jsonrpc.decode(frame)
        except FrameError as exc:
            await self._to_up.now([("down", jsonrpc.error_frame(exc.request_id, exc.code, str(exc)), None)])
            return
        span: Span | None = None
        if self.spans is not None:
            span, frame = self.spans.from_client(env, frame)
        if env.is_request and isinstance(env.id, int | str):
            rid = env.id
            method = str(env.method)
            if rid in self.pending:
                msg = f"Invalid Request: id {rid!r} is already in use by a request in flight"
                note_refused(span, jsonrpc.INVALID_REQUEST)
                await self._to_up.now([("down", jsonrpc.error_frame(rid, jsonrpc.INVALID_REQUEST, msg), None)], span)
                return
            pending = Pending(method)
            if span is not None:
                pending.trace = context_of(span)
            self.pending[rid] = pending
            if method == "initialize":
                self._init_frames = [frame]
            elif method == "tools/call" and (self.inspector is not None or self.pins is not None):
                await self._to_up.later(
                    lambda: self._check_call(rid, env, frame, pending, span),
                    lambda: self._denied_fallback(rid),
                    span,
                )
                return
            elif method == "tools/list":
                params = jsonrpc.load(env.params) if len(env.params) else None
                pending.complete_listing = not (isinstance(params, dict) and params.get("cursor"))
                pending.capability_token = credentials_from_meta(params)[0]
                stripped = without_credentials(params) if isinstance(params, dict) else None
                if stripped is not None:  # the upstream never needs the caller's token
                    await self._to_up.now([("up", _replace(env, params=stripped), rid)], span)
                    return
            await self._to_up.now([("up", frame, rid)], span)
            return
        if env.is_response and isinstance(env.id, int | str) and (asked := self.asked.pop(env.id, None)) is not None:
            if len(env.result):  # the client's model output or user input, on its way to the server
                reply_id = env.id
                await self._to_up.later(
                    lambda: self._check_client_reply(reply_id, env, frame, asked, span),
                    lambda: self._reply_withheld(reply_id),
                    span,
                )
                return
        if env.is_notification:
            if env.method == "notifications/initialized":
                self._init_frames.append(frame)
            elif env.method == "notifications/cancelled":
                params = jsonrpc.load(env.params)
                if isinstance(params, dict):
                    # A cancelled request gets no response (2025-06-18+), so forget it now.
                    self.pending.pop(params.get("requestId"), None)  # type: ignore[arg-type]
        await self._to_up.now([("up", frame, None)], span)

    def _denied_fallback(self, rid: RequestId) -> list[Out]:
        self.pending.pop(rid, None)
        msg = "the proxy could not inspect this request; refused (fail closed)"
        return [("down", jsonrpc.error_frame(rid, jsonrpc.INTERNAL_ERROR, msg), None)]

    async def _check_call(
        self, rid: RequestId, env: Envelope, frame: bytes, pending: Pending, span: Span | None
    ) -> list[Out]:
        params = jsonrpc.load(env.params)
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            return [("up", frame, rid)]  # malformed: the server owns the validation error
        tool = params["name"]
        pending.tool = tool
        gate = self.inspector.capability if self.inspector is not None else None
        if gate is not None:
            # Authorization first and fail closed: nothing else about a call matters if its bearer may not make it.
            verdict = gate.check_mcp_call(self.server, params, descriptor_digest=self.descriptors.get(tool))
            if isinstance(verdict, CapabilityDenied):
                self.pending.pop(rid, None)
                refused = capability_denial(verdict, self.server, tool)
                note_refused(span, refused.code)
                return [("down", jsonrpc.error_frame(rid, refused.code, refused.message, refused.data), None)]
            stripped = without_credentials(params)
            if stripped is not None:
                params, frame = stripped, _replace(env, params=stripped)
        denial = self._pin_denial(tool)
        if denial is None and self.inspector is not None:
            outcome = await self.inspector.tool_call(self.server, tool, params)
            note_decision(span, outcome.decision)
            if outcome.action == "rewrite":
                return [("up", _replace(env, params=outcome.payload), rid)]
            if outcome.action == "deny":
                denial = outcome
        if denial is not None:
            self.pending.pop(rid, None)
            note_refused(span, denial.code)
            return [("down", jsonrpc.error_frame(rid, denial.code, denial.message, denial.data), None)]
        return [("up", frame, rid)]

    def _pin_denial(self, tool: str) -> Outcome | None:
        why = self.hidden.get(tool)
        if why is None and self.pins is not None:
            mode = self.pins.mode(self.server)
            if mode != "off":
                pin = self.pins.store.callable(self.pins.tenant, self.server, tool, mode=mode)
                if pin is not None:
                    why = f"pin state {pin.status}" + (f" ({pin.note})" if pin.note else "")
        if why is None:
            return None
        return Outcome(
            "deny",
            code=jsonrpc.TOOL_NOT_APPROVED,
            message=f"tool {tool!r} is not available: {why}; "
            f"approve it with 'cisora-mesh pins approve {self.server} {tool}'",
            data=jsonrpc.problem("tool-not-approved", "Tool not approved", server=self.server, tool=tool, reason=why),
        )

    # --- server -> client --------------------------------------------------------------------------------------

    async def _from_upstream(self, frame: bytes | Oversized) -> None:
        assert self._to_down is not None
        if isinstance(frame, Oversized):
            rid = jsonrpc.id_in_head(frame.head)
            logger.warning("upstream %r sent a frame of %d bytes (over the limit); dropped", self.server, frame.size)
            if rid is not None and self.pending.pop(rid, None) is not None:
                msg = f"the server's answer ({frame.size} bytes) exceeds the proxy's frame limit"
                await self._to_down.now([("down", jsonrpc.error_frame(rid, jsonrpc.FRAME_TOO_LARGE, msg), None)])
            return
        try:
            env = jsonrpc.decode(frame)
        except FrameError:
            # Never pass garbage to the client: it would desynchronise its parser.
            logger.warning("upstream %r wrote a line that is not JSON-RPC; dropped (%d bytes)", self.server, len(frame))
            return
        if env.is_response:
            rid = env.id if isinstance(env.id, int | str) else None
            pending = self.pending.pop(rid, None) if rid is not None else None
            if isinstance(rid, str) and rid.startswith(_REPLAY_PREFIX):
                await self._finish_replay()
                return
            span: Span | None = None
            if self.spans is not None:
                if pending is None:
                    span = self.spans.from_upstream(env)
                else:
                    span = self.spans.from_upstream(env, method=pending.method, tool=pending.tool, parent=pending.trace)
            if pending is not None and len(env.result) and pending.method in INSPECTED_RESULTS:
                await self._to_down.later(
                    lambda: self._check_result(rid, env, frame, pending, span),
                    lambda: self._withheld_fallback(rid),
                    span,
                )
                return
            await self._to_down.now([("down", frame, None)], span)
            return
        span = self.spans.from_upstream(env) if self.spans is not None else None
        if env.is_request and env.method in SERVER_REQUESTS_INSPECTED and self.inspector is not None:
            if isinstance(env.id, int | str):
                if len(self.asked) >= MAX_ASKED:
                    msg = f"more than {MAX_ASKED} server requests await the client's reply"
                    note_refused(span, jsonrpc.TOO_MANY_SERVER_REQUESTS)
                    error = jsonrpc.error_frame(env.id, jsonrpc.TOO_MANY_SERVER_REQUESTS, msg)
                    await self._to_down.now([("up", error, None)], span)
                    return
                self.asked[env.id] = str(env.method)  # its answer is inspected on the way back
            await self._to_down.later(lambda: self._check_server_request(env, frame, span), list, span)
            return
        await self._to_down.now([("down", frame, None)], span)

    async def _finish_replay(self) -> None:
        for extra in self._init_frames[1:]:
            await self.up.send(extra)
        self._up_state = "up"
        self._up_ready.set()

    def _withheld_fallback(self, rid: RequestId | None) -> list[Out]:
        msg = "the proxy could not inspect the server's answer; withheld (fail closed)"
        return [("down", jsonrpc.error_frame(rid, jsonrpc.INTERNAL_ERROR, msg), None)]

    async def _check_result(
        self, rid: RequestId | None, env: Envelope, frame: bytes, pending: Pending, span: Span | None
    ) -> list[Out]:
        result = jsonrpc.load(env.result)
        if not isinstance(result, dict):
            return [("down", frame, None)]
        method = pending.method
        if method == "tools/list":
            changed = await self._filter_tools(result, pending, span)
            return [("down", _replace(env, result=result) if changed else frame, None)]
        if self.inspector is None:
            return [("down", frame, None)]
        if method in ("initialize", "server/discover"):
            outcome = await self.inspector.instructions(method, self.server, result)
        else:
            outcome = await self.inspector.result(method, self.server, pending.tool, result)
        note_decision(span, outcome.decision)
        if outcome.action == "pass":
            return [("down", frame, None)]
        if outcome.action == "rewrite":
            return [("down", _replace(env, result=outcome.payload), None)]
        note_refused(span, outcome.code)
        return [("down", jsonrpc.error_frame(rid, outcome.code, outcome.message, outcome.data), None)]

    async def _filter_tools(self, result: dict[str, Any], pending: Pending, span: Span | None = None) -> bool:
        tools = result.get("tools")
        if not isinstance(tools, list):
            return False
        tools = [t for t in tools if isinstance(t, dict)]
        hide: dict[str, str] = {}
        if self.inspector is not None:
            flagged, decision = await self.inspector.tools_list(self.server, result)
            note_decision(span, decision)
            for i in flagged:
                if i < len(tools):
                    hide[str(tools[i].get("name"))] = (
                        f"description flagged by policy (decision {decision and decision.id})"
                    )
        if self.pins is not None and (mode := self.pins.mode(self.server)) != "off":
            complete = pending.complete_listing and not result.get("nextCursor")
            verdicts = await anyio.to_thread.run_sync(
                lambda: self.pins.store.observe(self.pins.tenant, self.server, tools, mode=mode, complete=complete)  # type: ignore[union-attr]
            )
            for name, verdict in verdicts.items():
                if not verdict.visible:
                    hide.setdefault(
                        name, f"pin state {verdict.status}" + (f" ({verdict.note})" if verdict.note else "")
                    )
        listed = {str(t.get("name")) for t in tools}
        for name in listed:
            if name in hide:
                self.hidden[name] = hide[name]
            else:
                self.hidden.pop(name, None)
        gate = self.inspector.capability if self.inspector is not None else None
        if gate is not None:
            for tool in tools:
                digest = tool_digest(tool)
                if digest is not None:
                    self.descriptors[str(tool.get("name"))] = digest
                else:
                    self.descriptors.pop(str(tool.get("name")), None)
        # Tools the caller's token does not grant are left out of this answer only, not added to `hidden`: they are
        # not unapproved, and another caller's token may grant them (each call is verified on its own anyway).
        ungranted = listed - gate.granted_tools(self.server, listed, pending.capability_token) if gate else set()
        if hide or ungranted:
            if hide:
                logger.warning("hiding tools of %r from the client: %s", self.server, ", ".join(sorted(hide)))
            dropped = ungranted | hide.keys()
            result["tools"] = [t for t in tools if str(t.get("name")) not in dropped]
            return True
        return False

    async def _check_server_request(self, env: Envelope, frame: bytes, span: Span | None) -> list[Out]:
        assert self.inspector is not None
        outcome = await self.inspector.server_request(self.server, str(env.method), jsonrpc.load(env.params))
        note_decision(span, outcome.decision)
        if outcome.action == "pass":
            return [("down", frame, None)]
        if outcome.action == "rewrite":
            return [("down", _replace(env, params=outcome.payload), None)]
        # Refuse on the server's behalf: the client never sees the request.
        note_refused(span, outcome.code)
        rid = env.id if isinstance(env.id, int | str) else None
        if rid is not None:
            self.asked.pop(rid, None)
        return [("up", jsonrpc.error_frame(rid, outcome.code, outcome.message, outcome.data), None)]

    async def _check_client_reply(
        self, rid: RequestId, env: Envelope, frame: bytes, method: str, span: Span | None
    ) -> list[Out]:
        assert self.inspector is not None
        outcome = await self.inspector.client_reply(self.server, method, jsonrpc.load(env.result))
        note_decision(span, outcome.decision)
        if outcome.action == "pass":
            return [("up", frame, None)]
        if outcome.action == "rewrite":
            return [("up", _replace(env, result=outcome.payload), None)]
        # Withhold the answer: the server gets the refusal in its place.
        note_refused(span, outcome.code)
        return [("up", jsonrpc.error_frame(rid, outcome.code, outcome.message, outcome.data), None)]

    def _reply_withheld(self, rid: RequestId) -> list[Out]:
        msg = "the proxy could not inspect the client's reply; withheld (fail closed)"
        return [("up", jsonrpc.error_frame(rid, jsonrpc.INTERNAL_ERROR, msg), None)]


def _replace(env: Envelope, *, params: Any = UNSET, result: Any = UNSET) -> bytes:
    """Re-encode a message with a new params or result (the only place a forwarded frame is rebuilt)."""
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if env.id is not UNSET:
        message["id"] = env.id
    if env.method is not UNSET:
        message["method"] = env.method
    if params is not UNSET:
        message["params"] = params
    elif len(env.params):
        message["params"] = jsonrpc.load(env.params)
    if result is not UNSET:
        message["result"] = result
    return jsonrpc.dumps(message)


def _unavailable(server: str) -> dict[str, Any]:
    return jsonrpc.problem("upstream-unavailable", "Upstream unavailable", server=server)
