"""Incremental redaction of streamed text with a hold-back window.

The last `holdback` characters of what has arrived are never released until more text arrives or the stream
ends. Each time text arrives, the unreleased text is scanned as a whole, so a secret split across chunks is seen
complete; a match that straddles the release point holds the cut back to where it starts. Any secret of at most
`holdback` characters is therefore redacted however the stream is chunked (the Output DLP seed can only alert on
streams). Memory and scanning cost per chunk are bounded by `holdback` plus the chunk size.

Bytes are decoded incrementally, so a multi-byte UTF-8 character split across chunks is not mangled.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Final

import msgspec

from cisora_mesh.events import Decision, Finding, Verdict
from cisora_mesh.pipeline.redaction import redact

from ._extract import redaction_findings

DEFAULT_HOLDBACK: Final = 256


class StreamRedactor:
    """Feed text chunks, get back what may be released (redacted). `blocked` turns true on a block verdict.

    `scan(text)` evaluates a text and returns its decision (without auditing it: the middleware records one summary
    decision for the whole stream). `findings` accumulates what was found, with offsets into the whole stream.
    """

    def __init__(self, scan: Callable[[str], Decision], *, holdback: int = DEFAULT_HOLDBACK) -> None:
        if holdback < 1:
            raise ValueError("holdback must be at least one character")
        self.scan = scan
        self.holdback = holdback
        self.pending = ""
        self.released = 0  # characters of the original stream already released
        self.findings: list[Finding] = []
        self.verdict = Verdict.ALLOW
        self.blocked = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed_bytes(self, data: bytes, *, final: bool = False) -> str:
        return self.feed(self._decoder.decode(data, final), final=final)

    def feed(self, text: str, *, final: bool = False) -> str:
        if self.blocked:
            return ""
        self.pending += text
        if not self.pending:
            return ""
        decision = self.scan(self.pending)
        self.verdict = Verdict.strictest(self.verdict, decision.verdict)
        if decision.verdict is Verdict.BLOCK:
            self.blocked = True
            self._record(decision.findings, len(self.pending))
            return ""
        spans = redaction_findings(decision) if decision.verdict is Verdict.REDACT else []
        cut = len(self.pending) if final else len(self.pending) - self.holdback
        moved = True
        while moved:  # a match straddling the cut may still be growing: hold it back entirely
            moved = False
            for f in spans:
                if f.start is not None and f.end is not None and f.start < cut < f.end:
                    cut, moved = f.start, True
        if cut <= 0:
            return ""
        self._record(decision.findings, cut)
        head = self.pending[:cut]
        located = [
            (f.start, min(f.end, cut), f.label or "SENSITIVE")
            for f in spans
            if f.start is not None and f.end is not None and f.start < cut
        ]
        self.pending = self.pending[cut:]
        self.released += cut
        return redact(head, located)

    def finish(self) -> str:
        return self.feed_bytes(b"", final=True)

    def _record(self, findings: tuple[Finding, ...], cut: int) -> None:
        # Keep findings that lie in the part being released (later scans see the rest again), in stream offsets.
        for f in findings:
            if f.start is None or f.end is None:
                continue
            if f.start < cut:
                self.findings.append(
                    msgspec.structs.replace(f, start=f.start + self.released, end=f.end + self.released)
                )
