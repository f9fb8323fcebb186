"""JSON-RPC payloads <-> `McpMessage` events, and enforcement of the resulting `Decision`.

Every inspection point builds one event, calls `Mesh.evaluate` (which appends the decision to the audit store
before returning, so nothing is forwarded on an unrecorded decision) and turns the verdict into one of:

- pass: forward the original bytes untouched;
- rewrite: forward a payload with each `Rewrite` applied at its JSON-Pointer location (redaction);
- deny: answer with a JSON-RPC error whose `data` is a problem object (type, decision id, rule ids).

Tool results are the exception to deny: a blocked result becomes a text block the model can read ("withheld by
policy: ...") so the agent's loop continues and the model can tell the user why.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio.to_thread

from cisora_mesh.events import (
    Content,
    ContentKind,
    Decision,
    Direction,
    Finding,
    McpMessage,
    Severity,
    Subject,
    Verdict,
    string_leaves,
)
from cisora_mesh.mesh import Mesh
from mcp_proxy import jsonrpc
from mcp_proxy.policy import ArgumentPolicy, ArgumentViolation

if TYPE_CHECKING:
    from cisora_mesh.auth.capability import CapabilityGate

WITHHELD: Final = "withheld by policy"


class ServerRequest(McpMessage, frozen=True, kw_only=True, tag="mcp.message"):
    """A request from a server to the client (`sampling/createMessage`, `elicitation/create`; MCP 2025-11-25).

    `McpMessage` reads inbound text from `result` (a response); a server request carries its text in `params`
    (`messages`, `systemPrompt`; elicitation's `message` and schema titles). It stays there, addressed as
    `/params/...`, direction inbound, and every string is scanned as third-party text (`TOOL_RESULT`): the server
    wrote it and it is on its way into the client's model context or onto the user's screen, so it gets exactly
    the trust of a tool result. Same event type (`mcp.message`) for policy and audit.
    """

    def contents(self) -> Iterator[Content]:
        yield from string_leaves(self.params, "/params", ContentKind.TOOL_RESULT)


class ClientReply(McpMessage, frozen=True, kw_only=True, tag="mcp.message"):
    """The client's answer to a server request: what its model generated (`sampling/createMessage`) or what its
    user entered (`elicitation/create`), on its way out to the server.

    Every string of the `result` is scanned as `OUTPUT`: it leaves the protected side, so DLP applies to every
    category (a model can be talked into repeating a secret from its context; a form can collect personal data),
    and of the injection rules only rendering exfiltration (a Markdown image that leaks on display) applies.
    """

    def contents(self) -> Iterator[Content]:
        yield from string_leaves(self.result, "/result", ContentKind.OUTPUT)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with an inspected payload."""

    action: Literal["pass", "rewrite", "deny"]
    payload: Any = None  # the rewritten params/result for "rewrite"
    code: int = 0
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    decision: Decision | None = None  # the decision behind it (its id and verdict go on the message's span)


PASS: Final = Outcome("pass")


def rule_ids(decision: Decision) -> list[str]:
    return sorted({f.rule_id for f in decision.findings})


def deny_for(decision: Decision, what: str) -> Outcome:
    """The JSON-RPC error for a blocked or held request (`what` names the thing, e.g. "tool call 'x'")."""
    ids = rule_ids(decision)
    if decision.verdict is Verdict.REVIEW:
        return Outcome(
            "deny",
            decision=decision,
            code=jsonrpc.REVIEW_REQUIRED,
            message=f"{what} is held for review: approve decision {decision.id} to allow it",
            data=jsonrpc.problem(
                "review-required", "Held for review", decision_id=decision.id, verdict="review", rule_ids=ids
            ),
        )
    return Outcome(
        "deny",
        decision=decision,
        code=jsonrpc.POLICY_DENIED,
        message=f"{what} was blocked by policy (decision {decision.id})",
        data=jsonrpc.problem(
            "policy-denied", "Blocked by policy", decision_id=decision.id, verdict="block", rule_ids=ids
        ),
    )


def withheld_text(decision: Decision) -> str:
    rules = ", ".join(rule_ids(decision)) or "policy"
    held = "held for review" if decision.verdict is Verdict.REVIEW else "blocked"
    return f"[{WITHHELD}: this content was {held} (decision {decision.id}; rules: {rules})]"


def set_pointer(doc: Any, pointer: str, value: Any) -> bool:
    """Set the value at an RFC 6901 JSON Pointer inside `doc`. Returns False when the path does not exist."""
    if not pointer.startswith("/"):
        return False
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        node[last] = value
        return True
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
        return True
    return False


def _without_meta(payload: Any) -> Any:
    # `_meta` carries protocol plumbing (client info, trace context, cache hints), not content for the model.
    if isinstance(payload, dict) and "_meta" in payload:
        return {k: v for k, v in payload.items() if k != "_meta"}
    return payload


class Inspector:
    """Runs the inspection points of one proxy session through a `Mesh`."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        tenant: str,
        session: str | None = None,
        argument_policy: ArgumentPolicy | None = None,
        capability: CapabilityGate | None = None,
    ) -> None:
        self.mesh = mesh
        self.argument_policy = argument_policy
        # Carried here because every transport (stdio, router, HTTP) builds its sessions from an inspector: a gate
        # attached anywhere else could be left out of one of them and let calls through unchecked.
        self.capability = capability
        self.subject = Subject(tenant=tenant, session=session)
        # A durable audit append blocks for a commit; await it (`Mesh.aevaluate`) so other frames keep flowing and
        # concurrent decisions share one group commit. Without an audit sink the inline path is ~30 us: stay inline.
        self._threaded = mesh.audit is not None
        # Only preventive decisions wait for their commit by default (`audit.durable_before = "preventive"`); an
        # allow commits in the background and returns at once, so the pump only pays for running inspections
        # concurrently (a task, a future and a queue hop per message) when every decision waits.
        self._waits = self._threaded and mesh.config.audit.durable_before == "all"

    @property
    def waits(self) -> bool:
        """True when most evaluations wait on I/O (the audit commit), so running several at once pays off."""
        return self._waits

    async def evaluate(self, event: McpMessage) -> Decision:
        if self._threaded:
            # Inline stages on the loop; the durable audit commit is awaited as a future (no thread hop), so
            # concurrent decisions share one group commit.
            return await self.mesh.aevaluate(event)
        return self.mesh.evaluate(event)

    def _event(self, direction: Direction, method: str, server: str | None, tool: str | None, **kw: Any) -> McpMessage:
        return McpMessage(subject=self.subject, direction=direction, method=method, server=server, tool=tool, **kw)

    async def tool_call(self, server: str | None, tool: str, params: dict[str, Any]) -> Outcome:
        """A `tools/call` request: argument policy and DLP (secrets being exfiltrated into a call)."""
        scanned = _without_meta(params)
        event = self._event(Direction.OUTBOUND, "tools/call", server, tool, params=scanned)
        arguments = params.get("arguments")
        if self.argument_policy is not None and isinstance(arguments, dict):
            violation = self.argument_policy.check(server, tool, arguments)
            if violation is not None:
                return deny_for(await self._record_violation(event, violation), f"tool call {tool!r}")
        return await self._inspected(event, "params", params, f"tool call {tool!r}")

    async def _record_violation(self, event: McpMessage, violation: ArgumentViolation) -> Decision:
        """An argument-policy denial is a decision too: audited before the call is refused."""
        finding = Finding(
            detector="argument-policy",
            rule_id=violation.rule_id,
            category="argument_policy",
            severity=Severity.HIGH,
            confidence=1.0,
            location=violation.location,
            action=Verdict.BLOCK,
        )
        decision = Decision(
            event_id=event.id,
            event_type="mcp.message",
            subject=event.subject,
            verdict=Verdict.BLOCK,
            score=0.0,
            findings=(finding,),
            trace_id=event.trace_id,
        )
        audit = self.mesh.audit
        if audit is not None:
            await anyio.to_thread.run_sync(audit.append_decision, decision, event)
        return decision

    async def result(self, method: str, server: str | None, tool: str | None, result: Any) -> Outcome:
        """A result flowing to the agent: tools/call, resources/read, prompts/get."""
        decision = await self.evaluate(
            self._event(Direction.INBOUND, method, server, tool, result=_without_meta(result))
        )
        if decision.verdict is Verdict.ALLOW:
            return Outcome("pass", decision=decision)
        if decision.verdict is Verdict.REDACT:
            return _rewritten(decision, "result", result)
        if method == "tools/call" and isinstance(result, dict) and result.get("resultType") != "input_required":
            # Keep the envelope fields (2026-07-28 requires `resultType`; `_meta` carries server info).
            withheld = {k: v for k, v in result.items() if k in ("_meta", "resultType")}
            withheld.update(content=[{"type": "text", "text": withheld_text(decision)}], isError=True)
            return Outcome("rewrite", payload=withheld, decision=decision)
        what = {"resources/read": "resource", "prompts/get": "prompt"}.get(method, f"{method} result")
        return deny_for(decision, what)

    async def instructions(self, method: str, server: str | None, result: dict[str, Any]) -> Outcome:
        """Server `instructions` (initialize / server/discover results) go straight into the model's context."""
        text = result.get("instructions")
        if not isinstance(text, str) or not text:
            return PASS
        decision = await self.evaluate(
            self._event(Direction.INBOUND, method, server, None, result={"instructions": text})
        )
        if decision.verdict is Verdict.ALLOW:
            return Outcome("pass", decision=decision)
        if decision.verdict is Verdict.REDACT:
            return _rewritten(decision, "result", result)
        # Refusing the handshake would take the whole server away; withholding the text removes the risk.
        return Outcome("rewrite", payload={**result, "instructions": withheld_text(decision)}, decision=decision)

    async def server_request(self, server: str | None, method: str, params: Any) -> Outcome:
        """Sampling / elicitation requests from a server: what it asks the client's model or user."""
        event = ServerRequest(
            subject=self.subject,
            direction=Direction.INBOUND,
            method=method,
            server=server,
            params=_without_meta(params),
        )
        return await self._inspected(event, "params", params, f"server request {method!r}")

    async def client_reply(self, server: str | None, method: str, result: Any) -> Outcome:
        """The client's answer to a sampling / elicitation request, on its way to the server (see `ClientReply`)."""
        event = ClientReply(
            subject=self.subject,
            direction=Direction.OUTBOUND,
            method=method,
            server=server,
            result=_without_meta(result),
        )
        return await self._inspected(event, "result", result, f"reply to {method!r}")

    async def _inspected(self, event: McpMessage, key: str, payload: Any, what: str) -> Outcome:
        """Pass, rewrite `payload` (the message's `key`) with the redactions, or deny, as the decision says."""
        decision = await self.evaluate(event)
        if decision.verdict is Verdict.ALLOW:
            return Outcome("pass", decision=decision)
        if decision.verdict is Verdict.REDACT:
            return _rewritten(decision, key, payload)
        return deny_for(decision, what)

    async def tools_list(self, server: str | None, result: dict[str, Any]) -> tuple[set[int], Decision | None]:
        """Scan a tools/list page for poisoning. Returns the indices of tools to hide and the decision."""
        tools = result.get("tools")
        if not isinstance(tools, list) or not tools:
            return set(), None
        decision = await self.evaluate(
            self._event(Direction.INBOUND, "tools/list", server, None, result={"tools": tools})
        )
        if decision.verdict.rank < Verdict.REVIEW.rank:
            return set(), decision
        hidden = set()
        for finding in decision.findings:
            parts = finding.location.split("/")
            if len(parts) >= 4 and parts[1] == "result" and parts[2] == "tools" and parts[3].isdigit():
                hidden.add(int(parts[3]))
        return hidden, decision


def _rewritten(decision: Decision, key: str, payload: Any) -> Outcome:
    doc = {key: copy.deepcopy(payload)}
    prefix = f"/{key}"
    for rewrite in decision.rewrites:
        location = rewrite.location
        if location.startswith(prefix + "/"):
            set_pointer(doc, f"/{key}" + location[len(prefix) :], rewrite.text)
    return Outcome("rewrite", payload=doc[key], decision=decision)
