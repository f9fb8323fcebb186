"""Compose the policy engine with the detection pipeline's decision.

`apply_policy(decision, event, engine)` returns a new `Decision` whose verdict is the strictest of the pipeline's
and the policy's, and whose `policy_ids` name the policy version and every rule that matched (log_only rules
included), so the audit record answers "which rules and which policy version applied".

`PolicyMesh` wraps a `Mesh` until `Mesh` grows a policy hook: it runs the inline pipeline, applies the policy and
only then appends the decision to the audit sink, so the recorded decision is the enforced one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib import resources

import msgspec

from cisora_mesh.events import Decision, Event, Rewrite, Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.pipeline.redaction import rewrites
from cisora_mesh.policy.engine import PolicyEngine, PolicyResult


def pack_text(name: str = "starter") -> str:
    """The source of a rule pack shipped in `cisora_mesh/policy/packs/<name>.policy` (to extend or print)."""
    if not name.isidentifier():  # a name, never a path: packs are not loaded from user-controlled locations
        raise ValueError(f"invalid pack name {name!r}")
    return resources.files("cisora_mesh.policy").joinpath("packs", f"{name}.policy").read_text(encoding="utf-8")


def load_pack(name: str = "starter") -> PolicyEngine:
    """Load and compile a shipped rule pack."""
    return PolicyEngine.from_text(pack_text(name), name=f"{name}.policy")


def starter_pack() -> PolicyEngine:
    return load_pack("starter")


def apply_policy(
    decision: Decision,
    event: Event,
    engine: PolicyEngine,
    *,
    now: datetime | float | None = None,
    context: Mapping[str, object] | None = None,
) -> Decision:
    """Return `decision` with the policy's verdict and rule ids folded in (the input is not modified)."""
    result = engine.evaluate(event, decision, now=now, context=context)
    return merge_result(decision, event, result)


def merge_result(decision: Decision, event: Event, result: PolicyResult) -> Decision:
    verdict = Verdict.strictest(decision.verdict, result.verdict)
    rewrites = decision.rewrites
    if verdict is Verdict.REDACT and not rewrites:
        rewrites = redaction_rewrites(decision, event)
        if not rewrites:
            # A rule asked for redaction but no finding has a span to remove: refusing is the only way to honour it.
            verdict = Verdict.BLOCK
    return msgspec.structs.replace(
        decision, verdict=verdict, rewrites=rewrites, policy_ids=(*decision.policy_ids, *result.policy_ids)
    )


def redaction_rewrites(decision: Decision, event: Event) -> tuple[Rewrite, ...]:
    """Rewrites for every finding that has a span and a redaction label (DLP-style findings)."""
    if not any(f.start is not None for f in decision.findings):
        return ()  # nothing to rewrite: skip walking the event's contents
    texts = {c.location: c.text for c in event.contents()}
    return rewrites(decision.findings, texts, lambda f: f.label is not None or f.action is Verdict.REDACT)


class PolicyMesh:
    """A `Mesh` evaluated with a given rule engine (pipeline -> policy -> audit, in that order).

    Adapters that receive a mesh and a policy separately (the ASGI middleware) use this instead of changing the
    caller's mesh; it forwards to `Mesh.evaluate(..., policy=...)`, so async stages and audit behave as usual.
    """

    def __init__(self, mesh: Mesh, engine: PolicyEngine | None = None) -> None:
        self.mesh = mesh
        self.engine = engine

    def evaluate(self, event: Event, *, context: Mapping[str, object] | None = None) -> Decision:
        return self.mesh.evaluate(event, policy=self.engine, context=context)

    async def aevaluate(self, event: Event, *, context: Mapping[str, object] | None = None) -> Decision:
        """`evaluate` without blocking the event loop on the audit commit (see `Mesh.aevaluate`)."""
        return await self.mesh.aevaluate(event, policy=self.engine, context=context)
