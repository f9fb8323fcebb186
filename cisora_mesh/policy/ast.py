"""The rule language's syntax tree.

The parser produces these frozen nodes; `engine.compile_policy` turns them into closures once. Keeping the tree
around (rather than only the closures) lets tools print, diff and audit a policy exactly as it was understood.
Every node remembers the line and column it started at, so compile-time errors (unknown field, type mismatch,
invalid regex) point at the source just like parse errors do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from cisora_mesh.events import Severity, Verdict


class Op(enum.StrEnum):
    """The 11 comparison operators, exactly. Nothing else compares a field with a value."""

    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    CONTAINS = "contains"
    MATCHES = "matches"  # shell-style glob over the whole value: * ? [abc] [!abc]
    REGEX = "regex"  # RE2 search (linear time), validated when the policy is compiled
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


NEGATED_OPS = frozenset({Op.NE, Op.NOT_IN})
ORDER_OPS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})


class Action(enum.StrEnum):
    """What a matching rule asks for, strictest last (the Kirtonic paper's four actions)."""

    LOG_ONLY = "log_only"
    REDACT = "redact"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def verdict(self) -> Verdict:
        return _ACTION_VERDICT[self]


_ACTION_VERDICT = {
    Action.LOG_ONLY: Verdict.ALLOW,
    Action.REDACT: Verdict.REDACT,
    Action.REVIEW: Verdict.REVIEW,
    Action.BLOCK: Verdict.BLOCK,
}

Scalar: TypeAlias = str | int | float | bool | None
Literal: TypeAlias = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    field: str
    op: Op
    value: Literal
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr: TypeAlias = Compare | And | Or | Not


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: `rule ID [metadata...] ACTION SURFACES when CONDITION`."""

    id: str
    action: Action
    surfaces: tuple[str, ...]
    condition: Expr
    category: str = "general"
    severity: Severity = Severity.MEDIUM
    enabled: bool = True
    version: int = 1
    description: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class PolicyDoc:
    """A parsed policy file: a name, a version and its rules in source order."""

    name: str
    version: str
    rules: tuple[Rule, ...]
