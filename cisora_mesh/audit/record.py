"""The durable audit record and the log entry that wraps it.

What goes in (and what never does): ids, tenant, actor, verdict, rule and policy ids, finding categories and
severities, SHA-256 digests of the inspected texts, the trace id and a timestamp. Never the texts themselves,
never secret values, never raw detector scores: a score is reduced to a coarse band, because a precise score
is an oracle an attacker can probe a detector with (and it is not what an auditor needs).

Canonical encoding: msgspec JSON with sorted keys (``order="sorted"``), no whitespace, integers only (no floats,
so there is no float formatting to disagree about). The log hashes the *stored* bytes and never re-encodes
them, so adding a field later (with a default, per msgspec's schema-evolution rules, and a new
``schema_version``) does not change how old entries verify.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

import msgspec

from cisora_mesh.events import Decision, Event, new_id

RECORD_SCHEMA_VERSION: Final = 1

_encoder: Final = msgspec.json.Encoder(order="sorted")


def score_band(score: float) -> str:
    """A coarse band for a detector probability (the raw value is never stored)."""
    if score <= 0.0:
        return "none"
    if score < 0.5:
        return "low"
    if score < 0.8:
        return "medium"
    return "high"


def content_digest(text: str, key: bytes | None = None) -> str:
    """A digest that identifies `text` without revealing it: HMAC-SHA256 (RFC 2104) under the store's key.

    Without a key (library callers that build records by hand) it falls back to plain SHA-256, which is only safe
    for high-entropy texts: a short secret's plain hash can be found by guessing.
    """
    data = text.encode("utf-8", "surrogatepass")
    if key is None:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return "hmac-sha256:" + hmac.digest(key, data, "sha256").hex()  # the one-shot C path of hmac


class FindingSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A finding without its offsets' text: which rule, what category, how bad, roughly how sure."""

    detector: str
    rule_id: str
    category: str
    severity: str
    confidence_band: str


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One audited fact: a decision, or a lifecycle transition of one (``kind`` tells which)."""

    schema_version: int = RECORD_SCHEMA_VERSION
    record_id: str = msgspec.field(default_factory=new_id)
    kind: str = "decision"  # "decision" | "transition" | other producers' kinds
    tenant: str = "default"
    agent: str | None = None
    user: str | None = None
    session: str | None = None
    decision_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    verdict: str | None = None
    rule_ids: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()
    policy_version: str | None = None
    findings: tuple[FindingSummary, ...] = ()
    score_band: str | None = None
    content_digests: tuple[str, ...] = ()
    trace_id: str | None = None
    span_id: str | None = None  # set when the record came from a span (see cisora_mesh.audit.otel)
    from_state: str | None = None
    to_state: str | None = None
    actor: str | None = None  # who caused a transition (reviewer, system); for decisions, agent/user above
    at_ms: int = msgspec.field(default_factory=lambda: time.time_ns() // 1_000_000)

    def canonical(self) -> bytes:
        return _encoder.encode(self)

    @classmethod
    def from_decision(
        cls, decision: Decision, event: Event, *, policy_version: str | None = None, digest_key: bytes | None = None
    ) -> AuditRecord:
        subject = decision.subject
        # Built on the caller's thread for every audited message (the proxy's hot path): most decisions are
        # allows without findings, so that case skips the generator machinery entirely.
        found = decision.findings
        rule_ids: tuple[str, ...] = ()
        summaries: tuple[FindingSummary, ...] = ()
        if found:
            rule_ids = tuple(dict.fromkeys([f.rule_id for f in found]))
            summaries = tuple(
                [
                    FindingSummary(
                        detector=f.detector,
                        rule_id=f.rule_id,
                        category=f.category,
                        severity=str(f.severity),
                        confidence_band=score_band(f.confidence),
                    )
                    for f in found
                ]
            )
        return cls(
            kind="decision",
            tenant=subject.tenant,
            agent=subject.agent,
            user=subject.user,
            session=subject.session,
            decision_id=decision.id,
            event_id=decision.event_id,
            event_type=decision.event_type,
            verdict=str(decision.verdict),
            rule_ids=rule_ids,
            policy_ids=decision.policy_ids,
            policy_version=policy_version,
            findings=summaries,
            score_band=score_band(decision.score),
            content_digests=tuple([content_digest(c.text, digest_key) for c in event.contents()]),
            trace_id=decision.trace_id or event.trace_id,
            at_ms=int(event.at * 1000) if event.at else time.time_ns() // 1_000_000,
        )

    @classmethod
    def transition(
        cls,
        *,
        decision_id: str,
        from_state: str,
        to_state: str,
        actor: str,
        tenant: str = "default",
        trace_id: str | None = None,
    ) -> AuditRecord:
        return cls(
            kind="transition",
            tenant=tenant,
            decision_id=decision_id,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            trace_id=trace_id,
        )


record_decoder: Final = msgspec.json.Decoder(AuditRecord)


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The leaf data of the Merkle log: the record plus its position and its predecessor's leaf hash.

    ``idx`` makes a moved, inserted or deleted row name itself; ``prev`` (the leaf hash of entry ``idx - 1``)
    chains the rows, so an entry rewritten together with its stored leaf hash is still caught by its successor
    without waiting for the next signed checkpoint. ``tenant`` is repeated outside the record so the database's
    tenant column (which row-level security trusts) is covered by the hash.
    """

    idx: int
    prev: str
    record: msgspec.Raw
    tenant: str


entry_decoder: Final = msgspec.json.Decoder(LogEntry)


def encode_entry(idx: int, prev: bytes, record: bytes, tenant: str) -> bytes:
    return _encoder.encode(LogEntry(idx=idx, prev=prev.hex(), record=msgspec.Raw(record), tenant=tenant))
