"""Decision lifecycle (Kirtonic Engine paper, section 7): one linear path per decision, every move audited.

    awaiting_approval ──approve──> approved ──execute──> executed
            │                          └──────fail─────> failed
            └────────reject──────> rejected
    auto_approved ──execute──> executed        auto_approved ──fail──> failed

`rejected`, `executed` and `failed` are terminal, so the transition log holds exactly one terminal state per
decision. Any other move raises `IllegalTransition` (HTTP 409 at the boundary). `reclassify` is allowed in every
state; it changes the severity and snapshots `original_severity` on the first override only, so the log keeps
what the classifier originally said however many times reviewers correct it.

An approval is bound to the exact request it was granted for: the record stores `request_digest(method, target,
args)` and an expiry, and `execute` (or `check_approval`) refuses a different digest or an expired approval with
`ApprovalInvalid`. A changed request therefore needs a new decision and a new approval.

Each transition names its actor and is appended to a `TransitionLog` *before* the new state is visible, so an
effect can never run on a state the log does not hold. `AuditTransitionLog` writes them to the chained audit store
(`cisora_mesh.audit`), durable before `append` returns; `InMemoryTransitionLog` is for tests and embedded use.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

import msgspec

from cisora_mesh.events import JSONValue, Severity
from cisora_mesh.policy.errors import ApprovalInvalid, IllegalTransition, UnknownDecision

DEFAULT_APPROVAL_TTL: Final = 15 * 60.0  # seconds; an approval is a short-lived permission, not a standing one


class DecisionState(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    AUTO_APPROVED = "auto_approved"
    REJECTED = "rejected"
    EXECUTED = "executed"
    FAILED = "failed"


S = DecisionState
TERMINAL: Final = frozenset({S.REJECTED, S.EXECUTED, S.FAILED})

# operation -> (states it may start from, state it leads to, audit event type)
TRANSITIONS: Final[dict[str, tuple[frozenset[DecisionState], DecisionState, str]]] = {
    "approve": (frozenset({S.AWAITING_APPROVAL}), S.APPROVED, "approved"),
    "reject": (frozenset({S.AWAITING_APPROVAL}), S.REJECTED, "rejected"),
    "execute": (frozenset({S.APPROVED, S.AUTO_APPROVED}), S.EXECUTED, "executed"),
    "fail": (frozenset({S.APPROVED, S.AUTO_APPROVED}), S.FAILED, "failed"),
}


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One audited lifecycle event (the paper's audit row: who, when, from, to, why)."""

    decision_id: str
    event_type: str  # decision_created, approved, rejected, executed, failed, severity_overridden
    from_state: DecisionState | None
    to_state: DecisionState
    actor: str
    at: float
    detail: dict[str, str] = msgspec.field(default_factory=dict)
    tenant: str = "default"  # the decision's tenant (audit records are per tenant)


class ReviewRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The current state of one decision under review."""

    decision_id: str
    state: DecisionState
    severity: Severity
    original_severity: Severity | None = None
    request_digest: str | None = None
    approval_expires_at: float | None = None
    created_at: float
    updated_at: float
    tenant: str = "default"


@runtime_checkable
class TransitionLog(Protocol):
    """Where transitions are recorded; `append` returns once the record is durable."""

    def append(self, transition: Transition) -> None: ...


class InMemoryTransitionLog:
    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self._lock = threading.Lock()

    def append(self, transition: Transition) -> None:
        with self._lock:
            self.transitions.append(transition)

    def for_decision(self, decision_id: str) -> list[Transition]:
        with self._lock:
            return [t for t in self.transitions if t.decision_id == decision_id]


@runtime_checkable
class TransitionSink(Protocol):
    """What `AuditTransitionLog` needs of an audit store (`cisora_mesh.audit.AuditStore` is one)."""

    def append_transition(
        self,
        *,
        decision_id: str,
        from_state: str,
        to_state: str,
        actor: str,
        tenant: str = "default",
        trace_id: str | None = None,
    ) -> int: ...


class AuditTransitionLog:
    """Appends every transition to the audit store as a `transition` record of the decision's tenant; returns
    once it is durable.

    A decision's first transition has no previous state: it is recorded as coming from `created`. A
    reclassification keeps the state and is recorded as a move from that state to itself by its actor.
    """

    CREATED: Final = "created"

    def __init__(self, store: TransitionSink) -> None:
        self._store = store

    def append(self, transition: Transition) -> None:
        self._store.append_transition(
            decision_id=transition.decision_id,
            from_state=transition.from_state.value if transition.from_state is not None else self.CREATED,
            to_state=transition.to_state.value,
            actor=transition.actor,
            tenant=transition.tenant,
        )


def request_digest(method: str, target: str, args: JSONValue) -> str:
    """SHA-256 over the canonical JSON of (method, target, args): sorted keys, no whitespace, UTF-8.

    Key order and formatting do not change the digest; any change of method, target or a value does.
    """
    canonical = msgspec.json.encode([method.upper(), target, args], order="sorted")
    return hashlib.sha256(canonical).hexdigest()


class Lifecycle:
    """Tracks decisions through their lifecycle. Thread-safe; the clock is injectable (`clock=`)."""

    def __init__(
        self,
        log: TransitionLog | None = None,
        *,
        clock: Callable[[], float] = time.time,
        approval_ttl: float = DEFAULT_APPROVAL_TTL,
    ) -> None:
        if approval_ttl <= 0:
            raise ValueError("approval_ttl must be positive")
        self.log: TransitionLog = log if log is not None else InMemoryTransitionLog()
        self.clock = clock
        self.approval_ttl = approval_ttl
        self._records: dict[str, ReviewRecord] = {}
        self._lock = threading.Lock()

    def get(self, decision_id: str) -> ReviewRecord:
        record = self._records.get(decision_id)
        if record is None:
            raise UnknownDecision(decision_id)
        return record

    def create(
        self,
        decision_id: str,
        *,
        severity: Severity,
        actor: str,
        auto_approved: bool = False,
        request_digest: str | None = None,
        tenant: str = "default",
    ) -> ReviewRecord:
        """Start tracking a decision, awaiting approval or (routing said so) auto-approved."""
        _require_actor(actor)
        with self._lock:
            existing = self._records.get(decision_id)
            if existing is not None:
                raise IllegalTransition(decision_id, existing.state, "create")
            now = self.clock()
            state = S.AUTO_APPROVED if auto_approved else S.AWAITING_APPROVAL
            record = ReviewRecord(
                decision_id=decision_id,
                state=state,
                severity=severity,
                request_digest=request_digest,
                created_at=now,
                updated_at=now,
                tenant=tenant,
            )
            self.log.append(
                Transition(
                    decision_id=decision_id,
                    event_type="decision_created",
                    from_state=None,
                    to_state=S.AWAITING_APPROVAL,
                    actor=actor,
                    at=now,
                    tenant=tenant,
                )
            )
            if auto_approved:
                self.log.append(
                    Transition(
                        decision_id=decision_id,
                        event_type="auto_approved",
                        from_state=S.AWAITING_APPROVAL,
                        to_state=state,
                        actor=actor,
                        at=now,
                        tenant=tenant,
                    )
                )
            self._records[decision_id] = record
            return record

    def approve(self, decision_id: str, *, actor: str, ttl: float | None = None, reason: str = "") -> ReviewRecord:
        now = self.clock()
        expires = now + (self.approval_ttl if ttl is None else ttl)
        return self._move(decision_id, "approve", actor, reason, approval_expires_at=expires)

    def reject(self, decision_id: str, *, actor: str, reason: str = "") -> ReviewRecord:
        return self._move(decision_id, "reject", actor, reason)

    def execute(self, decision_id: str, *, actor: str, request_digest: str | None = None) -> ReviewRecord:
        """Mark a decision executed. For a request-bound approval, `request_digest` must match and be unexpired."""
        with self._lock:
            record = self.get(decision_id)
            if record.state in TRANSITIONS["execute"][0]:
                self._check(record, request_digest)
            return self._move_locked(record, "execute", actor, "")

    def fail(self, decision_id: str, *, actor: str, reason: str = "") -> ReviewRecord:
        return self._move(decision_id, "fail", actor, reason)

    def reclassify(self, decision_id: str, *, severity: Severity, actor: str, reason: str = "") -> ReviewRecord:
        """Change the severity in any state; `original_severity` is set on the first override only."""
        _require_actor(actor)
        with self._lock:
            record = self.get(decision_id)
            now = self.clock()
            original = record.original_severity if record.original_severity is not None else record.severity
            self.log.append(
                Transition(
                    decision_id=decision_id,
                    event_type="severity_overridden",
                    from_state=record.state,
                    to_state=record.state,
                    actor=actor,
                    at=now,
                    detail={"from": record.severity.value, "to": severity.value, "reason": reason},
                    tenant=record.tenant,
                )
            )
            updated = msgspec.structs.replace(record, severity=severity, original_severity=original, updated_at=now)
            self._records[decision_id] = updated
            return updated

    def check_approval(self, decision_id: str, digest: str) -> ReviewRecord:
        """Raise unless the decision is approved (or auto-approved) for exactly this request and not expired."""
        with self._lock:
            record = self.get(decision_id)
            if record.state not in (S.APPROVED, S.AUTO_APPROVED):
                raise IllegalTransition(decision_id, record.state, "use the approval")
            self._check(record, digest)
            return record

    # -- internals -----------------------------------------------------------------------------------------
    def _check(self, record: ReviewRecord, digest: str | None) -> None:
        if record.request_digest is not None and digest != record.request_digest:
            raise ApprovalInvalid(record.decision_id, "the request changed since it was approved")
        expires = record.approval_expires_at
        if record.state is S.APPROVED and expires is not None and self.clock() >= expires:
            raise ApprovalInvalid(record.decision_id, "the approval expired")

    def _move(self, decision_id: str, op: str, actor: str, reason: str, **changes: object) -> ReviewRecord:
        with self._lock:
            return self._move_locked(self.get(decision_id), op, actor, reason, **changes)

    def _move_locked(self, record: ReviewRecord, op: str, actor: str, reason: str, **changes: object) -> ReviewRecord:
        sources, target, event_type = TRANSITIONS[op]
        if record.state not in sources:
            raise IllegalTransition(record.decision_id, record.state, op)
        _require_actor(actor)
        now = self.clock()
        detail = {"reason": reason} if reason else {}
        self.log.append(
            Transition(
                decision_id=record.decision_id,
                event_type=event_type,
                from_state=record.state,
                to_state=target,
                actor=actor,
                at=now,
                detail=detail,
                tenant=record.tenant,
            )
        )
        updated = msgspec.structs.replace(record, state=target, updated_at=now, **changes)
        self._records[record.decision_id] = updated
        return updated


def _require_actor(actor: str) -> None:
    if not actor:
        raise ValueError("every transition names an actor")
