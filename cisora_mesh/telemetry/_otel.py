"""Spans for decisions and lifecycle transitions (API only: whoever configures the SDK decides where they go).

A decision span carries ids, the verdict, rule/policy ids, finding categories and severities, a score band and
SHA-256 digests of the inspected texts. It never carries the texts, secret values or the raw score, because
spans leave the process (OTLP, vendors) and must be as safe as the audit record built from them.

Trace ids join everything: the span is parented on the current span if there is one, otherwise on the event's
or decision's W3C trace id when it has one, so the audit record (whose ``trace_id`` comes from the span) and
the rest of the request's trace line up.
"""

from __future__ import annotations

import os
import re
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.util.types import AttributeValue

from cisora_mesh.audit.record import content_digest, score_band
from cisora_mesh.events import Decision, Event, McpMessage
from cisora_mesh.telemetry import semconv as sc

_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")


def decision_attributes(
    decision: Decision, event: Event, *, policy_version: str | None = None, request_id: str | int | None = None
) -> dict[str, AttributeValue]:
    subject = decision.subject
    findings = decision.findings
    attrs: dict[str, AttributeValue] = {
        sc.CISORA_RECORD_KIND: "decision",
        sc.CISORA_DECISION_ID: decision.id,
        sc.CISORA_EVENT_ID: decision.event_id,
        sc.CISORA_EVENT_TYPE: decision.event_type,
        sc.CISORA_VERDICT: str(decision.verdict),
        sc.CISORA_RULE_IDS: list(dict.fromkeys(f.rule_id for f in findings)),
        sc.CISORA_POLICY_IDS: list(decision.policy_ids),
        sc.CISORA_TENANT: subject.tenant,
        sc.CISORA_SCORE_BAND: score_band(decision.score),
        sc.CISORA_STAGES: decision.stages,
        sc.CISORA_CONTENT_DIGESTS: [content_digest(c.text) for c in event.contents()],
        sc.CISORA_FINDING_DETECTORS: [f.detector for f in findings],
        sc.CISORA_FINDING_RULE_IDS: [f.rule_id for f in findings],
        sc.CISORA_FINDING_CATEGORIES: [f.category for f in findings],
        sc.CISORA_FINDING_SEVERITIES: [str(f.severity) for f in findings],
        sc.CISORA_FINDING_CONFIDENCE_BANDS: [score_band(f.confidence) for f in findings],
    }
    optional = {
        sc.CISORA_AGENT: subject.agent,
        sc.CISORA_USER: subject.user,
        sc.CISORA_SESSION: subject.session,
        sc.CISORA_POLICY_VERSION: policy_version,
    }
    attrs.update({key: value for key, value in optional.items() if value is not None})
    if isinstance(event, McpMessage):
        attrs[sc.MCP_METHOD_NAME] = event.method
        if event.tool is not None:
            attrs[sc.GEN_AI_TOOL_NAME] = event.tool
        if event.method == "tools/call":
            attrs[sc.GEN_AI_OPERATION_NAME] = sc.GEN_AI_OPERATION_EXECUTE_TOOL
    if request_id is not None:
        attrs[sc.JSONRPC_REQUEST_ID] = str(request_id)  # semconv: the id as a string, whatever its JSON type
    return attrs


def _parent(trace_id: str | None) -> otel_context.Context | None:
    """Parent on the current span, else on a known W3C trace id (as a remote parent), else a new trace."""
    if trace.get_current_span().get_span_context().is_valid or trace_id is None:
        return None
    if not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
        return None
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int.from_bytes(os.urandom(8), "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def decision_span(
    tracer: Tracer,
    decision: Decision,
    event: Event,
    *,
    policy_version: str | None = None,
    request_id: str | int | None = None,
) -> Span:
    """Record ``decision`` as one finished span and return it.

    With the audit exporter behind a synchronous span processor, the record is durable when this returns.
    """
    span = tracer.start_span(
        f"{sc.SPAN_DECISION} {decision.verdict}",
        context=_parent(decision.trace_id or event.trace_id),
        kind=SpanKind.INTERNAL,
        attributes=decision_attributes(decision, event, policy_version=policy_version, request_id=request_id),
        start_time=int(event.at * 1e9) if event.at else None,
    )
    span.end()
    return span


def transition_span(
    tracer: Tracer,
    *,
    decision_id: str,
    from_state: str,
    to_state: str,
    actor: str,
    tenant: str = "default",
    trace_id: str | None = None,
) -> Span:
    """Record a lifecycle transition of a decision (e.g. awaiting_approval -> approved) as a finished span."""
    span = tracer.start_span(
        f"{sc.SPAN_TRANSITION} {to_state}",
        context=_parent(trace_id),
        kind=SpanKind.INTERNAL,
        attributes={
            sc.CISORA_RECORD_KIND: "transition",
            sc.CISORA_DECISION_ID: decision_id,
            sc.CISORA_TRANSITION_FROM: from_state,
            sc.CISORA_TRANSITION_TO: to_state,
            sc.CISORA_ACTOR: actor,
            sc.CISORA_TENANT: tenant,
        },
    )
    span.end()
    return span
