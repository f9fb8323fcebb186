"""Errors of the policy package (all under `CisoraError`).

    CisoraError
    ├── ConfigError (ValueError)
    │   └── PolicySyntaxError        a policy file does not parse or compile; names line and column
    └── LifecycleError               a decision lifecycle operation was refused (HTTP 409 at the boundary)
        ├── IllegalTransition        the move is not in the transition graph (e.g. execute while awaiting approval)
        ├── UnknownDecision          no decision with that id is tracked (HTTP 404)
        └── ApprovalInvalid          the approval does not cover this request: changed request, or expired

Messages name rules, fields, states and positions; they never quote request payloads.
"""

from __future__ import annotations

from cisora_mesh.errors import CisoraError, ConfigError


class PolicySyntaxError(ConfigError):
    """A policy could not be parsed or compiled. `line` and `column` are 1-based."""

    def __init__(self, message: str, *, line: int, column: int, source: str = "<policy>") -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.reason = message
        self.line = line
        self.column = column
        self.source = source


class LifecycleError(CisoraError):
    """A lifecycle operation was refused."""


class IllegalTransition(LifecycleError):
    """The requested transition is not allowed from the decision's current state."""

    def __init__(self, decision_id: str, state: str, operation: str) -> None:
        super().__init__(f"decision {decision_id}: cannot {operation} from state {state!r}")
        self.decision_id = decision_id
        self.state = state
        self.operation = operation


class UnknownDecision(LifecycleError, KeyError):
    """No decision with this id is tracked."""

    def __init__(self, decision_id: str) -> None:
        super().__init__(f"unknown decision {decision_id}")
        self.decision_id = decision_id

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class ApprovalInvalid(LifecycleError):
    """The approval exists but does not authorise this request (different digest, or expired)."""

    def __init__(self, decision_id: str, reason: str) -> None:
        super().__init__(f"decision {decision_id}: approval does not cover this request ({reason})")
        self.decision_id = decision_id
        self.reason = reason
