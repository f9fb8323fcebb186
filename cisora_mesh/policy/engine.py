"""Compile a parsed policy into closures once; evaluate it as a pure function.

    engine = PolicyEngine.from_text(source)             # parse + compile; PolicySyntaxError on any mistake
    result = engine.evaluate(event, decision)           # -> PolicyResult(matched rules, action, policy version)

Compilation checks everything that can be checked before traffic arrives: field names, operator/value types,
globs and RE2 regexes (linear time, so no rule can hang a worker). Evaluation reads only its arguments: no I/O,
no global state, and no clock unless the caller injects `now`. Field values are read lazily and at most once per
evaluation, and rules are pre-grouped by surface so an event only visits the rules that can apply to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import re2

from cisora_mesh._regex import compile_linear
from cisora_mesh.errors import PatternError
from cisora_mesh.events import Decision, Event, Finding, Severity, Verdict
from cisora_mesh.policy.ast import (
    NEGATED_OPS,
    ORDER_OPS,
    Action,
    And,
    Compare,
    Expr,
    Literal,
    Not,
    Op,
    PolicyDoc,
    Rule,
    Scalar,
)
from cisora_mesh.policy.errors import PolicySyntaxError
from cisora_mesh.policy.fields import (
    SEVERITY_RANK,
    EvalInput,
    FieldSpec,
    FieldType,
    Getter,
    resolve,
    surfaces_of,
)
from cisora_mesh.policy.parser import parse_policy

Pred = Callable[[object], bool]
Cond = Callable[["_Values"], bool]

_ACTION_RANK: Final = {Action.LOG_ONLY: 0, Action.REDACT: 1, Action.REVIEW: 2, Action.BLOCK: 3}


class _Values(dict[int, object]):
    """Field values of one evaluation, read on first use (a rule that short-circuits never pays for the rest)."""

    __slots__ = ("getters", "groups", "inp", "rx")

    def __init__(self, getters: list[Getter], groups: Mapping[int, _RegexGroup], inp: EvalInput) -> None:
        super().__init__()
        self.getters = getters
        self.groups = groups
        self.inp = inp
        self.rx: dict[int, frozenset[int]] = {}

    def regex_hits(self, slot: int) -> frozenset[int]:
        """Which of the field's regexes match its value (any element, for lists): one RE2 set pass per string."""
        hits = self.rx.get(slot)
        if hits is None:
            value, group = self[slot], self.groups[slot]
            if type(value) is str:
                hits = group.hits(value)
            elif type(value) is tuple:
                hits = frozenset().union(*(group.hits(x) for x in value if type(x) is str))
            else:
                hits = _NO_HITS
            self.rx[slot] = hits
        return hits

    def __missing__(self, index: int) -> object:
        value = self.getters[index](self.inp)
        self[index] = value
        return value


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched, with what the audit record needs to name it."""

    rule_id: str
    version: int
    action: Action
    category: str
    severity: Severity
    ref: str = ""  # "rule:<id>@<version>", what Decision.policy_ids records

    def __post_init__(self) -> None:
        if not self.ref:
            object.__setattr__(self, "ref", f"rule:{self.rule_id}@{self.version}")


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The outcome of evaluating a policy: every matching rule, the strictest action and the policy version."""

    policy: str
    version: str
    matched: tuple[RuleMatch, ...]
    action: Action | None

    @property
    def verdict(self) -> Verdict:
        return Verdict.ALLOW if self.action is None else self.action.verdict

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(m.rule_id for m in self.matched)

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """What a `Decision.policy_ids` records: the policy version, then each matched rule and its version."""
        head = f"policy:{self.policy}@{self.version}"
        return (head, *(m.ref for m in self.matched)) if self.matched else (head,)


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    cond: Cond
    match: RuleMatch
    gate: tuple[int, bool, frozenset[str]] | None  # (slot, list-valued, values) one of which the field must hold
    regex_gate: tuple[int, int] | None = None  # (slot, member): a `regex` conjunct, answered by the field's set pass


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules one combination of surfaces reaches: some always checked, the rest behind an equality index.

    A rule whose condition is (or starts with a conjunct) `field == "x"` / `field in [...]` on a string field can
    only match when the field holds one of those values, so it is looked up by value instead of being tried.
    """

    always: tuple[int, ...]
    index: tuple[tuple[int, bool, dict[str, tuple[int, ...]]], ...]
    # Rules behind a `regex` conjunct, by field slot and the regex's member index in that field's RE2 set: the one
    # set pass that evaluates those regexes also says which of these rules can match at all.
    regex_index: tuple[tuple[int, dict[int, tuple[int, ...]]], ...] = ()


@dataclass(slots=True)
class _Compiler:
    source: str
    getters: list[Getter] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)
    regex_groups: dict[int, _RegexGroup] = field(default_factory=dict)
    regex_members: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(Compare) -> (slot, member)

    def error(self, node: Compare, message: str) -> PolicySyntaxError:
        return PolicySyntaxError(message, line=node.line, column=node.column, source=self.source)

    def slot(self, spec: FieldSpec) -> int:
        if spec.name not in self.slots:
            self.slots[spec.name] = len(self.getters)
            self.getters.append(spec.get)
        return self.slots[spec.name]

    def expr(self, node: Expr) -> Cond:
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Not):
            inner = self.expr(node.item)
            return lambda v: not inner(v)
        parts = tuple(self.expr(item) for item in node.items)
        if isinstance(node, And):
            if len(parts) == 2:
                a, b = parts
                return lambda v: a(v) and b(v)
            return lambda v: all(p(v) for p in parts)
        if len(parts) == 2:
            a, b = parts
            return lambda v: a(v) or b(v)
        return lambda v: any(p(v) for p in parts)

    def compare(self, node: Compare) -> Cond:
        spec = resolve(node.field)
        if spec is None:
            raise self.error(node, f"unknown field {node.field!r} (see docs/policy-language.md for the field list)")
        value = self.check_types(node, spec)
        index = self.slot(spec)
        if node.op is Op.REGEX:
            cond = self.regex(node, index, str(value))
        else:
            fast = _fast_path(node.op, value, spec, index)
            if fast is not None:
                return fast  # already negated where the operator is
            cond = self.generic(node, spec, index, value)
        if node.op in NEGATED_OPS:
            inner = cond
            return lambda v: not inner(v)
        return cond

    def generic(self, node: Compare, spec: FieldSpec, index: int, value: Literal) -> Cond:
        positive = _positive(node.op, value, lambda message: self.error(node, message))
        if spec.many:

            def test_many(v: _Values) -> bool:
                for item in v[index]:  # type: ignore[attr-defined]
                    if positive(item):
                        return True
                return False

            return test_many
        if spec.type is FieldType.ANY:

            def test_any(v: _Values) -> bool:
                item = v[index]
                if type(item) is tuple:  # a JSON array: any element
                    return any(positive(x) for x in item)
                return positive(item)

            return test_any
        return lambda v: positive(v[index])

    def regex(self, node: Compare, index: int, pattern: str) -> Cond:
        # Validate alone (RE2 syntax, size, empty match) for a precise error; match through the field's group:
        # one RE2 set pass per distinct value answers every regex rule on that field at once.
        try:
            compile_linear(pattern, name="regex")
        except PatternError as exc:
            raise self.error(node, str(exc)) from None
        member = self.regex_groups.setdefault(index, _RegexGroup()).add(pattern)
        self.regex_members[id(node)] = (index, member)
        # Any-match over list values is done by `regex_hits`, so list and single fields compile the same.
        return lambda v: member in v.regex_hits(index)

    def check_types(self, node: Compare, spec: FieldSpec) -> Literal:
        op, value = node.op, node.value
        if op in (Op.IN, Op.NOT_IN):
            if not isinstance(value, tuple):
                raise self.error(node, f'\'{op}\' needs a list value, e.g. ["a", "b"]')
            items: tuple[Scalar, ...] = value
        else:
            if isinstance(value, tuple):
                raise self.error(node, f"'{op}' needs a single value, not a list (did you mean 'in'?)")
            items = (value,)
        kind = spec.type
        if kind is FieldType.SEVERITY:
            if op in (Op.CONTAINS, Op.MATCHES, Op.REGEX):
                raise self.error(node, f"'{op}' does not apply to severities")
            ranks: list[Scalar] = []
            for item in items:
                if item is None:
                    ranks.append(None)
                    continue
                if not isinstance(item, str) or item not in SEVERITY_RANK:
                    raise self.error(
                        node, f'{spec.name} compares with a severity: "low", "medium", "high" or "critical"'
                    )
                ranks.append(SEVERITY_RANK[item])
            return tuple(ranks) if isinstance(value, tuple) else ranks[0]
        if op in (Op.CONTAINS, Op.MATCHES, Op.REGEX):
            if kind in (FieldType.NUM, FieldType.BOOL):
                raise self.error(node, f"'{op}' needs a string field; {spec.name} is a {kind.value}")
            if not isinstance(value, str) or not value:
                raise self.error(node, f"'{op}' needs a non-empty string value")
        elif op in ORDER_OPS:
            if kind in (FieldType.STR, FieldType.BOOL):
                raise self.error(node, f"'{op}' needs a number field; {spec.name} is a {kind.value}")
            if not _is_number(value):
                raise self.error(node, f"'{op}' needs a number value")
        else:
            expected = {FieldType.STR: str, FieldType.BOOL: bool}.get(kind)
            for item in items:
                if item is None:
                    continue
                if expected is not None and not isinstance(item, expected):
                    raise self.error(node, f"{spec.name} is a {kind.value}; cannot compare it with {item!r}")
                if kind is FieldType.NUM and not _is_number(item):
                    raise self.error(node, f"{spec.name} is a number; cannot compare it with {item!r}")
        return value


def _regex_gate(expr: Expr, members: Mapping[int, tuple[int, int]]) -> tuple[int, int] | None:
    """The `regex` conjunct a rule cannot match without, if it has one: (field slot, member in the field's set)."""
    items = expr.items if isinstance(expr, And) else (expr,)
    for item in items:
        if isinstance(item, Compare) and item.op is Op.REGEX and id(item) in members:
            return members[id(item)]
    return None


def _gate(expr: Expr, slots: Mapping[str, int]) -> tuple[int, bool, frozenset[str]] | None:
    """The equality conjunct a rule cannot match without, if it has one on a string field."""
    items = expr.items if isinstance(expr, And) else (expr,)
    for item in items:
        if not isinstance(item, Compare) or item.op not in (Op.EQ, Op.IN):
            continue
        spec = resolve(item.field)
        if spec is None or spec.type is not FieldType.STR:
            continue
        values = item.value if isinstance(item.value, tuple) else (item.value,)
        if values and all(isinstance(x, str) for x in values):
            return slots[spec.name], spec.many, frozenset(x for x in values if isinstance(x, str))
    return None


class _RegexGroup:
    """All `regex` patterns tested against one field, compiled into one RE2 set (a single linear pass)."""

    def __init__(self) -> None:
        self.patterns: list[str] = []
        self._set: re2.Set | None = None

    def add(self, pattern: str) -> int:
        self.patterns.append(pattern)
        return len(self.patterns) - 1

    def finalize(self) -> None:
        rset = re2.Set.SearchSet(_GLOB_OPTIONS)
        for pattern in self.patterns:
            rset.Add(pattern)
        try:
            rset.Compile()
        except re2.error:
            raise PolicySyntaxError(
                "the policy's regexes together exceed the regex memory budget", line=1, column=1
            ) from None
        self._set = rset

    def hits(self, text: str) -> frozenset[int]:
        if self._set is None:
            return _NO_HITS
        found = self._set.Match(text)
        return frozenset(found) if found else _NO_HITS


_NO_HITS: Final[frozenset[int]] = frozenset()


def _fast_path(op: Op, value: Literal, spec: FieldSpec, index: int) -> Cond | None:
    """Closures that skip the generic per-element predicate for the common string comparisons.

    Only for fields typed as strings, whose values are always a str, MISSING or (list fields) a tuple of str, so
    hashing and `==` are safe and give the same answers as the generic path.
    """
    if spec.type is not FieldType.STR:
        return None
    strings = isinstance(value, tuple) and all(isinstance(x, str) for x in value)
    options = frozenset(value) if strings else frozenset()  # type: ignore[arg-type]
    if spec.many:
        if op is Op.EQ and isinstance(value, str):
            return lambda v: value in v[index]  # type: ignore[operator]
        if op is Op.NE and isinstance(value, str):
            return lambda v: value not in v[index]  # type: ignore[operator]
        if op is Op.IN and strings:
            return lambda v: not options.isdisjoint(v[index])  # type: ignore[arg-type]
        if op is Op.NOT_IN and strings:
            return lambda v: options.isdisjoint(v[index])  # type: ignore[arg-type]
        return None
    if op is Op.EQ and isinstance(value, str):
        return lambda v: v[index] == value
    if op is Op.NE and isinstance(value, str):
        return lambda v: v[index] != value
    if op is Op.IN and strings:
        return lambda v: v[index] in options
    if op is Op.NOT_IN and strings:
        return lambda v: v[index] not in options
    if op is Op.CONTAINS and isinstance(value, str):
        return lambda v: type(x := v[index]) is str and value in x
    if op is Op.MATCHES and isinstance(value, str):
        test = _simple_glob(value)
        if test is not None:
            return lambda v: type(x := v[index]) is str and test(x)
    return None


def _simple_glob(glob: str) -> Pred | None:
    """String-method equivalents of globs made of literals and `*` only (most real ones); None otherwise."""
    if any(c in glob for c in "?["):
        return None
    pieces = glob.split("*")
    if len(pieces) == 1:
        return lambda x: x == glob
    if len(pieces) == 2:
        pre, suf = pieces
        need = len(pre) + len(suf)
        return lambda x: len(x) >= need and x.startswith(pre) and x.endswith(suf)  # type: ignore[attr-defined,arg-type]
    if len(pieces) == 3 and pieces[0] == "" and pieces[2] == "":
        mid = pieces[1]
        return lambda x: mid in x  # type: ignore[operator]
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(op: Op, value: Literal, error: Callable[[str], PolicySyntaxError]) -> Pred:
    """The predicate of the positive form of `op` on one scalar field value (never true for MISSING)."""
    if op in (Op.EQ, Op.NE):
        return _equals(value)  # type: ignore[arg-type]
    if op in (Op.IN, Op.NOT_IN):
        options = tuple(_equals(item) for item in value)  # type: ignore[union-attr]
        hashable = frozenset(item for item in value if isinstance(item, str))  # type: ignore[union-attr]
        if len(hashable) == len(value):  # type: ignore[arg-type]
            return lambda v: type(v) is str and v in hashable
        return lambda v: any(o(v) for o in options)
    if op is Op.CONTAINS:
        needle = str(value)
        return lambda v: type(v) is str and needle in v
    if op is Op.MATCHES:
        glob = _compile_glob(str(value), error)
        return lambda v: type(v) is str and glob.fullmatch(v) is not None
    bound = float(value)  # type: ignore[arg-type]
    is_num: Callable[[object], bool] = lambda v: type(v) is int or type(v) is float  # noqa: E731
    if op is Op.LT:
        return lambda v: is_num(v) and v < bound  # type: ignore[operator]
    if op is Op.LE:
        return lambda v: is_num(v) and v <= bound  # type: ignore[operator]
    if op is Op.GT:
        return lambda v: is_num(v) and v > bound  # type: ignore[operator]
    return lambda v: is_num(v) and v >= bound  # type: ignore[operator]


def _equals(value: Scalar) -> Pred:
    if value is None or isinstance(value, bool):
        return lambda v: v is value
    if isinstance(value, str):
        return lambda v: v == value
    number = value
    return lambda v: (type(v) is int or type(v) is float) and v == number


_GLOB_OPTIONS: Final = re2.Options()
_GLOB_OPTIONS.log_errors = False


def glob_to_regex(glob: str) -> str:
    """Translate a shell glob (`*`, `?`, `[abc]`, `[!abc]`) into an anchored-by-fullmatch RE2 pattern."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "(?s)" + "".join(out)


def _compile_glob(glob: str, error: Callable[[str], PolicySyntaxError]) -> re2._Regexp:
    try:
        return re2.compile(glob_to_regex(glob), _GLOB_OPTIONS)
    except re2.error:
        raise error("invalid glob pattern") from None


class PolicyEngine:
    """A compiled policy. Immutable and thread-safe once built; `evaluate` is pure."""

    def __init__(self, doc: PolicyDoc, *, source: str = "<policy>") -> None:
        compiler = _Compiler(source)
        compiled: list[_CompiledRule] = []
        for rule in doc.rules:
            cond = compiler.expr(rule.condition)  # compile disabled rules too: a typo is an error either way
            if rule.enabled:
                match = RuleMatch(rule.id, rule.version, rule.action, rule.category, rule.severity)
                gate = _gate(rule.condition, compiler.slots)
                regex_gate = None if gate is not None else _regex_gate(rule.condition, compiler.regex_members)
                compiled.append(_CompiledRule(rule, cond, match, gate, regex_gate))
        for group in compiler.regex_groups.values():
            group.finalize()
        self.doc = doc
        self.name = doc.name
        self.version = doc.version
        self._rules = tuple(compiled)
        self._getters = compiler.getters
        self._groups = dict(compiler.regex_groups)
        self._by_surfaces: dict[frozenset[str], _Plan] = {}
        self._nothing = PolicyResult(policy=self.name, version=self.version, matched=(), action=None)

    @classmethod
    def from_text(cls, text: str, *, name: str = "<policy>") -> PolicyEngine:
        return cls(parse_policy(text, name=name), source=name)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The enabled rules, in source order."""
        return tuple(c.rule for c in self._rules)

    def _plan(self, event: Event) -> _Plan:
        surfaces = surfaces_of(event)
        plan = self._by_surfaces.get(surfaces)
        if plan is None:
            # Benign race: two threads may both build the same plan; either result is correct.
            always: list[int] = []
            index: dict[tuple[int, bool], dict[str, list[int]]] = {}
            regex_index: dict[int, dict[int, list[int]]] = {}
            for position, c in enumerate(self._rules):
                if surfaces.isdisjoint(c.rule.surfaces):
                    continue
                if c.gate is not None:
                    slot, many, values = c.gate
                    table = index.setdefault((slot, many), {})
                    for value in values:
                        table.setdefault(value, []).append(position)
                elif c.regex_gate is not None:
                    slot, member = c.regex_gate
                    regex_index.setdefault(slot, {}).setdefault(member, []).append(position)
                else:
                    always.append(position)
            plan = _Plan(
                always=tuple(always),
                index=tuple(
                    (slot, many, {k: tuple(v) for k, v in table.items()}) for (slot, many), table in index.items()
                ),
                regex_index=tuple(
                    (slot, {m: tuple(p) for m, p in members.items()}) for slot, members in regex_index.items()
                ),
            )
            self._by_surfaces[surfaces] = plan
        return plan

    def evaluate(
        self,
        event: Event,
        decision_or_findings: Decision | Sequence[Finding] = (),
        *,
        now: datetime | float | None = None,
        context: Mapping[str, object] | None = None,
    ) -> PolicyResult:
        """Evaluate every applicable rule against `event` and the pipeline's findings.

        Args:
            event: the event being decided.
            decision_or_findings: the pipeline's `Decision` (findings and score), or just findings (score 0).
            now: the clock, for `time.*` fields; without it those fields are missing.
            context: caller-supplied facts for `context.*` fields (and `http.*` for non-HTTP events).
        """
        if isinstance(decision_or_findings, Decision):
            findings, score = decision_or_findings.findings, decision_or_findings.score
        else:
            findings, score = tuple(decision_or_findings), 0.0
        values = _Values(
            self._getters,
            self._groups,
            EvalInput(event, findings, score, now, context),
        )
        plan = self._plan(event)
        order: Sequence[int] = plan.always
        if plan.index or plan.regex_index:
            reached = set(plan.always)
            for slot, many, table in plan.index:
                value = values[slot]
                if many:
                    for item in value:  # type: ignore[attr-defined]
                        hit = table.get(item)
                        if hit:
                            reached.update(hit)
                else:
                    hit = table.get(value)  # type: ignore[call-overload]
                    if hit:
                        reached.update(hit)
            for slot, members in plan.regex_index:
                for member in values.regex_hits(slot):
                    gated = members.get(member)
                    if gated:
                        reached.update(gated)
            order = sorted(reached)  # source order: results list rules as they appear in the policy
        if not order:
            return self._nothing
        rules = self._rules
        matched = [rules[i].match for i in order if rules[i].cond(values)]
        if not matched:
            return self._nothing
        action = max((m.action for m in matched), key=_ACTION_RANK.__getitem__, default=None)
        return PolicyResult(policy=self.name, version=self.version, matched=tuple(matched), action=action)
