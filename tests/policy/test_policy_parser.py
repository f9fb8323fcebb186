from __future__ import annotations

import pytest

from cisora_mesh.events import Severity
from cisora_mesh.policy import Action, Op, PolicyEngine, PolicySyntaxError, parse_policy
from cisora_mesh.policy.ast import And, Compare, Not, Or
from cisora_mesh.policy.engine import glob_to_regex
from cisora_mesh.policy.lexer import Tok, tokenize


def test_issue_example_parses_to_the_expected_tree() -> None:
    doc = parse_policy('rule R1 block tool_call when tool.name matches "delete_*" and subject.role not in ["admin"]')
    (rule,) = doc.rules
    assert rule.id == "R1"
    assert rule.action is Action.BLOCK
    assert rule.surfaces == ("tool_call",)
    assert rule.condition == And(
        (
            Compare("tool.name", Op.MATCHES, "delete_*", 1, 30),
            Compare("subject.role", Op.NOT_IN, ("admin",), 1, 63),
        )
    )


def test_header_metadata_and_defaults() -> None:
    doc = parse_policy(
        """
        # comment line
        policy "acme" version "7"
        rule "A 1" category pii severity critical version 3 disabled description "x" redact output, a2a when score > 1
        rule B log_only when score >= 0   # any surface by default
        """
    )
    assert (doc.name, doc.version) == ("acme", "7")
    a, b = doc.rules
    assert (a.id, a.category, a.severity, a.version, a.enabled, a.description) == (
        "A 1",
        "pii",
        Severity.CRITICAL,
        3,
        False,
        "x",
    )
    assert a.surfaces == ("output", "a2a")
    assert a.line == 4
    assert (b.category, b.severity, b.version, b.enabled, b.surfaces) == ("general", Severity.MEDIUM, 1, True, ("any",))


def test_precedence_not_binds_tightest_then_and_then_or() -> None:
    (rule,) = parse_policy("rule R block when not score > 1 or score < 2 and score == 3").rules
    assert isinstance(rule.condition, Or)
    left, right = rule.condition.items
    assert isinstance(left, Not)
    assert isinstance(right, And)
    (rule,) = parse_policy("rule R block when not (score > 1 or score < 2)").rules
    assert isinstance(rule.condition, Not)
    assert isinstance(rule.condition.item, Or)


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ('x == "a"', Op.EQ, "a"),
        ("x != 1", Op.NE, 1),
        ('x in ["a", "b",]', Op.IN, ("a", "b")),
        ("x not in [1, 2.5, true, null]", Op.NOT_IN, (1, 2.5, True, None)),
        ('x contains "a"', Op.CONTAINS, "a"),
        ('x matches "a*"', Op.MATCHES, "a*"),
        ('x regex "^a\\\\d"', Op.REGEX, "^a\\d"),
        ("x < -1", Op.LT, -1),
        ("x <= 0.5", Op.LE, 0.5),
        ("x > 10", Op.GT, 10),
        ("x >= false", Op.GE, False),
    ],
)
def test_every_operator_parses(text: str, op: Op, value: object) -> None:
    (rule,) = parse_policy(f"rule R block when {text}").rules
    assert isinstance(rule.condition, Compare)
    assert (rule.condition.op, rule.condition.value) == (op, value)


def test_exactly_eleven_operators() -> None:
    assert len(Op) == 11


@pytest.mark.parametrize(
    ("source", "line", "column", "reason"),
    [
        ("rule R block when", 1, 18, "expected a field name, found end of input"),
        ("rule R block when score", 1, 24, "expected an operator"),
        ("rule R block when score ==", 1, 27, "expected a value"),
        ("rule R block when score = 1", 1, 25, "unexpected '='"),
        ("rule R\n  block when score == 1 and", 2, 28, "expected a field name"),
        ('rule R block when x == "abc', 1, 24, "unterminated string"),
        ('rule R block when x == "a\\q"', 1, 26, "unknown escape \\q"),
        ("rule R block when x == 1 ~", 1, 26, "unexpected character '~'"),
        ("rule R block when (score > 1", 1, 29, "expected ')'"),
        ("rule R block when x in [1 2]", 1, 27, "expected ',' or ']'"),
        ("rule R block when x not 1", 1, 25, "expected 'in'"),
        ("rule R bounce when score > 1", 1, 8, "expected an action"),
        ("rule R block toolcall when score > 1", 1, 14, "unknown surface 'toolcall'"),
        ("rule R severity extreme block when score > 1", 1, 17, "unknown severity 'extreme'"),
        ("rule R version 0 block when score > 1", 1, 16, "positive integer"),
        ("rule R block score > 1", 1, 14, "unknown surface 'score'"),
        ("rule when block when score > 1", 1, 6, "expected a rule id"),
        ("rule R block when score > 1\nrule R block when score > 2", 2, 1, "duplicate rule id 'R'"),
        ("block when score > 1", 1, 1, "expected 'rule'"),
        ('policy "p" when', 1, 12, "expected 'version'"),
        ("rule R block when x == 1.2.3", 1, 24, "invalid number"),
        ("rule R block when " + "(" * 70 + "score > 1" + ")" * 70, 1, 83, "nested deeper"),
        ("rule R block when " + "not " * 70 + "score > 1", 1, 275, "nested deeper"),
    ],
)
def test_parse_errors_name_line_and_column(source: str, line: int, column: int, reason: str) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(source, name="t.policy")
    assert (info.value.line, info.value.column) == (line, column), info.value
    assert reason in info.value.reason
    assert str(info.value).startswith(f"t.policy:{line}:{column}: ")


@pytest.mark.parametrize(
    ("source", "column", "reason"),
    [
        ('rule R block when tool.nam == "x"', 19, "unknown field 'tool.nam'"),
        ('rule R block when score > "x"', 19, "needs a number value"),
        ("rule R block when tool.name < 3", 19, "needs a number field"),
        ('rule R block when score contains "x"', 19, "needs a string field"),
        ("rule R block when tool.name == 3", 19, "cannot compare it with 3"),
        ('rule R block when score == "x"', 19, "cannot compare it with 'x'"),
        ('rule R block when tool.name in "x"', 19, "needs a list value"),
        ('rule R block when tool.name == ["x"]', 19, "did you mean 'in'"),
        ('rule R block when tool.name regex "(a"', 19, "invalid regex"),
        ('rule R block when tool.name regex "a*"', 19, "matches the empty string"),
        ('rule R block when tool.name regex "(a)\\\\1"', 19, "invalid regex"),
        ('rule R block when tool.name matches ""', 19, "non-empty string"),
        ('rule R block when findings.severity >= "severe"', 19, "compares with a severity"),
        ('rule R block when findings.severity regex "h"', 19, "does not apply to severities"),
        ('rule R disabled block when tool.nam == "x"', 28, "unknown field"),
    ],
)
def test_compile_errors_name_line_and_column(source: str, column: int, reason: str) -> None:
    with pytest.raises(PolicySyntaxError) as info:
        PolicyEngine.from_text(source)
    assert (info.value.line, info.value.column) == (1, column), info.value
    assert reason in info.value.reason


def test_error_messages_never_echo_string_literals() -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy('rule R block when "sk-live-secret" == 1')
    assert "sk-live-secret" not in str(info.value)


def test_tokens_carry_positions() -> None:
    tokens = tokenize('rule R\n  block when x >= 2 # c\n  and y != "s"')
    assert [(t.kind, t.line, t.column) for t in tokens if t.kind is not Tok.WORD] == [
        (Tok.OP, 2, 16),
        (Tok.NUMBER, 2, 19),
        (Tok.OP, 3, 9),
        (Tok.STRING, 3, 12),
        (Tok.EOF, 3, 15),
    ]


@pytest.mark.parametrize(
    ("glob", "regex"),
    [
        ("delete_*", "(?s)delete_.*"),
        ("a?c", "(?s)a.c"),
        ("[!ab]x", "(?s)[^ab]x"),
        ("[a", "(?s)\\[a"),
        ("a.b", "(?s)a\\.b"),
    ],
)
def test_glob_translation(glob: str, regex: str) -> None:
    assert glob_to_regex(glob) == regex
