"""JSON bodies -> events, and redactions back into JSON bodies.

Requests:
* MCP JSON-RPC (`{"jsonrpc": "2.0", "method": ...}`) -> `McpMessage(direction=outbound)`: its contents are
  addressed as `/params/...`, which is also where they sit in the body, so `Decision.rewrites` apply directly.
* A2A JSON-RPC (`message/send`, `message/stream`, `SendMessage`, `SendStreamingMessage`) -> `A2AMessage`
  (inbound) over the message's text parts.
* Anything else, including chat-style `{"messages": [...]}` bodies -> `HttpRequest(body=...)`, whose contents
  are `/body/...` pointers.

Responses: an MCP result -> `McpMessage(direction=inbound, result=...)`; an A2A result -> `A2AMessage` (outbound)
over its text parts; any other JSON -> `ModelOutput` over the body's string leaves; text -> `ModelOutput`.

Events that hold one joined text (`A2AMessage`, `ModelOutput`) keep a map from that text back to the JSON
pointers of its parts, so a redaction found in the joined text is written back into the right string.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from cisora_mesh.events import (
    A2AMessage,
    Decision,
    Direction,
    Event,
    Finding,
    HttpRequest,
    JSONValue,
    McpMessage,
    ModelOutput,
    Subject,
    Verdict,
)
from cisora_mesh.pipeline.redaction import redact

A2A_METHODS: Final = frozenset({"message/send", "message/stream", "SendMessage", "SendStreamingMessage"})
_JOIN: Final = "\n"


@dataclass(frozen=True, slots=True)
class Extracted:
    """An event plus what is needed to enforce its decision on the original JSON."""

    event: Event
    protocol: str  # "mcp" | "a2a" | "json" | "text"
    rpc_method: str | None = None
    tool: str | None = None
    # For joined-text events: (pointer, start offset in the joined text) of every part, in order.
    parts: tuple[tuple[str, int], ...] = field(default=())


def _escape(key: str) -> str:
    if "~" not in key and "/" not in key:
        return key
    return key.replace("~", "~0").replace("/", "~1")


def _text_parts(value: JSONValue, path: str, in_parts: bool = False) -> Iterator[tuple[str, str]]:
    """Text of every A2A part: objects with a string `text` inside a `parts` array (v0.3 and v1 shapes)."""
    if isinstance(value, dict):
        text = value.get("text")
        if in_parts and isinstance(text, str):
            yield f"{path}/text", text
        for key, item in value.items():
            yield from _text_parts(item, f"{path}/{_escape(str(key))}", key == "parts")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _text_parts(item, f"{path}/{i}", in_parts)


def _string_leaves(value: JSONValue, path: str, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every non-empty string in `value` with its pointer (appended to `out`: no generator frames on this path)."""
    if isinstance(value, str):
        if value:
            out.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):  # the common leaf, inlined
                if item:
                    out.append((f"{path}/{_escape(key)}", item))
            elif isinstance(item, dict | list):
                _string_leaves(item, f"{path}/{_escape(key)}", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                if item:
                    out.append((f"{path}/{i}", item))
            elif isinstance(item, dict | list):
                _string_leaves(item, f"{path}/{i}", out)
    return out


def _join(pieces: list[tuple[str, str]]) -> tuple[str, tuple[tuple[str, int], ...]]:
    if len(pieces) == 1:
        pointer, text = pieces[0]
        return text, ((pointer, 0),)
    parts: list[tuple[str, int]] = []
    offset = 0
    for pointer, text in pieces:
        parts.append((pointer, offset))
        offset += len(text) + len(_JOIN)
    return _JOIN.join(text for _, text in pieces), tuple(parts)


def _skill(params: dict[str, JSONValue]) -> str | None:
    """A2A has no skill field on a message; callers conventionally put it in metadata (`skill`/`skillId`)."""
    message = params.get("message")
    holders = [params.get("metadata"), message.get("metadata") if isinstance(message, dict) else None]
    for holder in holders:
        if isinstance(holder, dict):
            for key in ("skill", "skillId", "skill_id"):
                if isinstance(holder.get(key), str):
                    return str(holder[key])
    return None


def request_event(doc: JSONValue, *, method: str, path: str, subject: Subject, event_id: str) -> Extracted:
    if isinstance(doc, dict) and doc.get("jsonrpc") == "2.0" and isinstance(doc.get("method"), str):
        rpc = str(doc["method"])
        params = doc.get("params")
        if rpc in A2A_METHODS:
            text, parts = _join(list(_text_parts(params, "/params")))
            skill = _skill(params) if isinstance(params, dict) else None
            event: Event = A2AMessage(
                id=event_id, subject=subject, direction=Direction.INBOUND, method=rpc, skill=skill, text=text
            )
            return Extracted(event, "a2a", rpc_method=rpc, parts=parts)
        tool = None
        if rpc == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
            tool = str(params["name"])
        event = McpMessage(
            id=event_id, subject=subject, direction=Direction.OUTBOUND, method=rpc, tool=tool, params=params
        )
        return Extracted(event, "mcp", rpc_method=rpc, tool=tool)
    return Extracted(HttpRequest(id=event_id, subject=subject, method=method, path=path, body=doc), "json")


def response_event(doc: JSONValue, request: Extracted | None, *, subject: Subject, event_id: str) -> Extracted:
    if request is not None and request.protocol in ("mcp", "a2a") and isinstance(doc, dict) and "result" in doc:
        if request.protocol == "mcp":
            event: Event = McpMessage(
                id=event_id,
                subject=subject,
                direction=Direction.INBOUND,
                method=request.rpc_method or "",
                tool=request.tool,
                result=doc["result"],
            )
            return Extracted(event, "mcp", rpc_method=request.rpc_method, tool=request.tool)
        text, parts = _join(list(_text_parts(doc["result"], "/result")))
        event = A2AMessage(
            id=event_id, subject=subject, direction=Direction.OUTBOUND, method=request.rpc_method or "", text=text
        )
        return Extracted(event, "a2a", rpc_method=request.rpc_method, parts=parts)
    text, parts = _join(_string_leaves(doc, "", []))
    return Extracted(ModelOutput(id=event_id, subject=subject, text=text), "json", parts=parts)


def text_event(text: str, *, subject: Subject, event_id: str) -> Extracted:
    return Extracted(ModelOutput(id=event_id, subject=subject, text=text), "text")


# -- enforcing a redact decision on the JSON document ----------------------------------------------------------


def redaction_findings(decision: Decision) -> list[Finding]:
    """Findings to redact: those whose detector asked for redaction; if a policy rule asked instead (none did),
    every finding with a span and a redaction label."""
    spanned = [f for f in decision.findings if f.start is not None and f.end is not None]
    asked = [f for f in spanned if f.action is Verdict.REDACT]
    return asked or [f for f in spanned if f.label is not None]


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def set_pointer(doc: JSONValue, pointer: str, value: str) -> JSONValue:
    """Set the string at an RFC 6901 pointer (which must exist); returns the (possibly new) root."""
    if pointer == "":
        return value
    tokens = [_unescape(t) for t in pointer.split("/")[1:]]
    node: JSONValue = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]  # type: ignore[index]
    last = tokens[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    return doc


def apply_redaction(doc: JSONValue, decision: Decision, extracted: Extracted) -> JSONValue:
    """Write the decision's redactions into `doc` (mutated in place where possible; the new root is returned)."""
    event = extracted.event
    if isinstance(event, HttpRequest | McpMessage):
        prefix = "/body" if isinstance(event, HttpRequest) else ""
        for rewrite in decision.rewrites:
            if rewrite.location.startswith(prefix):
                doc = set_pointer(doc, rewrite.location[len(prefix) :], rewrite.text)
        return doc
    text = event.text if isinstance(event, A2AMessage | ModelOutput) else ""
    if not extracted.parts:
        return doc
    starts = [start for _, start in extracted.parts]
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for f in redaction_findings(decision):
        if f.start is None or f.end is None:  # filtered already; this narrows the type
            continue
        index = bisect_right(starts, f.start) - 1
        base = starts[index]
        part_len = len(_part_text(text, extracted.parts, index))
        spans.setdefault(index, []).append((f.start - base, min(f.end - base, part_len), f.label or "SENSITIVE"))
    for index, located in spans.items():
        pointer = extracted.parts[index][0]
        doc = set_pointer(doc, pointer, redact(_part_text(text, extracted.parts, index), located))
    return doc


def _part_text(text: str, parts: tuple[tuple[str, int], ...], index: int) -> str:
    start = parts[index][1]
    end = parts[index + 1][1] - len(_JOIN) if index + 1 < len(parts) else len(text)
    return text[start:end]
