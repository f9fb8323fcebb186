"""Runs the stages in order, times each one, and turns what they found into one `Decision`.

Failure handling follows the product's default for detection: a stage that raises is *fail-open* (traffic goes
through) but never silently: the failure becomes a `pipeline.stage_error` finding, which the audit record and the
metrics see. A tenant configured `fail_mode = "closed"` gets a block instead.

Verdict rules (until the policy engine composes its own on top):
- each finding may carry the action its detector's configuration asks for (DLP: alert/redact/block, hidden content);
- the injection score (the highest probability any stage raised) maps to `block` at or above
  `injection.block_threshold` and to `review` at or above `injection.review_threshold`;
- the decision is the strictest of these. Redactions are computed only when the decision is `redact`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final

from cisora_mesh.config import FailMode, TenantPolicy
from cisora_mesh.events import Decision, Event, Finding, Rewrite, Severity, StageTiming, Verdict
from cisora_mesh.pipeline.base import ScanContext, Stage
from cisora_mesh.pipeline.redaction import rewrites

logger = logging.getLogger("cisora_mesh.pipeline")

STAGE_ERROR_RULE: Final = "PIPE-STAGE-ERROR"


class Pipeline:
    """An ordered, immutable sequence of inline stages."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages: tuple[Stage, ...] = tuple(stages)

    def run(self, event: Event, policy: TenantPolicy, *, full: bool = False) -> tuple[ScanContext, list[StageTiming]]:
        ctx = ScanContext(event=event, policy=policy, full=full)
        return ctx, run_stages(self.stages, ctx)


def run_stages(stages: Sequence[Stage], ctx: ScanContext) -> list[StageTiming]:
    """Run `stages` over `ctx` in order; a stage that raises is recorded, never propagated."""
    timings: list[StageTiming] = []
    for stage in stages:
        started = time.perf_counter_ns()
        try:
            stage.run(ctx)
        except Exception as exc:  # noqa: BLE001 - any detector bug must become an audited fail-open/closed
            _record_stage_failure(ctx, stage.name, exc)
        timings.append(StageTiming(stage.name, (time.perf_counter_ns() - started) / 1000))
    return timings


def _record_stage_failure(ctx: ScanContext, stage: str, exc: BaseException) -> None:
    # Log the exception type only: messages of detector errors can contain the text being scanned.
    logger.warning("detection stage %s failed (%s); fail mode %s", stage, type(exc).__name__, ctx.policy.fail_mode)
    action = Verdict.BLOCK if ctx.policy.fail_mode is FailMode.CLOSED else Verdict.ALLOW
    ctx.add(
        Finding(
            detector=stage,
            rule_id=STAGE_ERROR_RULE,
            category="pipeline.stage_error",
            severity=Severity.HIGH,
            confidence=1.0,
            action=action,
            label=type(exc).__name__,
        )
    )


def decide(ctx: ScanContext, timings: Sequence[StageTiming], *, stages: str = "inline") -> Decision:
    """The one decision for an evaluated event."""
    policy = ctx.policy
    verdict = (
        Verdict.strictest(*[f.action for f in ctx.findings if f.action is not None]) if ctx.findings else Verdict.ALLOW
    )
    if policy.injection.enabled:
        if ctx.score >= policy.injection.block_threshold:
            verdict = Verdict.strictest(verdict, Verdict.BLOCK)
        elif ctx.score >= policy.injection.review_threshold:
            verdict = Verdict.strictest(verdict, Verdict.REVIEW)
    rewrites = _rewrites(ctx) if verdict is Verdict.REDACT else ()
    event = ctx.event
    return Decision(
        event_id=event.id,
        event_type=event_type(event),
        subject=event.subject,
        verdict=verdict,
        score=round(ctx.score, 6),
        findings=tuple(ctx.findings),
        rewrites=rewrites,
        policy_ids=(policy.version,),
        timings=tuple(timings),
        stages=stages,
        trace_id=event.trace_id,
    )


def event_type(event: Event) -> str:
    """The event's wire tag (e.g. `mcp.message`)."""
    tag = type(event).__struct_config__.tag
    return tag if isinstance(tag, str) else type(event).__name__


def _rewrites(ctx: ScanContext) -> tuple[Rewrite, ...]:
    texts = {t.location: t.content.text for t in ctx.texts if t.derived is None}
    return rewrites(ctx.findings, texts, lambda f: f.action is Verdict.REDACT)
