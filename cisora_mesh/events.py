"""One event model for every path.

An adapter (MCP proxy, ASGI middleware, memory guard, A2A, the `scan` CLI) turns what it sees into one of the
events below; `Mesh.evaluate(event)` returns one `Decision`; the decision is audited before any path enforces it.

All types are msgspec Structs: frozen (safe to share between threads and stages), keyword-only (fields can be
added without breaking callers) and tagged (they encode to JSON with a `type` field and decode back to the right
class, so an audit record or a queue message round-trips without a registry of our own).
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Final, TypeAlias

import msgspec

JSONValue: TypeAlias = bool | int | float | str | list[Any] | dict[str, Any] | None

SCHEMA_VERSION: Final = 1


class Severity(enum.StrEnum):
    """Severity of a finding. Ordered through `rank`, so `max(..., key=Severity.rank)` gives the worst one."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @staticmethod
    def worst(*severities: Severity) -> Severity | None:
        return max(severities, key=_SEVERITY_RANK.__getitem__, default=None)


_SEVERITY_RANK: Final = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class Verdict(enum.StrEnum):
    """The four actions of the product, in order of strictness."""

    ALLOW = "allow"
    REDACT = "redact"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _VERDICT_RANK[self]

    @staticmethod
    def strictest(*verdicts: Verdict) -> Verdict:
        # A plain loop: this runs two or three times per decision, where max(key=...) costs twice as much.
        best, best_rank = Verdict.ALLOW, 0
        for verdict in verdicts:
            rank = _VERDICT_RANK[verdict]
            if rank > best_rank:
                best, best_rank = verdict, rank
        return best


_VERDICT_RANK: Final = {Verdict.ALLOW: 0, Verdict.REDACT: 1, Verdict.REVIEW: 2, Verdict.BLOCK: 3}


class ContentKind(enum.StrEnum):
    """What a piece of text is; decides which detectors look at it and how strictly."""

    PROMPT = "prompt"
    TOOL_RESULT = "tool_result"
    DOCUMENT = "document"
    TOOL_DESCRIPTION = "tool_description"
    OUTPUT = "output"
    TOOL_ARGUMENTS = "tool_arguments"


class Direction(enum.StrEnum):
    """Which way a message travels relative to the protected agent."""

    INBOUND = "inbound"  # towards the agent/model: tool results, tool lists, A2A replies
    OUTBOUND = "outbound"  # away from the agent: tool calls, A2A requests, model output to a user


class _RandomPool:
    """Bytes from the OS CSPRNG, read 4 KiB at a time.

    `os.urandom` releases the GIL around its system call; with another thread busy (the audit writer), taking the
    GIL back can cost far more than the call, and every decision makes several ids. One read serves 400 ids. The
    pool is dropped in a forked child, which must not hand out its parent's bytes again.
    """

    _SIZE: Final = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(self._SIZE), 0
            chunk = self._buf[self._pos : self._pos + n]
            self._pos += n
            return chunk

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._pos = b"", 0


_pool: Final = _RandomPool()
os.register_at_fork(after_in_child=_pool.reset)


def new_id() -> str:
    """A sortable, unique event id (UUIDv7 layout: 48-bit ms timestamp, then randomness)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_pool.take(10)) & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    # The RFC 9562 text form, built directly (uuid.UUID objects cost more than the rest of this function).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Subject(msgspec.Struct, frozen=True, kw_only=True):
    """Who is acting: the tenant, and the agent/user/session inside it."""

    tenant: str = "default"
    agent: str | None = None
    user: str | None = None
    session: str | None = None
    roles: tuple[str, ...] = ()


ANONYMOUS: Final = Subject()


class Content(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of text inside an event that detectors read.

    `location` addresses the text inside its event (a JSON-Pointer-like path such as `/result/content/0/text`,
    or `""` for an event whose whole payload is one text) so a redaction can be written back in place.
    """

    kind: ContentKind
    text: str
    location: str = ""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. Subclasses say which texts they carry through `contents()`."""

    id: str = msgspec.field(default_factory=new_id)
    at: float = msgspec.field(default_factory=time.time)
    subject: Subject = ANONYMOUS
    trace_id: str | None = None

    def contents(self) -> Iterator[Content]:
        return iter(())


class ModelInput(Event, frozen=True, kw_only=True, tag="model.input"):
    """A prompt (user, system or developer message) on its way to a model."""

    text: str
    role: str = "user"

    def contents(self) -> Iterator[Content]:
        yield Content(kind=ContentKind.PROMPT, text=self.text)


class ModelOutput(Event, frozen=True, kw_only=True, tag="model.output"):
    """Text a model produced, on its way to a user, an agent or a tool."""

    text: str

    def contents(self) -> Iterator[Content]:
        yield Content(kind=ContentKind.OUTPUT, text=self.text)


class ContentScan(Event, frozen=True, kw_only=True, tag="content.scan"):
    """A standalone text of a declared kind (the `scan` CLI, batch evaluation, library callers)."""

    kind: ContentKind
    text: str

    def contents(self) -> Iterator[Content]:
        yield Content(kind=self.kind, text=self.text)


class McpMessage(Event, frozen=True, kw_only=True, tag="mcp.message"):
    """An MCP JSON-RPC message seen by the proxy or the in-process guard."""

    direction: Direction
    method: str
    server: str | None = None
    tool: str | None = None
    params: JSONValue = None
    result: JSONValue = None

    def contents(self) -> Iterator[Content]:
        if self.method == "tools/list" and isinstance(self.result, dict):
            for i, tool in enumerate(self.result.get("tools") or ()):
                yield Content(
                    kind=ContentKind.TOOL_DESCRIPTION,
                    text=msgspec.json.encode(tool).decode(),
                    location=f"/result/tools/{i}",
                )
        elif self.direction is Direction.OUTBOUND and self.params is not None:
            yield from string_leaves(self.params, "/params", ContentKind.TOOL_ARGUMENTS)
        elif self.result is not None:
            yield from string_leaves(self.result, "/result", ContentKind.TOOL_RESULT)


class HttpRequest(Event, frozen=True, kw_only=True, tag="http.request"):
    """An HTTP request entering an ASGI app. Header values are not scanned (they carry credentials)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: JSONValue = None

    def contents(self) -> Iterator[Content]:
        if self.body is not None:
            yield from string_leaves(self.body, "/body", ContentKind.PROMPT)


class MemoryIngest(Event, frozen=True, kw_only=True, tag="memory.ingest"):
    """A document or memory write on its way into a vector store or agent memory."""

    collection: str
    doc_id: str
    text: str
    source_uri: str | None = None

    def contents(self) -> Iterator[Content]:
        yield Content(kind=ContentKind.DOCUMENT, text=self.text)


class A2AMessage(Event, frozen=True, kw_only=True, tag="a2a.message"):
    """An Agent2Agent JSON-RPC message (text parts are scanned)."""

    direction: Direction
    method: str
    peer_agent: str | None = None
    skill: str | None = None
    text: str = ""

    def contents(self) -> Iterator[Content]:
        kind = ContentKind.PROMPT if self.direction is Direction.INBOUND else ContentKind.OUTPUT
        if self.text:
            yield Content(kind=kind, text=self.text)


AnyEvent: TypeAlias = ModelInput | ModelOutput | ContentScan | McpMessage | HttpRequest | MemoryIngest | A2AMessage


def string_leaves(value: JSONValue, path: str, kind: ContentKind) -> list[Content]:
    """Every string leaf of a JSON value in document order, addressed by an RFC 6901 JSON Pointer."""
    out: list[Content] = []
    _collect_leaves(value, path, kind, out)
    return out


def _collect_leaves(value: JSONValue, path: str, kind: ContentKind, out: list[Content]) -> None:
    # Appending to one list: nested generators would pay a `yield from` hop per leaf per level of nesting.
    if isinstance(value, str):
        if value:
            out.append(Content(kind=kind, text=value, location=path))
    elif isinstance(value, dict):
        for key, item in value.items():
            key = str(key)
            if "~" in key or "/" in key:
                key = key.replace("~", "~0").replace("/", "~1")
            _collect_leaves(item, f"{path}/{key}", kind, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _collect_leaves(item, f"{path}/{i}", kind, out)


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a detector noticed.

    `start`/`end` are character offsets into the content at `location` (None when the finding is about the
    content as a whole). `confidence` is the detector's estimate that this finding is a true positive.
    """

    detector: str
    rule_id: str
    category: str
    severity: Severity
    confidence: float
    start: int | None = None
    end: int | None = None
    location: str = ""
    action: Verdict | None = None  # the action the detector's configuration asks for, if any
    label: str | None = None  # redaction label (e.g. "AWS_ACCESS_KEY") for DLP findings


class Rewrite(msgspec.Struct, frozen=True, kw_only=True):
    """Replacement text for the content at `location` (produced by redaction)."""

    location: str
    text: str


class StageTiming(msgspec.Struct, frozen=True):
    stage: str
    micros: float


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The one outcome of evaluating an event."""

    id: str = msgspec.field(default_factory=new_id)
    event_id: str
    event_type: str
    subject: Subject
    verdict: Verdict
    score: float = 0.0  # highest injection/poisoning probability, 0..1
    findings: tuple[Finding, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    policy_ids: tuple[str, ...] = ()
    timings: tuple[StageTiming, ...] = ()
    stages: str = "inline"  # "inline" or "full"
    trace_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def redacted_text(self) -> str | None:
        """The rewritten text of a single-content event, if anything was redacted."""
        for rewrite in self.rewrites:
            if rewrite.location == "":
                return rewrite.text
        return None

    @property
    def blocked(self) -> bool:
        return self.verdict is Verdict.BLOCK
