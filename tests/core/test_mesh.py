from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from cisora_mesh.config import FailMode, MeshConfig
from cisora_mesh.events import (
    ContentKind,
    ContentScan,
    Decision,
    Event,
    Finding,
    ModelInput,
    Severity,
    Subject,
    Verdict,
)
from cisora_mesh.mesh import Mesh
from cisora_mesh.pipeline.base import ScanContext, raise_score
from cisora_mesh.pipeline.runner import STAGE_ERROR_RULE
from cisora_mesh.pipeline.stages.normalize import NormalizeStage


@dataclass
class ScoreStage:
    """Raises the score it finds as a number in the text, e.g. 'p=0.9'."""

    name: str = "score"

    def run(self, ctx: ScanContext) -> None:
        for text in ctx.texts:
            if text.match_text.startswith("p="):
                raise_score(ctx, float(text.match_text[2:]))


@dataclass
class Crashing:
    name: str = "crashing"

    def run(self, ctx: ScanContext) -> None:
        raise RuntimeError("detector bug with payload text in the message")


@dataclass
class RecordingSink:
    records: list[tuple[Decision, Event]] = field(default_factory=list)

    def append_decision(self, decision: Decision, event: Event) -> int:
        self.records.append((decision, event))
        return len(self.records) - 1


def mesh(*stages: object, config: MeshConfig | None = None, **kwargs: object) -> Mesh:
    return Mesh(config, stages=[NormalizeStage(), *stages], **kwargs)  # type: ignore[list-item, arg-type]


@pytest.mark.parametrize(
    ("score", "verdict"),
    [(0.0, Verdict.ALLOW), (0.49, Verdict.ALLOW), (0.5, Verdict.REVIEW), (0.79, Verdict.REVIEW), (0.8, Verdict.BLOCK)],
)
def test_score_thresholds_map_to_verdicts(score: float, verdict: Verdict) -> None:
    decision = mesh(ScoreStage()).evaluate(ModelInput(text=f"p={score}"))
    assert decision.verdict is verdict
    assert decision.score == score


def test_decision_carries_event_identity_and_timings() -> None:
    event = ModelInput(text="hello", subject=Subject(tenant="acme", agent="a1"), trace_id="t" * 32)
    decision = mesh(ScoreStage()).evaluate(event)
    assert decision.event_id == event.id
    assert decision.event_type == "model.input"
    assert decision.subject.tenant == "acme"
    assert decision.trace_id == event.trace_id
    assert [t.stage for t in decision.timings] == ["normalize", "score"]
    assert all(t.micros >= 0 for t in decision.timings)
    assert decision.policy_ids == ("builtin-1",)


def test_crashing_stage_fails_open_but_is_recorded(caplog: pytest.LogCaptureFixture) -> None:
    decision = mesh(Crashing()).evaluate(ModelInput(text="secret payload"))
    assert decision.verdict is Verdict.ALLOW
    (finding,) = decision.findings
    assert finding.rule_id == STAGE_ERROR_RULE and finding.detector == "crashing"
    assert "secret payload" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_crashing_stage_fails_closed_when_configured() -> None:
    config = MeshConfig(detection={"fail_mode": FailMode.CLOSED})  # type: ignore[arg-type]
    decision = mesh(Crashing(), config=config).evaluate(ModelInput(text="x"))
    assert decision.verdict is Verdict.BLOCK


def test_fail_mode_is_per_tenant() -> None:
    config = MeshConfig(tenants=[{"name": "strict", "fail_mode": "closed"}])  # type: ignore[list-item]
    m = mesh(Crashing(), config=config)
    assert m.evaluate(ModelInput(text="x", subject=Subject(tenant="strict"))).verdict is Verdict.BLOCK
    assert m.evaluate(ModelInput(text="x", subject=Subject(tenant="other"))).verdict is Verdict.ALLOW


def test_decision_is_audited_before_it_is_returned() -> None:
    sink = RecordingSink()
    event = ModelInput(text="p=0.9")
    decision = mesh(ScoreStage(), audit=sink).evaluate(event)
    assert sink.records == [(decision, event)]


def test_audit_failure_propagates_so_nothing_is_enforced_unrecorded() -> None:
    class Broken:
        def append_decision(self, decision: Decision, event: Event) -> int:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        mesh(ScoreStage(), audit=Broken()).evaluate(ModelInput(text="p=0.1"))


def test_strictest_finding_action_wins() -> None:
    @dataclass
    class Flagger:
        name: str = "flagger"

        def run(self, ctx: ScanContext) -> None:
            for action in (Verdict.ALLOW, Verdict.REVIEW, Verdict.REDACT):
                ctx.add(
                    Finding(
                        detector="f",
                        rule_id=action.value,
                        category="c",
                        severity=Severity.LOW,
                        confidence=1.0,
                        action=action,
                    )
                )

    assert mesh(Flagger()).evaluate(ModelInput(text="x")).verdict is Verdict.REVIEW


@dataclass
class SlowModel:
    """Stands in for a model stage: flags texts containing 'evil' with probability 0.95."""

    name: str = "model"
    calls: int = 0

    def run(self, ctx: ScanContext) -> None:
        self.calls += 1
        if any("evil" in t.match_text for t in ctx.texts):
            raise_score(ctx, 0.95)


def test_full_evaluation_runs_async_stages_before_deciding() -> None:
    model = SlowModel()
    m = mesh(async_stages=[model])
    decision = m.evaluate(ContentScan(kind=ContentKind.PROMPT, text="evil plan"), full=True)
    assert decision.verdict is Verdict.BLOCK
    assert decision.stages == "full"
    assert [t.stage for t in decision.timings] == ["normalize", "model"]


def test_background_async_stage_escalates_retroactively() -> None:
    sink = RecordingSink()
    escalated: list[Decision] = []
    done = threading.Event()

    def on_escalation(decision: Decision) -> None:
        escalated.append(decision)
        done.set()

    m = mesh(async_stages=[SlowModel()], audit=sink, on_escalation=on_escalation)
    inline = m.evaluate(ModelInput(text="evil plan"))
    assert inline.verdict is Verdict.ALLOW  # the caller is not kept waiting for the model
    assert done.wait(5)
    m.close()
    (follow_up,) = escalated
    assert follow_up.verdict is Verdict.BLOCK and follow_up.event_id == inline.event_id
    assert follow_up.stages == "full"
    assert [d.verdict for d, _ in sink.records] == [Verdict.ALLOW, Verdict.BLOCK]


def test_background_async_stage_that_agrees_records_nothing_more() -> None:
    sink = RecordingSink()
    model = SlowModel()
    m = mesh(async_stages=[model], audit=sink)
    m.evaluate(ModelInput(text="harmless"))
    m.close()  # waits for the background work
    assert model.calls == 1
    assert len(sink.records) == 1


async def test_aevaluate_matches_evaluate() -> None:
    m = mesh(ScoreStage(), async_stages=[SlowModel()])
    assert (await m.aevaluate(ModelInput(text="p=0.6"))).verdict is Verdict.REVIEW
    assert (await m.aevaluate(ModelInput(text="evil"), full=True)).verdict is Verdict.BLOCK
    m.close()


async def test_aevaluate_awaits_a_submitted_audit_future_before_returning() -> None:
    from concurrent.futures import Future

    pending: list[Future[int]] = []

    class FutureSink(RecordingSink):
        def submit_decision(self, decision: Decision, event: Event) -> Future[int]:
            future: Future[int] = Future()
            self.records.append((decision, event))
            pending.append(future)
            threading.Timer(0.05, future.set_result, args=(len(self.records) - 1,)).start()
            return future

    sink = FutureSink()
    decision = await mesh(ScoreStage(), audit=sink).aevaluate(ModelInput(text="p=0.9"))
    assert decision.verdict is Verdict.BLOCK
    assert sink.records == [(decision, sink.records[0][1])]
    assert pending[0].done()  # returned only once the record was durable


async def test_aevaluate_propagates_an_audit_failure() -> None:
    from concurrent.futures import Future

    class FailingSink(RecordingSink):
        def submit_decision(self, decision: Decision, event: Event) -> Future[int]:
            future: Future[int] = Future()
            future.set_exception(OSError("disk full"))
            return future

    with pytest.raises(OSError, match="disk full"):  # a block must be durable before it is returned
        await mesh(ScoreStage(), audit=FailingSink()).aevaluate(ModelInput(text="p=0.9"))


class DelayedSink(RecordingSink):
    """Commits each record 0.2 s after it is submitted, like a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.futures: list[object] = []

    def submit_decision(self, decision: Decision, event: Event):  # type: ignore[no-untyped-def]
        from concurrent.futures import Future

        future: Future[int] = Future()
        self.futures.append(future)
        self.records.append((decision, event))
        threading.Timer(0.2, future.set_result, args=(len(self.records) - 1,)).start()
        return future


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_preventive_decisions_wait_for_durability_allows_do_not(asynchronous: bool) -> None:
    sink = DelayedSink()
    m = mesh(ScoreStage(), audit=sink)

    async def run(text: str) -> Decision:
        return await m.aevaluate(ModelInput(text=text)) if asynchronous else m.evaluate(ModelInput(text=text))

    blocked = await run("p=0.9")
    assert blocked.verdict is Verdict.BLOCK
    assert len(sink.records) == 1
    assert all(f.done() for f in sink.futures)  # type: ignore[attr-defined]  # durable before returning
    allowed = await run("p=0.1")
    assert allowed.verdict is Verdict.ALLOW
    assert not sink.futures[-1].done()  # type: ignore[attr-defined]  # forwarded while its record commits
    m.close()  # close() flushes: nothing submitted is left behind
    assert sink.futures[-1].done()  # type: ignore[attr-defined]


def test_durable_before_all_makes_allows_wait_too() -> None:
    sink = DelayedSink()
    config = MeshConfig.model_validate({"audit": {"durable_before": "all"}})
    m = mesh(ScoreStage(), audit=sink, config=config)
    m.evaluate(ModelInput(text="p=0.1"))
    assert len(sink.futures) == 0  # the synchronous path used append_decision and returned after it
    assert len(sink.records) == 1


def test_failed_background_append_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from concurrent.futures import Future

    class Failing(RecordingSink):
        def submit_decision(self, decision: Decision, event: Event) -> Future[int]:
            future: Future[int] = Future()
            future.set_exception(OSError("disk full: /var/lib/x"))
            return future

    m = mesh(ScoreStage(), audit=Failing())
    m.evaluate(ModelInput(text="p=0.1 secret words"))
    m.close()
    assert m.audit_failures == 1
    assert "OSError" in caplog.text
    assert "secret words" not in caplog.text


def test_policy_rules_apply_before_the_audit(tmp_path: Path) -> None:
    from cisora_mesh.events import Direction, McpMessage

    policy = tmp_path / "rules.policy"
    policy.write_text(
        'policy "t" version "7"\n'
        "rule T-1 category destructive severity high version 2\n"
        '  block tool_call when tool.name matches "delete_*" and subject.roles not in ["admin"]\n'
    )
    sink = RecordingSink()
    m = Mesh(MeshConfig.model_validate({"policy": {"file": str(policy)}}), audit=sink)
    call = McpMessage(direction=Direction.OUTBOUND, method="tools/call", tool="delete_repo", params={"name": "x"})
    decision = m.evaluate(call)
    assert decision.verdict is Verdict.BLOCK
    assert "T-1" in " ".join(decision.policy_ids)
    assert sink.records[0][0] is decision  # the recorded decision is the enforced one
    admin = msgspec.structs.replace(call, subject=Subject(roles=("admin",)))
    assert m.evaluate(admin).verdict is Verdict.ALLOW


def test_policy_config_errors_are_config_errors(tmp_path: Path) -> None:
    from cisora_mesh.errors import ConfigError

    bad = tmp_path / "bad.policy"
    bad.write_text('policy "t" version "1"\nrule X block tool_call when tool.name =! "x"\n')
    with pytest.raises(ConfigError, match=r"bad\.policy"):
        Mesh(MeshConfig.model_validate({"policy": {"file": str(bad)}}))
    with pytest.raises(ConfigError, match="cannot read"):
        Mesh(MeshConfig.model_validate({"policy": {"file": str(tmp_path / "absent.policy")}}))
    with pytest.raises(ValueError, match="either pack or file"):
        MeshConfig.model_validate({"policy": {"pack": "starter", "file": str(bad)}})
    assert Mesh(MeshConfig.model_validate({"policy": {"pack": "starter"}})).policy_engine is not None
