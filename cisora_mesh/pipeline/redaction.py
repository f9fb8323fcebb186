"""Redaction: replace detected spans with `[REDACTED:TYPE]` markers (the seed's Output DLP format).

Overlapping spans are merged first (a JWT inside a `token=` assignment becomes one marker, labelled by the span that
starts first, the longer one on a tie). Redaction is idempotent: a span that lies inside an existing marker is
dropped, so redacting already redacted text with the same (or re-detected) spans returns it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from cisora_mesh.events import Finding, Rewrite

MARKER_PREFIX: Final = "[REDACTED:"
_MARKER: Final = re.compile(r"\[REDACTED:[A-Za-z0-9_\-]+\]")

Span = tuple[int, int, str]


def marker(label: str) -> str:
    return f"{MARKER_PREFIX}{label}]"


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sort and merge overlapping `(start, end, label)` spans; empty and negative spans are ignored."""
    ordered = sorted((s for s in spans if s[1] > s[0] >= 0), key=lambda s: (s[0], -s[1]))
    merged: list[Span] = []
    for start, end, label in ordered:
        if merged and start < merged[-1][1]:
            prev_start, prev_end, prev_label = merged[-1]
            merged[-1] = (prev_start, max(prev_end, end), prev_label)
        else:
            merged.append((start, end, label))
    return merged


def redact(text: str, spans: Iterable[Span]) -> str:
    """Return `text` with each merged span replaced by `[REDACTED:<label>]`."""
    merged = merge_spans(spans)
    if not merged:
        return text
    if MARKER_PREFIX in text:
        existing = [m.span() for m in _MARKER.finditer(text)]
        merged = [s for s in merged if not any(a <= s[0] and s[1] <= b for a, b in existing)]
    parts: list[str] = []
    pos = 0
    for start, end, label in merged:
        end = min(end, len(text))
        if start >= end:
            continue
        parts.append(text[pos:start])
        parts.append(marker(label))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def finding_spans(findings: Iterable[Finding], location: str = "") -> list[Span]:
    """The redaction spans of the findings at `location` that carry a span and a label."""
    return [
        (f.start, f.end, f.label)
        for f in findings
        if f.location == location and f.start is not None and f.end is not None and f.label
    ]


def rewrites(
    findings: Iterable[Finding], texts: Mapping[str, str], wanted: Callable[[Finding], bool]
) -> tuple[Rewrite, ...]:
    """One `Rewrite` per location: its text (from `texts`) with the spans of the `wanted` findings redacted."""
    spans: dict[str, list[Span]] = {}
    for f in findings:
        if f.start is not None and f.end is not None and wanted(f):
            spans.setdefault(f.location, []).append((f.start, f.end, f.label or "SENSITIVE"))
    return tuple(
        Rewrite(location=location, text=redact(texts[location], located))
        for location, located in spans.items()
        if location in texts
    )
