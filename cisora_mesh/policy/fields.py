"""The fields a rule can test, and how each is read from an evaluation's inputs.

Every field has a type (string, number, boolean, severity, or any JSON value) and is either single-valued or
list-valued. Semantics, as documented in docs/policy-language.md:

* **Missing** (the event has no such field, e.g. `tool.name` on a prompt, or `time.hour` without an injected
  clock): every positive operator (`==`, `in`, `contains`, `matches`, `regex`, `<`, `<=`, `>`, `>=`) is false.
* **List-valued** (`findings.*`, `subject.roles`, `content.*`, and JSON arrays under `tool.args`/`context`): a
  positive operator is true when *any* element satisfies it; an empty list behaves like a missing field.
* **Negated operators** are exact negations: `a != b` is `not (a == b)` and `a not in L` is `not (a in L)`, also for
  missing and list-valued fields. So `subject.roles not in ["admin"]` means "no role is admin", which is also true
  for a subject without roles: a blocking rule fails closed.
* **Severity** fields compare by rank (low < medium < high < critical), so `findings.severity >= "high"` works.

Reading a field never performs I/O; `time.*` is read only from the `now` the caller injects.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cisora_mesh.events import (
    A2AMessage,
    ContentKind,
    ContentScan,
    Direction,
    Event,
    Finding,
    HttpRequest,
    McpMessage,
    MemoryIngest,
    ModelInput,
    ModelOutput,
    Severity,
)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

SEVERITY_RANK: Final = {s.value: s.rank for s in Severity}


class FieldType(enum.Enum):
    STR = "string"
    NUM = "number"
    BOOL = "boolean"
    SEVERITY = "severity"
    ANY = "any"  # JSON values under tool.args / context: type checked at run time


@dataclass(slots=True)
class EvalInput:
    """What a rule sees: the event, the findings and score of the detection pipeline, and injected facts."""

    event: Event
    findings: tuple[Finding, ...]
    score: float
    now: datetime | float | None = None  # a POSIX timestamp is converted only if a rule reads the clock
    context: Mapping[str, object] | None = None


Getter = Callable[[EvalInput], object]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    many: bool
    doc: str
    get: Getter


def _attr(cls: type | tuple[type, ...], attr: str) -> Getter:
    def get(inp: EvalInput) -> object:
        event = inp.event
        if isinstance(event, cls):
            value = getattr(event, attr)
            return MISSING if value is None else value
        return MISSING

    return get


def _findings(attr: str) -> Getter:
    def get(inp: EvalInput) -> object:
        return tuple(getattr(f, attr) for f in inp.findings if getattr(f, attr) is not None)

    return get


def _event_kind(inp: EvalInput) -> object:
    return type(inp.event).__struct_config__.tag  # msgspec tag, e.g. "mcp.message"


def _direction(inp: EvalInput) -> object:
    event = inp.event
    return event.direction.value if isinstance(event, McpMessage | A2AMessage) else MISSING


def _tool_name(inp: EvalInput) -> object:
    event = inp.event
    if not isinstance(event, McpMessage):
        return MISSING
    if event.tool:
        return event.tool
    params = event.params
    if event.method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        return params["name"]
    return MISSING


def tool_arguments(event: Event) -> object:
    """The arguments of an MCP `tools/call` (`params.arguments`), or MISSING."""
    if isinstance(event, McpMessage) and isinstance(event.params, dict):
        args = event.params.get("arguments")
        if isinstance(args, dict):
            return args
    return MISSING


def _severity_ranks(inp: EvalInput) -> object:
    return tuple(f.severity.rank for f in inp.findings)


def _max_severity(inp: EvalInput) -> object:
    return max((f.severity.rank for f in inp.findings), default=MISSING)


def _content_kinds(inp: EvalInput) -> object:
    return tuple(c.kind.value for c in inp.event.contents())


def _content_texts(inp: EvalInput) -> object:
    return tuple(c.text for c in inp.event.contents())


def _http(attr: str) -> Getter:
    def get(inp: EvalInput) -> object:
        # HttpRequest carries it; other events built by the ASGI middleware pass it as `context["http.<attr>"]`.
        if isinstance(inp.event, HttpRequest):
            return getattr(inp.event, attr)
        if inp.context is not None:
            value = inp.context.get(f"http.{attr}")
            if isinstance(value, str):
                return value
        return MISSING

    return get


def _clock(part: str) -> Getter:
    def get(inp: EvalInput) -> object:
        clock = now_from(inp.now)
        if clock is None:
            return MISSING
        now = clock.astimezone(UTC)
        return now.hour if part == "hour" else now.weekday()

    return get


def _subject(attr: str) -> Getter:
    def get(inp: EvalInput) -> object:
        value = getattr(inp.event.subject, attr)
        return MISSING if value is None else value

    return get


def _spec(name: str, type_: FieldType, many: bool, doc: str, get: Getter) -> FieldSpec:
    return FieldSpec(name, type_, many, doc, get)


S, N, B, SEV = FieldType.STR, FieldType.NUM, FieldType.BOOL, FieldType.SEVERITY

FIELDS: Final[dict[str, FieldSpec]] = {
    spec.name: spec
    for spec in (
        _spec(
            "event.kind",
            S,
            False,
            "event type tag: model.input, model.output, content.scan, mcp.message, "
            "http.request, memory.ingest, a2a.message",
            _event_kind,
        ),
        _spec("event.direction", S, False, "inbound | outbound (MCP and A2A events)", _direction),
        _spec("subject.tenant", S, False, "tenant of the acting subject", _subject("tenant")),
        _spec("subject.agent", S, False, "agent id", _subject("agent")),
        _spec("subject.user", S, False, "end-user id", _subject("user")),
        _spec("subject.session", S, False, "session id", _subject("session")),
        _spec("subject.roles", S, True, "roles of the subject (list)", _subject("roles")),
        _spec("subject.role", S, True, "alias of subject.roles", _subject("roles")),
        _spec(
            "findings.category",
            S,
            True,
            "category of each finding (pii, secret, instruction_override...)",
            _findings("category"),
        ),
        _spec(
            "findings.rule_id",
            S,
            True,
            "detector rule id of each finding (DLP-PII-PAYMENT-CARD...)",
            _findings("rule_id"),
        ),
        _spec("findings.detector", S, True, "detector (stage) name of each finding", _findings("detector")),
        _spec("findings.label", S, True, "redaction label of each finding (CREDIT_CARD...)", _findings("label")),
        _spec("findings.severity", SEV, True, "severity of each finding", _severity_ranks),
        _spec("findings.confidence", N, True, "confidence of each finding, 0..1", _findings("confidence")),
        _spec("findings.count", N, False, "number of findings", lambda inp: len(inp.findings)),
        _spec("findings.max_severity", SEV, False, "worst finding severity (missing without findings)", _max_severity),
        _spec("score", N, False, "highest injection/poisoning probability, 0..1", lambda inp: inp.score),
        _spec("tool.name", S, False, "MCP tool name (tools/call)", _tool_name),
        _spec("tool.server", S, False, "MCP server name", _attr(McpMessage, "server")),
        _spec("content.kind", S, True, "kind of each scanned text (prompt, output, tool_arguments...)", _content_kinds),
        _spec("content.text", S, True, "each scanned text of the event (use with contains/regex)", _content_texts),
        _spec("http.method", S, False, "HTTP method", _http("method")),
        _spec("http.path", S, False, "HTTP path", _http("path")),
        _spec("mcp.method", S, False, "JSON-RPC method of an MCP message", _attr(McpMessage, "method")),
        _spec("a2a.method", S, False, "JSON-RPC method of an A2A message", _attr(A2AMessage, "method")),
        _spec("a2a.skill", S, False, "A2A skill id", _attr(A2AMessage, "skill")),
        _spec("a2a.peer", S, False, "A2A peer agent", _attr(A2AMessage, "peer_agent")),
        _spec("memory.collection", S, False, "memory/RAG collection", _attr(MemoryIngest, "collection")),
        _spec("memory.source_uri", S, False, "source URI of an ingested document", _attr(MemoryIngest, "source_uri")),
        _spec("time.hour", N, False, "UTC hour 0..23 of the injected `now` (missing without one)", _clock("hour")),
        _spec("time.weekday", N, False, "UTC weekday 0=Monday of the injected `now`", _clock("weekday")),
    )
}

DYNAMIC_PREFIXES: Final = {
    "tool.args.": "an argument of the MCP tool call, by dotted path (list indexes are numbers)",
    "context.": "a fact the caller injects (e.g. context.untrusted_content_seen), by dotted path",
}


def _walk(root: object, path: tuple[str, ...]) -> object:
    value = root
    for part in path:
        if isinstance(value, Mapping):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return tuple(value) if isinstance(value, list) else value


def resolve(name: str) -> FieldSpec | None:
    """The spec for a field name, including `tool.args.<path>` and `context.<path>`; None if unknown."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    if name.startswith("tool.args.") and len(name) > len("tool.args."):
        path = tuple(name[len("tool.args.") :].split("."))
        return FieldSpec(
            name,
            FieldType.ANY,
            False,
            DYNAMIC_PREFIXES["tool.args."],
            lambda inp: _walk(tool_arguments(inp.event), path),
        )
    if name.startswith("context.") and len(name) > len("context."):
        path = tuple(name[len("context.") :].split("."))
        return FieldSpec(
            name,
            FieldType.ANY,
            False,
            DYNAMIC_PREFIXES["context."],
            lambda inp: MISSING if inp.context is None else _walk(inp.context, path),
        )
    return None


def _fs(*names: str) -> frozenset[str]:
    return frozenset(("any", *names))


# Constants rather than sets built per call: this runs on every evaluation.
_HTTP, _PROMPT, _OUTPUT, _MEMORY = _fs("http", "prompt"), _fs("prompt"), _fs("output"), _fs("memory")
_MCP, _MCP_LIST = _fs("mcp"), _fs("mcp", "tool_list")
_MCP_CALL, _MCP_RESULT = _fs("mcp", "tool_call"), _fs("mcp", "tool_result")
_A2A_IN, _A2A_OUT, _ANY = _fs("a2a", "prompt"), _fs("a2a", "output"), _fs()


def surfaces_of(event: Event) -> frozenset[str]:
    """The rule surfaces an event belongs to (a rule applies when its surfaces intersect these)."""
    if isinstance(event, McpMessage):
        if event.method == "tools/call":
            return _MCP_CALL if event.direction is Direction.OUTBOUND else _MCP_RESULT
        return _MCP_LIST if event.method == "tools/list" else _MCP
    if isinstance(event, HttpRequest):
        return _HTTP
    if isinstance(event, ModelInput):
        return _PROMPT
    if isinstance(event, ModelOutput):
        return _OUTPUT
    if isinstance(event, A2AMessage):
        return _A2A_IN if event.direction is Direction.INBOUND else _A2A_OUT
    if isinstance(event, MemoryIngest):
        return _MEMORY
    if isinstance(event, ContentScan):
        return _fs("scan", _SCAN_SURFACE.get(event.kind, "scan"))
    return _ANY


_SCAN_SURFACE: Final = {
    ContentKind.PROMPT: "prompt",
    ContentKind.OUTPUT: "output",
    ContentKind.TOOL_RESULT: "tool_result",
    ContentKind.TOOL_DESCRIPTION: "tool_list",
    ContentKind.TOOL_ARGUMENTS: "tool_call",
    ContentKind.DOCUMENT: "memory",
}


def now_from(value: datetime | float | None) -> datetime | None:
    """Accept an injected clock value as a datetime or a POSIX timestamp."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(value, UTC)
