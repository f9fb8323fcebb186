"""An OpenTelemetry `SpanExporter` that turns decision and transition spans into audit records.

Wire it behind a *synchronous* processor so the record is durable before the code that ended the span goes on
to enforce the decision; other exporters (OTLP, console) can sit behind batch processors on the same provider::

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AuditSpanExporter(store)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))   # optional

Only spans carrying ``cisora.record.kind`` are audited; every other span is ignored. The record is built
from a fixed list of attributes, so anything else someone put on the span (payloads included) never reaches
the log. The record's ``trace_id``/``span_id`` are the span's, which is what joins audit entries to traces.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

from cisora_mesh.audit.errors import AuditError
from cisora_mesh.audit.record import AuditRecord, FindingSummary
from cisora_mesh.audit.store import AuditSink, AuditStore
from cisora_mesh.telemetry import semconv as sc

logger = logging.getLogger(__name__)


def _str(attrs: Mapping[str, Any], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) else None


def _strs(attrs: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = attrs.get(key)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def record_from_span(span: ReadableSpan) -> AuditRecord | None:
    """The audit record for a Cisora decision/transition span, or None for any other span."""
    attrs: Mapping[str, Any] = span.attributes or {}
    kind = _str(attrs, sc.CISORA_RECORD_KIND)
    if kind is None:
        return None
    ctx = span.get_span_context()
    trace_id = f"{ctx.trace_id:032x}" if ctx is not None and ctx.is_valid else None
    span_id = f"{ctx.span_id:016x}" if ctx is not None and ctx.is_valid else None
    columns = [
        _strs(attrs, key)
        for key in (
            sc.CISORA_FINDING_DETECTORS,
            sc.CISORA_FINDING_RULE_IDS,
            sc.CISORA_FINDING_CATEGORIES,
            sc.CISORA_FINDING_SEVERITIES,
            sc.CISORA_FINDING_CONFIDENCE_BANDS,
        )
    ]
    findings = tuple(
        FindingSummary(detector=d, rule_id=r, category=c, severity=s, confidence_band=b)
        for d, r, c, s, b in zip(*columns, strict=False)
    )
    start = span.start_time
    record = AuditRecord(
        kind=kind,
        tenant=_str(attrs, sc.CISORA_TENANT) or "default",
        agent=_str(attrs, sc.CISORA_AGENT),
        user=_str(attrs, sc.CISORA_USER),
        session=_str(attrs, sc.CISORA_SESSION),
        decision_id=_str(attrs, sc.CISORA_DECISION_ID),
        event_id=_str(attrs, sc.CISORA_EVENT_ID),
        event_type=_str(attrs, sc.CISORA_EVENT_TYPE),
        verdict=_str(attrs, sc.CISORA_VERDICT),
        rule_ids=_strs(attrs, sc.CISORA_RULE_IDS),
        policy_ids=_strs(attrs, sc.CISORA_POLICY_IDS),
        policy_version=_str(attrs, sc.CISORA_POLICY_VERSION),
        findings=findings,
        score_band=_str(attrs, sc.CISORA_SCORE_BAND),
        content_digests=_strs(attrs, sc.CISORA_CONTENT_DIGESTS),
        trace_id=trace_id,
        span_id=span_id,
        from_state=_str(attrs, sc.CISORA_TRANSITION_FROM),
        to_state=_str(attrs, sc.CISORA_TRANSITION_TO),
        actor=_str(attrs, sc.CISORA_ACTOR),
    )
    # The span's start is the decision's time; without one, keep the record's own timestamp.
    return msgspec.structs.replace(record, at_ms=start // 1_000_000) if start else record


class AuditSpanExporter(SpanExporter):
    """Feeds Cisora decision/transition spans into an audit store (one durable batch per export call)."""

    def __init__(self, store: AuditSink) -> None:
        self._store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        records = [r for r in (record_from_span(s) for s in spans) if r is not None]
        if not records:
            return SpanExportResult.SUCCESS
        try:
            if isinstance(self._store, AuditStore):
                self._store.append_many(records)  # one transaction for the whole batch
            else:
                for record in records:
                    self._store.append_record(record)
        except AuditError as exc:
            # Never raise into the SDK (it would be swallowed); report failure so processors and callers see it.
            logger.error("audit export of %d records failed: %s", len(records), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """The store is owned (and closed) by whoever created it, not by the tracer provider."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is already durable when it returns


def audit_tracer_provider(
    store: AuditSink, *, exporters: Sequence[SpanExporter] = (), resource: Resource | None = None
) -> TracerProvider:
    """A tracer provider whose decision spans are durable in ``store`` before the span's ``end()`` returns.

    The audit exporter sits behind a synchronous processor (the decision must be recorded before it is
    enforced); every exporter in ``exporters`` (e.g. ``OTLPSpanExporter()`` from the optional
    ``opentelemetry-exporter-otlp`` package) gets a batch processor, so a slow collector never delays a decision.
    The caller owns the provider: it is not installed globally.
    """
    provider = TracerProvider(resource=resource) if resource is not None else TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AuditSpanExporter(store)))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
