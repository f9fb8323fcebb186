"""Response scanning: a wrapper around `send` that holds the response start, then passes, buffers or stream-redacts.

Modes, chosen at the first body message from the held start's headers:
* "pass": not text (binary, images), 204/304: forwarded untouched;
* "json"/"text": buffered up to `max_response_bytes`, evaluated once, redacted or replaced by a 403 problem;
  beyond the limit the guard falls back to "stream";
* "sse": `text/event-stream`, scanned one complete event at a time (`_sse.SseSplitter`); an event past
  `max_sse_event_bytes` falls back to "stream" or ends the response (`sse_overflow`);
* "stream": incremental redaction with a hold-back window (`_stream.StreamRedactor`);
* "withhold": a text/JSON/SSE response in a content coding that cannot be decoded: a 502 problem replaces it.

A gzip/deflate response (the app compressed despite `Accept-Encoding: identity`, or relayed an upstream's bytes) is
decoded in pieces of at most `_PIECE` bytes and handled as if the app had sent the decoded bytes; it goes out
decoded, without `Content-Encoding`. The start is held until the first body message, so a problem can still
replace a response that has not started, and a second start is never sent (Starlette's GZipMiddleware holds its
start the same way). A stream's one audit record is written before its last bytes are sent.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
from starlette.types import Message, Send

from cisora_mesh.config import FailMode
from cisora_mesh.events import Decision, Finding, JSONValue, ModelOutput, Subject, Verdict, new_id
from cisora_mesh.pipeline.redaction import redact

from . import _encoding, _scope
from ._deltas import DeltaChannels, Slot, delta_slots
from ._extract import Extracted, apply_redaction, redaction_findings, response_event, text_event
from ._sse import SseEvent, SseSplitter
from ._stream import StreamRedactor
from .problems import RESPONSE_BLOCKED, RESPONSE_UNSCANNABLE, ProblemType, problem_body

if TYPE_CHECKING:
    from .middleware import CisoraMiddleware

Mode = Literal["pass", "json", "text", "stream", "sse", "withhold"]

_LENGTH: Final = frozenset({b"content-length"})
_CODED: Final = frozenset({b"content-length", b"content-encoding"})
_PIECE: Final = 64 << 10  # decoded bytes handled at a time: a small coded message cannot expand in memory at once
_NOT_JSON: Final = object()


class ResponseGuard:
    """Wraps `send` for one request (one instance per request: slots, no per-message allocation beyond need)."""

    __slots__ = (
        "chunks",
        "context",
        "deltas",
        "done",
        "downstream",
        "findings",
        "inflater",
        "mode",
        "mw",
        "request",
        "request_id",
        "size",
        "sse",
        "sse_split",
        "start",
        "started",
        "stream",
        "subject",
        "verdict",
    )

    def __init__(
        self,
        mw: CisoraMiddleware,
        send: Send,
        request_id: str,
        request: Extracted | None,
        subject: Subject,
        context: Mapping[str, object],
    ) -> None:
        self.mw = mw
        self.downstream = send
        self.request_id = request_id
        self.request = request
        self.subject = subject
        self.context = context
        self.start: Message | None = None
        self.started = False
        self.mode: Mode | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.stream: StreamRedactor | None = None
        self.sse = False
        self.done = False
        self.inflater: _encoding.Inflater | None = None
        self.sse_split: SseSplitter | None = None
        self.deltas: DeltaChannels | None = None  # token-delta text channels of a streamed completion (_deltas)
        self.findings: list[Finding] = []  # from SSE event scans (a fallback stream keeps its own)
        self.verdict = Verdict.ALLOW

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.done:
                return  # a blocked stream: swallow whatever the app still sends
            if self.mode is None:
                self.mode = self._choose_mode(message)
                if self.mode == "withhold":
                    await self._unscannable()
                    return
            if self.inflater is not None:
                await self._decoded(message.get("body", b""), bool(message.get("more_body", False)))
            else:
                await self._body(message.get("body", b""), bool(message.get("more_body", False)), message)
        elif kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("the application sent a second http.response.start")
            self.start = message
        else:
            await self._send_start()
            await self.downstream(message)  # trailers, pathsend, ...: not ours to inspect

    async def _body(self, chunk: bytes, more: bool, message: Message | None) -> None:
        mode = self.mode
        if mode == "pass":
            await self._send_start()
            await self.downstream(
                message if message is not None else {"type": "http.response.body", "body": chunk, "more_body": more}
            )
        elif mode == "sse":
            await self._sse(chunk, more)
        elif mode == "stream":
            await self._stream(chunk, more)
        elif not more and not self.chunks:
            # The common case, one body message: no list, no join, no copy.
            if len(chunk) > self.mw.max_response_bytes:
                self.mode = "stream"
                await self._stream(chunk, more)
            else:
                await self._finish_buffered(chunk)
        else:
            self.chunks.append(chunk)
            self.size += len(chunk)
            if self.size > self.mw.max_response_bytes:
                # Too big to hold: fall back to incremental redaction of what we have and what follows.
                self.mode = "stream"
                held, self.chunks = b"".join(self.chunks), []
                await self._stream(held, more)
            elif not more:
                await self._finish_buffered(b"".join(self.chunks))

    def _choose_mode(self, first: Message) -> Mode:
        start = self.start
        if start is None:
            return "pass"
        if start["status"] in (204, 304):
            return "pass"
        heads = _scope.BodyHeads(start.get("headers", ()))
        media = heads.media
        scannable = media == "text/event-stream" or _scope.is_json(media) or _scope.is_text(media)
        if heads.content_encoding and scannable:
            # The request asked for identity (middleware._app_scope), but an app may compress regardless, or relay
            # an upstream's compressed bytes: decode them rather than let the coding hide the response.
            try:
                self.inflater = _encoding.decoder_for(heads.content_encoding)
            except LookupError:
                if self.mw.unknown_encoding == "unsafe_pass":
                    self.mw.stats.unscanned_encoded += 1
                    return "pass"
                return "withhold"  # a 502 problem replaces it
            if self.inflater is not None:
                self.mw.stats.bodies_decoded += 1
                self.start = {**start, "headers": _scope.replace_headers(start.get("headers", ()), _CODED)}
        if media == "text/event-stream":
            self.sse = True
            return "sse"
        if _scope.is_json(media):
            return "json"
        if _scope.is_text(media):
            return "stream" if first.get("more_body", False) else "text"
        return "pass"

    async def _decoded(self, chunk: bytes, more: bool) -> None:
        """Decode a coded body message and handle it as if the app had sent the decoded bytes (in bounded pieces)."""
        inflater = self.inflater
        if inflater is None:  # pragma: no cover - only called with an inflater
            raise RuntimeError("no inflater")
        inflater.feed(chunk)
        try:
            while piece := inflater.read(_PIECE):
                await self._body(piece, True, None)
                if self.done:
                    return
            if not more:
                inflater.finish()
        except _encoding.DecodeError:
            # The app's own response is corrupt: withhold it (or end it, if it has started), never pass it unread.
            if self.started:
                self.done = True
                await self.downstream({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await self._unscannable()
            return
        if not more:
            await self._body(b"", False, None)

    async def _unscannable(self) -> None:
        self.done = True
        await self._problem_reply(RESPONSE_UNSCANNABLE, None)

    async def _send_start(self, *, drop_length: bool = False) -> None:
        if self.started or self.start is None:
            return
        start = self.start
        if drop_length:
            start = {**start, "headers": _scope.replace_headers(start.get("headers", ()), _LENGTH)}
        self.started = True
        await self.downstream(start)

    async def _reply(self, status_start: Message, body: bytes) -> None:
        self.started = True
        await self.downstream(status_start)
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})

    async def _problem(self, decision_id: str | None) -> None:
        await self._problem_reply(RESPONSE_BLOCKED, {"decision_id": decision_id} if decision_id else None)

    async def _problem_reply(self, problem: ProblemType, extra: dict[str, object] | None) -> None:
        body = problem_body(problem, request_id=self.request_id, extra=extra)
        start: Message = {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
        await self._reply(start, body)

    async def _finish_buffered(self, body: bytes) -> None:
        mw = self.mw
        start = self.start
        if not body or start is None:
            await self._send_start()
            await self.downstream({"type": "http.response.body", "body": body, "more_body": False})
            return
        extracted, doc = self._response_event(body)
        decision = await mw.evaluate_audited(extracted.event, self.context)
        if decision is None:
            if mw.fail_mode is FailMode.CLOSED:
                await self._problem(None)
                return
        elif decision.verdict is Verdict.BLOCK or decision.verdict is Verdict.REVIEW:
            # A response cannot wait for a reviewer: review withholds it like a block, naming the decision.
            mw.stats.responses_blocked += 1
            await self._problem(decision.id)
            return
        elif decision.verdict is Verdict.REDACT:
            mw.stats.responses_redacted += 1
            if doc is _NOT_JSON:
                body = self._redact_text(body, decision, extracted)
            else:
                body = msgspec.json.encode(apply_redaction(doc, decision, extracted))  # type: ignore[arg-type]
            self._set_length(len(body))
        elif self.inflater is not None:
            self._set_length(len(body))
        await self._send_start()
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})

    def _set_length(self, length: int) -> None:
        start = self.start
        if start is not None:
            add = [(b"content-length", str(length).encode("ascii"))]
            self.start = {**start, "headers": _scope.replace_headers(start.get("headers", ()), _LENGTH, add)}

    def _response_event(self, body: bytes) -> tuple[Extracted, object]:
        event_id = new_id()
        if self.mode == "json":
            try:
                doc: JSONValue = msgspec.json.decode(body)
            except msgspec.DecodeError:
                pass  # the app's own malformed JSON: scan it as text rather than not at all
            else:
                return response_event(doc, self.request, subject=self.subject, event_id=event_id), doc
        text = body.decode("utf-8", errors="replace")
        return text_event(text, subject=self.subject, event_id=event_id), _NOT_JSON

    @staticmethod
    def _redact_text(body: bytes, decision: Decision, extracted: Extracted) -> bytes:
        text = extracted.event.text if isinstance(extracted.event, ModelOutput) else ""
        spans = [
            (f.start, f.end, f.label or "SENSITIVE")
            for f in redaction_findings(decision)
            if f.start is not None and f.end is not None
        ]
        return redact(text, spans).encode("utf-8") if spans else body

    async def _stream(self, chunk: bytes, more: bool) -> None:
        mw = self.mw
        if self.stream is None:
            self.stream = StreamRedactor(mw.scan_stream_text(self.subject, self.context), holdback=mw.holdback_chars)
        stream = self.stream
        alert = mw.stream_mode == "alert"
        released = stream.feed_bytes(chunk, final=not more)
        if stream.blocked and not alert:
            await self._end_blocked(b"")
            return
        if not more:  # recorded before the last bytes go out: the audit never trails what the client saw
            self.done = True
            await self._record_stream()
        if alert:
            await self._send_start()
            await self.downstream({"type": "http.response.body", "body": chunk, "more_body": more})
        else:
            await self._send_start(drop_length=True)  # redaction changes the length
            if released or not more:
                await self.downstream(
                    {"type": "http.response.body", "body": released.encode("utf-8"), "more_body": more}
                )

    async def _end_blocked(self, released: bytes) -> None:
        """A block verdict mid-response: a 403 problem if nothing was sent yet, else end the stream here."""
        self.mw.stats.responses_blocked += 1
        self.done = True
        decision = await self._record_stream()
        if not self.started:
            await self._problem(decision.id)
            return
        tail = released
        if self.sse:  # tell an SSE client why the stream ends, in-band
            tail += b"event: error\ndata: " + problem_body(RESPONSE_BLOCKED, request_id=self.request_id) + b"\n\n"
        await self.downstream({"type": "http.response.body", "body": tail, "more_body": False})

    # -- server-sent events ----------------------------------------------------------------------------------
    async def _sse(self, chunk: bytes, more: bool) -> None:
        """Scan each complete event (`_sse`); forward it as it came, or rewritten, or end the stream on a block."""
        mw = self.mw
        split = self.sse_split
        if split is None:
            split = self.sse_split = SseSplitter(max_event=mw.max_sse_event_bytes)
        alert = mw.stream_mode == "alert"
        if alert and more:  # audit only: bytes go out as they come, events are still scanned and recorded
            await self._send_start()
            await self.downstream({"type": "http.response.body", "body": chunk, "more_body": True})
        events = split.feed(chunk)
        if not more and (last := split.finish()) is not None:
            events.append(last)
        out: list[bytes] = []
        for event in events:
            piece = self._scan_event(event, alert=alert)
            if piece is None:
                await self._end_blocked(b"".join(out))
                return
            out.append(piece)
        if not more:
            rest = self._flush_deltas(alert=alert)  # text a channel still held when the stream ended
            if rest is None:
                await self._end_blocked(b"".join(out))
                return
            out.append(rest)
            # Recorded before the last bytes go out: the audit never trails what the client saw.
            self.done = True
            await self._record_stream()
            if alert:
                await self._send_start()
                await self.downstream({"type": "http.response.body", "body": chunk, "more_body": False})
        if not alert and (out or not more):
            await self._send_start(drop_length=True)  # rewriting changes the length
            await self.downstream({"type": "http.response.body", "body": b"".join(out), "more_body": more})
        if more and split.too_large:
            await self._sse_overflow(split.pending(), alert=alert)

    async def _sse_overflow(self, pending: bytes, *, alert: bool) -> None:
        """An event too large to hold: hold-back streaming redaction from here on, or end the stream."""
        mw = self.mw
        self.sse_split = None
        if mw.sse_overflow == "block" and not alert:
            await self._end_blocked(b"")
            return
        self.mode = "stream"
        if alert:  # already forwarded: only scan it
            self.stream = StreamRedactor(mw.scan_stream_text(self.subject, self.context), holdback=mw.holdback_chars)
            self.stream.feed_bytes(pending)
        else:
            await self._stream(pending, True)

    def _scan_event(self, event: SseEvent, *, alert: bool) -> bytes | None:
        """The bytes to forward for `event` (itself or rewritten), or None when the stream must be blocked.

        The data is scanned as JSON when it is JSON (redactions land inside string values and the data stays valid
        JSON), else as text; the event's other lines, if any, are scanned as text.
        """
        data = event.data
        new_data = data
        before = b""
        if data:
            extracted, doc = self._data_event(data)
            slots = delta_slots(doc)
            if slots and isinstance(doc, dict):
                # A token delta: its text joins its channel's hold-back stream; the event carries what is released.
                if not self._feed_deltas(doc, slots, event, alert=alert):
                    return None
                if not alert:  # the rest of the event is scanned as it now reads
                    data = msgspec.json.encode(doc).decode("utf-8")
                    extracted = response_event(doc, self.request, subject=self.subject, event_id=new_id())
            else:
                # Anything else ends the channels' deltas: what they still hold goes out first, in order.
                flushed = self._flush_deltas(alert=alert)
                if flushed is None:
                    return None
                before = flushed
            new_data = data
            decision = self._scan_part(extracted, alert=alert)
            if decision is None:
                return None
            if decision.verdict is Verdict.REDACT and not alert:
                if doc is _NOT_JSON:
                    new_data = self._redact_text(data.encode("utf-8"), decision, extracted).decode("utf-8")
                else:
                    encoded = msgspec.json.encode(apply_redaction(doc, decision, extracted))  # type: ignore[arg-type]
                    new_data = encoded.decode("utf-8")
        new_others = None
        if event.others:
            text = event.other_text()
            extracted = text_event(text, subject=self.subject, event_id=new_id())
            decision = self._scan_part(extracted, alert=alert)
            if decision is None:
                return None
            if decision.verdict is Verdict.REDACT and not alert:
                new_others = self._redact_text(text.encode("utf-8"), decision, extracted).decode("utf-8")
                if new_others == text:
                    new_others = None
        if new_data == event.data and new_others is None:
            return before + event.raw
        return before + event.render(new_data, new_others)

    def _feed_deltas(self, doc: dict[str, Any], slots: list[Slot], event: SseEvent, *, alert: bool) -> bool:
        """Run a delta event's texts through their channels (see `_deltas`); False when a channel blocked."""
        channels = self.deltas
        if channels is None:
            mw = self.mw
            scan = mw.scan_stream_text(self.subject, self.context)
            channels = self.deltas = DeltaChannels(lambda: StreamRedactor(scan, holdback=mw.holdback_chars))
        if alert:  # record only: the event goes out as it came
            doc = copy.deepcopy(doc)
            slots = delta_slots(doc)
        return channels.feed(doc, slots, event) or alert

    def _flush_deltas(self, *, alert: bool) -> bytes | None:
        """Delta events for the text the channels still hold (b"" if none); None when that text is blocked."""
        if self.deltas is None:
            return b""
        docs = self.deltas.flush()
        if docs is None:
            return None if not alert else b""
        if alert:
            return b""
        return b"".join(event.render(msgspec.json.encode(doc).decode("utf-8")) for doc, event in docs)

    def _scan_part(self, extracted: Extracted, *, alert: bool) -> Decision | None:
        """Evaluate one part of an event; None when the stream must be blocked (never in alert mode)."""
        mw = self.mw
        decision = mw._evaluate(extracted.event, self.context)
        if decision is None:  # evaluation failed: already logged and counted
            if mw.fail_mode is FailMode.CLOSED and not alert:
                self.verdict = Verdict.BLOCK
                return None
            return Decision(event_id="", event_type="model.output", subject=self.subject, verdict=Verdict.ALLOW)
        verdict = decision.verdict
        self.verdict = Verdict.strictest(self.verdict, verdict)
        self.findings.extend(decision.findings)
        if not alert and (verdict is Verdict.BLOCK or verdict is Verdict.REVIEW):
            return None  # a response cannot wait for a reviewer: review withholds like a block
        return decision

    def _data_event(self, data: str) -> tuple[Extracted, object]:
        event_id = new_id()
        if data.lstrip()[:1] in ("{", "[", '"'):
            try:
                doc: JSONValue = msgspec.json.decode(data)
            except msgspec.DecodeError:
                pass
            else:  # an MCP/A2A JSON-RPC response in an event is read as one (tool results, message parts)
                return response_event(doc, self.request, subject=self.subject, event_id=event_id), doc
        return text_event(data, subject=self.subject, event_id=event_id), _NOT_JSON

    async def _record_stream(self) -> Decision:
        """One audited decision for a whole stream (event and chunk scans are not audited one by one).

        Finding spans are offsets into what each scan saw: an SSE event's data, or the hold-back stream's text.
        """
        mw = self.mw
        stream = self.stream
        findings = list(self.findings)
        verdict = self.verdict
        tags: list[str] = []
        if mw.stream_mode == "alert":
            tags.append("asgi:stream-alert-only")
        else:
            if self.sse:
                tags.append("asgi:sse-events")
            if stream is not None:
                tags.append("asgi:stream-redact")
        redactors = [stream] if stream is not None else []
        if self.deltas is not None:
            redactors.extend(self.deltas.redactors.values())
            tags.append("asgi:sse-deltas")
        for redactor in redactors:
            findings.extend(redactor.findings)
            verdict = Verdict.strictest(verdict, redactor.verdict)
        if findings and verdict is Verdict.REDACT and mw.stream_mode == "redact":
            mw.stats.streams_redacted += 1
        event = ModelOutput(subject=self.subject, text="")  # the stream's text is not kept: the audit holds spans
        decision = Decision(
            event_id=event.id,
            event_type="model.output",
            subject=self.subject,
            verdict=verdict,
            findings=tuple(findings),
            policy_ids=tuple(tags),
        )
        await mw.record(decision, event)
        return decision
