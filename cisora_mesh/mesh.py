"""`Mesh`: the one entry point every path calls.

    decision = mesh.evaluate(event)          # inline stages, sub-millisecond
    decision = await mesh.aevaluate(event)   # the same, from async code; async stages follow in the background

The decision is appended to the audit sink (when one is configured) *before* it is returned, so a caller that
enforces it can never act on a decision that was not recorded.

Async stages (ML classifiers, embedding DLP) implement `AsyncStage`. With `full=True` they run before the decision
is made (scans and evaluations); otherwise the inline decision is returned at once and they run afterwards: if one
of them escalates the verdict, a follow-up decision (`stages="full"`) is audited and handed to the
`on_escalation` callback, which is how a streamed response is retroactively blocked and an incident raised.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio.to_thread

from cisora_mesh._regex import SharedSet
from cisora_mesh.config import MeshConfig, TenantPolicy
from cisora_mesh.errors import ConfigError
from cisora_mesh.events import Decision, Event, Verdict
from cisora_mesh.pipeline.base import ScanContext, Stage
from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS
from cisora_mesh.pipeline.runner import Pipeline, decide, run_stages
from cisora_mesh.pipeline.signatures import SIGNATURES
from cisora_mesh.pipeline.stages.dlp import DlpStage
from cisora_mesh.pipeline.stages.normalize import NormalizeStage
from cisora_mesh.pipeline.stages.signatures import SignatureStage

if TYPE_CHECKING:
    from cisora_mesh.policy.engine import PolicyEngine

logger = logging.getLogger("cisora_mesh")


@runtime_checkable
class AuditSink(Protocol):
    """Where decisions are recorded. `append_decision` returns only once the record is durable."""

    def append_decision(self, decision: Decision, event: Event) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncStage(Protocol):
    """A slower detector (model inference). Runs off the caller's path; must be thread-safe."""

    name: str

    def run(self, ctx: ScanContext) -> None: ...


def _configured_policy(config: MeshConfig) -> PolicyEngine | None:
    """The rule engine named by `[policy]`: a shipped pack or one policy file (copy a pack to extend it)."""
    pack, path = config.policy.pack, config.policy.file
    if pack is None and path is None:
        return None
    from cisora_mesh.policy.apply import load_pack
    from cisora_mesh.policy.engine import PolicyEngine
    from cisora_mesh.policy.errors import PolicySyntaxError

    if pack is not None:
        return load_pack(pack)
    if path is None:
        return None
    try:
        return PolicyEngine.from_text(path.read_text(encoding="utf-8"), name=str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read policy file ({exc.strerror})") from None
    except PolicySyntaxError as exc:
        raise ConfigError(str(exc)) from None


async def _wait(future: Future[Any]) -> None:
    """Await a thread-pool future: natively under asyncio, through a worker thread under other backends."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        await anyio.to_thread.run_sync(future.result)
        return
    await asyncio.wrap_future(future)


def _takes_background(sink: object) -> bool:
    submit = getattr(sink, "submit_decision", None)
    if submit is None:
        return False
    try:
        return "background" in inspect.signature(submit).parameters
    except (TypeError, ValueError):
        return False


def default_stages() -> list[Stage]:
    """The inline stages, in order: normalisation first (everything else reads its output).

    Signatures and DLP read the same texts, so their pattern tables share one RE2 set: one pass per text.
    """
    # Batchable: tests/core/test_regex.py checks that joining texts for one pass loses no match of these tables.
    shared = SharedSet([[s.pattern for s in SIGNATURES], [d.regex for d in BUILTIN_DETECTORS]], batchable=True)
    return [
        NormalizeStage(),
        SignatureStage(SIGNATURES, prefilter=shared.slice(0)),
        DlpStage(BUILTIN_DETECTORS, prefilter=shared.slice(1)),
    ]


class Mesh:
    """Evaluates events through the detection pipeline and records every decision."""

    def __init__(
        self,
        config: MeshConfig | None = None,
        *,
        audit: AuditSink | None = None,
        stages: Sequence[Stage] | None = None,
        async_stages: Sequence[AsyncStage] = (),
        on_escalation: Callable[[Decision], None] | None = None,
        policy: PolicyEngine | None = None,
    ) -> None:
        self.config = config or MeshConfig()
        # Rules (policy/) run after the detectors and before the audit, so the recorded decision is the enforced
        # one. An explicit engine wins over the config's `[policy]` pack and files.
        self.policy_engine = policy if policy is not None else _configured_policy(self.config)
        self.audit = audit
        # Sinks that take `background=True` (the audit store) may hold allows briefly to share a commit.
        self._background: dict[str, bool] = {"background": True} if _takes_background(audit) else {}
        self.pipeline = Pipeline(stages if stages is not None else default_stages())
        self.async_stages: tuple[AsyncStage, ...] = tuple(async_stages)
        self.on_escalation = on_escalation
        self._policies: dict[str, TenantPolicy] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[Any]] = set()
        self.audit_failures = 0  # background (allow) records that could not be committed

    def policy_for(self, tenant: str) -> TenantPolicy:
        policy = self._policies.get(tenant)
        if policy is None:
            with self._lock:
                policy = self._policies.get(tenant)
                if policy is None:
                    policy = self.config.tenant_policy(tenant)
                    self._policies[tenant] = policy
        return policy

    def evaluate(
        self,
        event: Event,
        *,
        full: bool = False,
        policy: PolicyEngine | None = None,
        context: Mapping[str, object] | None = None,
    ) -> Decision:
        """Evaluate `event` and return its (audited) decision.

        With `full=True` the async stages run synchronously before deciding; otherwise they are scheduled in the
        background after the inline decision has been recorded. `policy` overrides the mesh's rule engine for
        this call; `context` carries extra policy fields from the adapter (e.g. an approval id).
        """
        ctx, decision = self._decide(event, full=full, policy=policy, context=context)
        self._record(decision, event)
        self._after(ctx, decision, event, full=full)
        return decision

    async def aevaluate(
        self,
        event: Event,
        *,
        full: bool = False,
        policy: PolicyEngine | None = None,
        context: Mapping[str, object] | None = None,
    ) -> Decision:
        """`evaluate` for async callers; the event loop never blocks on model inference or on the audit commit.

        The inline stages run on the loop (they are sub-millisecond). A full evaluation's async stages run in a
        worker thread. The audit append is awaited without a thread hop when the sink offers `asubmit_decision` or
        `submit_decision` (a future resolved by its group-commit writer), so concurrent decisions share one durable
        commit. `policy` and `context` are as for `evaluate`.
        """
        if full and self.async_stages:
            return await anyio.to_thread.run_sync(
                lambda: self.evaluate(event, full=True, policy=policy, context=context)
            )
        ctx, decision = self._decide(event, full=False, policy=policy, context=context)
        if self.audit is not None:
            future = await self._submit_async(decision, event)
            if future is None:
                await anyio.to_thread.run_sync(self.audit.append_decision, decision, event)
            elif self._waits_for(decision):
                await _wait(future)
            else:
                self._track(future)
        self._after(ctx, decision, event, full=False)
        return decision

    def decide(
        self, event: Event, *, policy: PolicyEngine | None = None, context: Mapping[str, object] | None = None
    ) -> Decision:
        """The inline decision for `event` (detection, then the rules), without recording it anywhere.

        For adapters that scan parts of something and record one decision for the whole (a streamed response).
        """
        return self._decide(event, full=False, policy=policy, context=context)[1]

    def _decide(
        self,
        event: Event,
        *,
        full: bool,
        policy: PolicyEngine | None = None,
        context: Mapping[str, object] | None = None,
    ) -> tuple[ScanContext, Decision]:
        tenant_policy = self.policy_for(event.subject.tenant)
        ctx, timings = self.pipeline.run(event, tenant_policy, full=full)
        if full and self.async_stages:
            timings.extend(run_stages(self.async_stages, ctx))
        decision = decide(ctx, timings, stages="full" if full else "inline")
        return ctx, self._apply_rules(decision, event, policy or self.policy_engine, context)

    @staticmethod
    def _apply_rules(
        decision: Decision, event: Event, engine: PolicyEngine | None, context: Mapping[str, object] | None
    ) -> Decision:
        if engine is None:
            return decision
        from cisora_mesh.policy.apply import apply_policy  # policy.apply builds on Mesh: import at use

        # The event's own timestamp is the evaluation clock: the same event always gets the same answer.
        return apply_policy(decision, event, engine, now=event.at, context=context)

    def _after(self, ctx: ScanContext, decision: Decision, event: Event, *, full: bool) -> None:
        if not full and self.async_stages:
            self._schedule(ctx, decision, event)

    def close(self) -> None:
        """Wait for background work: async stages, and audit records still being committed."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.flush()  # stages passed in belong to the caller, who closes them (see cli/_common.close_stages)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every audit record submitted so far is durable (or has failed, which was logged)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.exception(timeout=timeout)

    async def _submit_async(self, decision: Decision, event: Event) -> Future[Any] | None:
        """Hand the decision to a sink that commits in the background; None if the sink cannot (append instead).

        The audit store's `asubmit_decision` waits for room without blocking the loop when its queue is full;
        a sink with only `submit_decision` is called directly.
        """
        background = {} if self._waits_for(decision) else self._background
        asubmit = getattr(self.audit, "asubmit_decision", None)
        if asubmit is not None:
            future: Future[Any] = await asubmit(decision, event, **background)
            return future
        submit = getattr(self.audit, "submit_decision", None)
        return submit(decision, event, **background) if submit is not None else None

    def _waits_for(self, decision: Decision) -> bool:
        # Preventive decisions (anything but allow) are always durable before the caller enforces them. An allow
        # changes nothing on the wire, so by default its record commits in the background (group commit) while
        # the message flows; `audit.durable_before = "all"` makes allows wait too.
        return decision.verdict is not Verdict.ALLOW or self.config.audit.durable_before == "all"

    def _record(self, decision: Decision, event: Event) -> None:
        if self.audit is None:
            return
        submit = getattr(self.audit, "submit_decision", None)
        if submit is not None and not self._waits_for(decision):
            self._track(submit(decision, event, **self._background))
        else:
            self.audit.append_decision(decision, event)

    def _track(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        error = future.exception()
        if error is not None:
            # The type only: store errors can name paths but never payloads; the count makes the loss visible.
            self.audit_failures += 1
            logger.error("background audit append failed (%s)", type(error).__name__)

    def _schedule(self, ctx: ScanContext, inline: Decision, event: Event) -> Future[None]:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cisora-async")
        return self._executor.submit(self._follow_up, ctx, inline, event)

    def _follow_up(self, ctx: ScanContext, inline: Decision, event: Event) -> None:
        timings = list(inline.timings) + run_stages(self.async_stages, ctx)
        follow_up = self._apply_rules(decide(ctx, timings, stages="full"), event, self.policy_engine, None)
        if follow_up.verdict.rank <= inline.verdict.rank:
            return
        self._record(follow_up, event)
        if self.on_escalation is not None:
            self.on_escalation(follow_up)
