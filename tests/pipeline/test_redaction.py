"""`redact`: `[REDACTED:TYPE]` markers, span merging, idempotence."""

from __future__ import annotations

import pytest

from cisora_mesh.events import Finding, Severity
from cisora_mesh.pipeline.redaction import finding_spans, marker, merge_spans, redact


def test_format() -> None:
    assert marker("AWS_ACCESS_KEY") == "[REDACTED:AWS_ACCESS_KEY]"
    assert redact("key AKIA123 end", [(4, 11, "AWS_ACCESS_KEY")]) == "key [REDACTED:AWS_ACCESS_KEY] end"


def test_no_spans_returns_text() -> None:
    assert redact("hello", []) == "hello"


def test_multiple_spans_any_order() -> None:
    text = "a@b.io and c@d.io"
    assert redact(text, [(11, 17, "EMAIL"), (0, 6, "EMAIL")]) == "[REDACTED:EMAIL] and [REDACTED:EMAIL]"


@pytest.mark.parametrize(
    ("spans", "merged"),
    [
        ([(0, 5, "A"), (3, 8, "B")], [(0, 8, "A")]),  # partial overlap: first label wins
        ([(2, 4, "B"), (0, 10, "A")], [(0, 10, "A")]),  # containment
        ([(0, 4, "A"), (0, 10, "B")], [(0, 10, "B")]),  # same start: longer span first
        ([(0, 4, "A"), (4, 8, "B")], [(0, 4, "A"), (4, 8, "B")]),  # adjacent spans stay separate
        ([(5, 5, "A"), (7, 6, "B")], []),  # empty / inverted spans ignored
    ],
)
def test_merge(spans: list[tuple[int, int, str]], merged: list[tuple[int, int, str]]) -> None:
    assert merge_spans(spans) == merged


def test_overlapping_spans_become_one_marker() -> None:
    text = "token=eyJabc.eyJdef.sig!"
    assert redact(text, [(0, 23, "SECRET"), (6, 23, "JWT")]) == "[REDACTED:SECRET]!"


def test_idempotent() -> None:
    text = "mail jane@acme.io now"
    spans = [(5, 17, "EMAIL_ADDRESS")]
    once = redact(text, spans)
    assert once == "mail [REDACTED:EMAIL_ADDRESS] now"
    # Spans that fall inside an existing marker (e.g. re-detected, or replayed offsets) change nothing.
    assert redact(once, [(5, 29, "EMAIL_ADDRESS")]) == once
    assert redact(once, [(16, 20, "X")]) == once
    assert redact(once, []) == once


def test_span_past_end_is_clamped() -> None:
    assert redact("abc", [(1, 99, "X")]) == "a[REDACTED:X]"


def test_non_ascii() -> None:
    text = "für jürgen@beispiel.de 🎉"
    start = text.index("jürgen")
    end = start + len("jürgen@beispiel.de")
    assert redact(text, [(start, end, "EMAIL_ADDRESS")]) == "für [REDACTED:EMAIL_ADDRESS] 🎉"


def test_finding_spans_filters_location_and_unlabelled() -> None:
    def f(start: int | None, end: int | None, location: str = "", label: str | None = "X") -> Finding:
        return Finding(
            detector="dlp",
            rule_id="R",
            category="pii",
            severity=Severity.LOW,
            confidence=0.5,
            start=start,
            end=end,
            location=location,
            label=label,
        )

    findings = [f(0, 1), f(2, 3, "/other"), f(None, None), f(4, 5, label=None)]
    assert finding_spans(findings) == [(0, 1, "X")]
    assert finding_spans(findings, "/other") == [(2, 3, "X")]
