from __future__ import annotations

from pathlib import Path

import pytest

from cisora_mesh.events import Severity
from cisora_mesh.policy import ApprovalInvalid, IllegalTransition, UnknownDecision
from cisora_mesh.policy.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    DecisionState,
    InMemoryTransitionLog,
    Lifecycle,
    TransitionLog,
    request_digest,
)

S = DecisionState
OPS = ("approve", "reject", "execute", "fail")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lifecycle() -> tuple[Lifecycle, InMemoryTransitionLog, Clock]:
    log, clock = InMemoryTransitionLog(), Clock()
    return Lifecycle(log, clock=clock, approval_ttl=60), log, clock


# How to bring a fresh decision into each state.
PATHS: dict[DecisionState, tuple[bool, tuple[str, ...]]] = {
    S.AWAITING_APPROVAL: (False, ()),
    S.APPROVED: (False, ("approve",)),
    S.AUTO_APPROVED: (True, ()),
    S.REJECTED: (False, ("reject",)),
    S.EXECUTED: (True, ("execute",)),
    S.FAILED: (True, ("fail",)),
}


def in_state(lc: Lifecycle, state: DecisionState, decision_id: str = "d1") -> None:
    auto, ops = PATHS[state]
    lc.create(decision_id, severity=Severity.HIGH, actor="router", auto_approved=auto)
    for op in ops:
        getattr(lc, op)(decision_id, actor="alice")
    assert lc.get(decision_id).state is state


def test_paths_cover_every_state() -> None:
    assert set(PATHS) == set(DecisionState)


LEGAL = {(state, op) for op, (sources, _, _) in TRANSITIONS.items() for state in sources}


@pytest.mark.parametrize(("state", "op"), [(s, o) for s in DecisionState for o in OPS])
def test_every_move_from_every_state(state: DecisionState, op: str) -> None:
    lc, log, _ = lifecycle()
    in_state(lc, state)
    before = len(log.transitions)
    if (state, op) in LEGAL:
        record = getattr(lc, op)("d1", actor="bob")
        assert record.state is TRANSITIONS[op][1]
        last = log.transitions[-1]
        assert (last.from_state, last.to_state, last.actor) == (state, record.state, "bob")
    else:
        with pytest.raises(IllegalTransition) as info:
            getattr(lc, op)("d1", actor="bob")
        assert (info.value.state, info.value.operation) == (state, op)
        assert lc.get("d1").state is state
        assert len(log.transitions) == before  # refused moves leave no trace


def test_legal_moves_match_the_paper() -> None:
    assert LEGAL == {
        (S.AWAITING_APPROVAL, "approve"),
        (S.AWAITING_APPROVAL, "reject"),
        (S.APPROVED, "execute"),
        (S.AUTO_APPROVED, "execute"),
        (S.APPROVED, "fail"),
        (S.AUTO_APPROVED, "fail"),
    }
    assert {TRANSITIONS[o][1] for o in OPS} | {S.AWAITING_APPROVAL, S.AUTO_APPROVED} == set(DecisionState)
    assert frozenset({S.REJECTED, S.EXECUTED, S.FAILED}) == TERMINAL


def test_terminal_states_allow_no_move() -> None:
    for state in TERMINAL:
        assert not any((state, op) in LEGAL for op in OPS)


def test_audit_trail_names_actor_and_time_and_one_terminal_state() -> None:
    lc, log, clock = lifecycle()
    lc.create("d1", severity=Severity.MEDIUM, actor="router")
    clock.now += 5
    lc.approve("d1", actor="alice", reason="looks fine")
    clock.now += 5
    lc.execute("d1", actor="app")
    events = [(t.event_type, t.actor, t.at) for t in log.for_decision("d1")]
    assert events == [
        ("decision_created", "router", 1000.0),
        ("approved", "alice", 1005.0),
        ("executed", "app", 1010.0),
    ]
    assert log.for_decision("d1")[1].detail == {"reason": "looks fine"}
    assert sum(t.to_state in TERMINAL for t in log.for_decision("d1")) == 1
    assert isinstance(log, TransitionLog)


def test_auto_approved_creation_is_logged_as_two_steps() -> None:
    lc, log, _ = lifecycle()
    lc.create("d1", severity=Severity.LOW, actor="router", auto_approved=True)
    assert [t.event_type for t in log.transitions] == ["decision_created", "auto_approved"]


def test_duplicate_create_and_unknown_decision() -> None:
    lc, _, _ = lifecycle()
    lc.create("d1", severity=Severity.LOW, actor="router")
    with pytest.raises(IllegalTransition):
        lc.create("d1", severity=Severity.LOW, actor="router")
    with pytest.raises(UnknownDecision) as info:
        lc.approve("nope", actor="alice")
    assert str(info.value) == "unknown decision nope"


def test_every_transition_needs_an_actor() -> None:
    lc, _, _ = lifecycle()
    with pytest.raises(ValueError, match="actor"):
        lc.create("d1", severity=Severity.LOW, actor="")
    lc.create("d1", severity=Severity.LOW, actor="r")
    with pytest.raises(ValueError, match="actor"):
        lc.approve("d1", actor="")
    with pytest.raises(ValueError, match="actor"):
        lc.reclassify("d1", severity=Severity.HIGH, actor="")


@pytest.mark.parametrize("state", list(DecisionState))
def test_reclassification_keeps_the_original_severity_in_every_state(state: DecisionState) -> None:
    lc, log, _ = lifecycle()
    in_state(lc, state)
    first = lc.reclassify("d1", severity=Severity.MEDIUM, actor="alice", reason="overcautious")
    assert (first.severity, first.original_severity, first.state) == (Severity.MEDIUM, Severity.HIGH, state)
    second = lc.reclassify("d1", severity=Severity.LOW, actor="bob")
    assert (second.severity, second.original_severity) == (Severity.LOW, Severity.HIGH)
    overrides = [t for t in log.transitions if t.event_type == "severity_overridden"]
    assert [o.detail["from"] + ">" + o.detail["to"] for o in overrides] == ["high>medium", "medium>low"]
    assert [o.actor for o in overrides] == ["alice", "bob"]


def test_digest_is_canonical() -> None:
    a = request_digest("post", "/tools/x", {"b": [1, {"y": 2, "x": 1}], "a": "s"})
    b = request_digest("POST", "/tools/x", {"a": "s", "b": [1, {"x": 1, "y": 2}]})
    assert a == b
    assert a != request_digest("POST", "/tools/x", {"a": "t", "b": [1, {"x": 1, "y": 2}]})
    assert a != request_digest("POST", "/tools/y", {"a": "s", "b": [1, {"x": 1, "y": 2}]})
    assert a != request_digest("PUT", "/tools/x", {"a": "s", "b": [1, {"x": 1, "y": 2}]})


def test_approval_is_bound_to_the_request_and_expires() -> None:
    lc, _, clock = lifecycle()
    digest = request_digest("POST", "/mcp", {"name": "delete_repo"})
    lc.create("d1", severity=Severity.HIGH, actor="router", request_digest=digest)
    with pytest.raises(IllegalTransition):
        lc.check_approval("d1", digest)  # not approved yet
    lc.approve("d1", actor="alice")
    assert lc.check_approval("d1", digest).state is S.APPROVED
    changed = request_digest("POST", "/mcp", {"name": "delete_org"})
    with pytest.raises(ApprovalInvalid, match="changed"):
        lc.check_approval("d1", changed)
    with pytest.raises(ApprovalInvalid, match="changed"):
        lc.execute("d1", actor="app", request_digest=changed)
    clock.now += 61
    with pytest.raises(ApprovalInvalid, match="expired"):
        lc.execute("d1", actor="app", request_digest=digest)
    assert lc.get("d1").state is S.APPROVED


def test_approval_within_ttl_executes_once() -> None:
    lc, _, clock = lifecycle()
    digest = request_digest("POST", "/mcp", {"q": 1})
    lc.create("d1", severity=Severity.HIGH, actor="router", request_digest=digest)
    lc.approve("d1", actor="alice", ttl=10)
    clock.now += 9
    assert lc.execute("d1", actor="app", request_digest=digest).state is S.EXECUTED
    with pytest.raises(IllegalTransition):
        lc.execute("d1", actor="app", request_digest=digest)  # one approval, one execution


def test_invalid_ttl() -> None:
    with pytest.raises(ValueError, match="approval_ttl"):
        Lifecycle(approval_ttl=0)


def test_transitions_land_in_the_chained_audit_store(tmp_path: Path) -> None:
    from cisora_mesh.audit import open_store
    from cisora_mesh.policy.lifecycle import AuditTransitionLog

    with open_store(None, data_dir=tmp_path) as store:
        flow = Lifecycle(AuditTransitionLog(store), clock=Clock(), approval_ttl=60)
        digest = request_digest("POST", "/tools/delete", {"path": "/tmp/x"})
        flow.create("d-1", severity=Severity.HIGH, actor="router", request_digest=digest, tenant="acme")
        flow.reclassify("d-1", severity=Severity.MEDIUM, actor="alice")
        flow.approve("d-1", actor="alice")
        flow.execute("d-1", actor="gateway", request_digest=digest)
        with pytest.raises(IllegalTransition):
            flow.approve("d-1", actor="mallory")  # refused moves leave no record
        rows = [r["record"] for r in store.tail(10)]
        moves = [(r["from_state"], r["to_state"], r["actor"]) for r in rows]
        assert moves == [
            ("created", "awaiting_approval", "router"),
            ("awaiting_approval", "awaiting_approval", "alice"),
            ("awaiting_approval", "approved", "alice"),
            ("approved", "executed", "gateway"),
        ]
        assert {(r["kind"], r["tenant"], r["decision_id"]) for r in rows} == {("transition", "acme", "d-1")}
        assert store.verify().ok
