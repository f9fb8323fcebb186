from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cisora_mesh.audit import AuditStore, open_store
from cisora_mesh.audit.otel import AuditSpanExporter
from cisora_mesh.events import (
    ContentKind,
    ContentScan,
    Decision,
    Direction,
    Finding,
    McpMessage,
    Severity,
    Subject,
    Verdict,
)
from cisora_mesh.telemetry import semconv as sc
from cisora_mesh.telemetry._otel import decision_span, transition_span

SECRET = "sk-ant-api03-THISISNOTAREALKEY"


def _setup(store: AuditStore) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()  # injected, never the global provider
    provider.add_span_processor(SimpleSpanProcessor(AuditSpanExporter(store)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _mcp_decision() -> tuple[McpMessage, Decision]:
    event = McpMessage(
        direction=Direction.OUTBOUND,
        method="tools/call",
        tool="send_email",
        params={"arguments": {"body": f"here is the key {SECRET}"}},
        subject=Subject(tenant="acme", agent="mailer", user="u1"),
    )
    decision = Decision(
        event_id=event.id,
        event_type="mcp.message",
        subject=event.subject,
        verdict=Verdict.REDACT,
        score=0.4321,
        findings=(
            Finding(
                detector="dlp", rule_id="anthropic-key", category="secret", severity=Severity.CRITICAL, confidence=0.97
            ),
        ),
        policy_ids=("default-dlp",),
    )
    return event, decision


def test_decision_spans_feed_the_audit_store(tmp_path: Path) -> None:
    with open_store(None, data_dir=tmp_path) as store:
        provider, memory = _setup(store)
        tracer = provider.get_tracer(sc.TRACER_NAME)
        event, decision = _mcp_decision()
        with tracer.start_as_current_span("tools/call send_email") as parent:
            span = decision_span(tracer, decision, event, policy_version="v7", request_id=42)
        # Synchronous processor: the record is durable as soon as the span ended.
        assert store.size() == 1
        spans = {s.name: s for s in memory.get_finished_spans()}
        dspan = spans["cisora.decision redact"]
        attrs = dict(dspan.attributes or {})
        assert attrs[sc.MCP_METHOD_NAME] == "tools/call"
        assert attrs[sc.GEN_AI_TOOL_NAME] == "send_email"
        assert attrs[sc.GEN_AI_OPERATION_NAME] == "execute_tool"
        assert attrs[sc.JSONRPC_REQUEST_ID] == "42"
        assert attrs[sc.CISORA_DECISION_ID] == decision.id
        assert attrs[sc.CISORA_VERDICT] == "redact"
        assert attrs[sc.CISORA_SCORE_BAND] == "low"
        assert dspan.parent is not None
        assert dspan.parent.span_id == parent.get_span_context().span_id
        rendered = repr(attrs)
        assert SECRET not in rendered
        assert "0.4321" not in rendered
        assert "0.97" not in rendered

        rec = store.tail(1)[0]["record"]
        assert rec["trace_id"] == f"{span.get_span_context().trace_id:032x}"
        assert rec["span_id"] == f"{span.get_span_context().span_id:016x}"
        assert rec["decision_id"] == decision.id
        assert rec["tenant"] == "acme"
        assert rec["agent"] == "mailer"
        assert rec["policy_version"] == "v7"
        assert rec["rule_ids"] == ["anthropic-key"]
        assert rec["findings"] == [
            {
                "detector": "dlp",
                "rule_id": "anthropic-key",
                "category": "secret",
                "severity": "critical",
                "confidence_band": "high",
            }
        ]
        assert len(rec["content_digests"]) == 1
        assert SECRET not in repr(store.tail(1))
        provider.shutdown()


def test_transitions_and_trace_id_join_without_a_current_span(tmp_path: Path) -> None:
    with open_store(None, data_dir=tmp_path) as store:
        provider, memory = _setup(store)
        tracer = provider.get_tracer(sc.TRACER_NAME)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        event = ContentScan(kind=ContentKind.PROMPT, text="hello", trace_id=trace_id)
        decision = Decision(event_id=event.id, event_type="content.scan", subject=event.subject, verdict=Verdict.REVIEW)
        decision_span(tracer, decision, event)
        transition_span(
            tracer,
            decision_id=decision.id,
            from_state="awaiting_approval",
            to_state="approved",
            actor="reviewer@acme",
            trace_id=trace_id,
        )
        with tracer.start_as_current_span("unrelated"):
            pass  # not a Cisora span: not audited
        records = [t["record"] for t in store.tail(5)]
        assert [r["kind"] for r in records] == ["decision", "transition"]
        assert {r["trace_id"] for r in records} == {trace_id}
        assert records[1]["from_state"] == "awaiting_approval"
        assert records[1]["to_state"] == "approved"
        assert records[1]["actor"] == "reviewer@acme"
        assert len(memory.get_finished_spans()) == 3
        assert store.verify().ok
        provider.shutdown()


def test_exporter_reports_failure_when_the_store_is_closed(tmp_path: Path) -> None:
    store = open_store(None, data_dir=tmp_path)
    exporter = AuditSpanExporter(store)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    event, decision = _mcp_decision()
    decision_span(provider.get_tracer("t"), decision, event)
    store.close()
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.FAILURE
    provider.shutdown()


def test_audit_tracer_provider_feeds_store_and_other_exporters(tmp_path: Path) -> None:
    from cisora_mesh.audit.otel import audit_tracer_provider

    other = InMemorySpanExporter()  # stands in for OTLPSpanExporter
    with open_store(None, data_dir=tmp_path) as store:
        provider = audit_tracer_provider(store, exporters=[other])
        event, decision = _mcp_decision()
        span = decision_span(provider.get_tracer(sc.TRACER_NAME), decision, event)
        assert store.size() == 1  # durable before decision_span returned, whatever the batch exporter does
        provider.shutdown()  # flushes the batch processor
        assert [s.context.span_id for s in other.get_finished_spans()] == [span.get_span_context().span_id]
