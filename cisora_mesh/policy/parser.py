"""Recursive-descent parser: rule language -> `PolicyDoc`.

Grammar (EBNF; keywords are case-sensitive, `#` comments, newlines insignificant)::

    policy    = [ "policy" STRING "version" (STRING | NUMBER) ] { rule } EOF
    rule      = "rule" (WORD | STRING) { meta } ACTION [ surfaces ] "when" expr
    meta      = "category" (WORD | STRING) | "severity" SEVERITY | "version" NUMBER
              | "enabled" | "disabled" | "description" STRING
    ACTION    = "block" | "review" | "redact" | "log_only"
    surfaces  = SURFACE { "," SURFACE }                  (omitted: "any")
    expr      = conj { "or" conj }
    conj      = unary { "and" unary }
    unary     = "not" unary | "(" expr ")" | FIELD op value
    op        = "==" | "!=" | "in" | "not" "in" | "contains" | "matches" | "regex" | "<" | "<=" | ">" | ">="
    value     = STRING | NUMBER | "true" | "false" | "null" | "[" [ scalar { "," scalar } [","] ] "]"

`and` binds tighter than `or`; `not` binds tightest. Field names and value types are checked by the compiler
(`engine.compile_policy`), which reports positions the same way.
"""

from __future__ import annotations

from typing import Final

from cisora_mesh.events import Severity
from cisora_mesh.policy.ast import Action, And, Compare, Expr, Literal, Not, Op, Or, PolicyDoc, Rule, Scalar
from cisora_mesh.policy.errors import PolicySyntaxError
from cisora_mesh.policy.lexer import Tok, Token, tokenize

SURFACES: Final = frozenset(
    {"any", "http", "prompt", "output", "tool_call", "tool_result", "tool_list", "mcp", "a2a", "memory", "scan"}
)
_WORD_OPS: Final = {"in": Op.IN, "contains": Op.CONTAINS, "matches": Op.MATCHES, "regex": Op.REGEX}
_SYMBOL_OPS: Final = {op.value: op for op in (Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE)}
_CONSTANTS: Final[dict[str, Scalar]] = {"true": True, "false": False, "null": None}
RESERVED: Final = frozenset({"rule", "when", "and", "or", "not", "policy", *_WORD_OPS, *_CONSTANTS})
MAX_DEPTH: Final = 64  # nesting limit, so a hostile policy cannot exhaust the Python stack


class _Parser:
    def __init__(self, tokens: list[Token], name: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.name = name
        self.depth = 0

    # -- helpers ---------------------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def error(self, message: str, tok: Token | None = None) -> PolicySyntaxError:
        at = tok or self.tok
        return PolicySyntaxError(message, line=at.line, column=at.column, source=self.name)

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not Tok.EOF:
            self.pos += 1
        return tok

    def at_word(self, *words: str) -> bool:
        return self.tok.kind is Tok.WORD and self.tok.text in words

    def expect_word(self, word: str) -> Token:
        if not self.at_word(word):
            raise self.error(f"expected {word!r}, found {_describe(self.tok)}")
        return self.advance()

    def expect(self, kind: Tok, what: str) -> Token:
        if self.tok.kind is not kind:
            raise self.error(f"expected {what}, found {_describe(self.tok)}")
        return self.advance()

    # -- grammar ---------------------------------------------------------------------------------------------
    def policy(self) -> PolicyDoc:
        name, version = self.name, "0"
        if self.at_word("policy"):
            self.advance()
            name = self.expect(Tok.STRING, "a policy name string").text
            self.expect_word("version")
            tok = self.tok
            if tok.kind not in (Tok.STRING, Tok.NUMBER):
                raise self.error(f"expected a version, found {_describe(tok)}")
            version = self.advance().text
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        while self.tok.kind is not Tok.EOF:
            start = self.tok
            rule = self.rule()
            if rule.id in seen:
                raise self.error(f"duplicate rule id {rule.id!r} (first defined on line {seen[rule.id]})", start)
            seen[rule.id] = rule.line
            rules.append(rule)
        return PolicyDoc(name=name, version=version, rules=tuple(rules))

    def rule(self) -> Rule:
        start = self.expect_word("rule")
        id_tok = self.tok
        if id_tok.kind not in (Tok.WORD, Tok.STRING) or not id_tok.text or id_tok.text in RESERVED:
            raise self.error(f"expected a rule id, found {_describe(id_tok)}")
        self.advance()
        meta: dict[str, object] = {}
        while True:
            if self.at_word("category"):
                self.advance()
                value = self.tok
                if value.kind not in (Tok.WORD, Tok.STRING):
                    raise self.error(f"expected a category, found {_describe(value)}")
                meta["category"] = self.advance().text
            elif self.at_word("severity"):
                self.advance()
                value = self.expect(Tok.WORD, "a severity (low, medium, high, critical)")
                try:
                    meta["severity"] = Severity(value.text)
                except ValueError:
                    raise self.error(f"unknown severity {value.text!r}", value) from None
            elif self.at_word("version"):
                self.advance()
                value = self.expect(Tok.NUMBER, "a rule version number")
                if not isinstance(value.value, int) or value.value < 1:
                    raise self.error("a rule version is a positive integer", value)
                meta["version"] = value.value
            elif self.at_word("enabled", "disabled"):
                meta["enabled"] = self.advance().text == "enabled"
            elif self.at_word("description"):
                self.advance()
                meta["description"] = self.expect(Tok.STRING, "a description string").text
            else:
                break
        action_tok = self.tok
        try:
            action = Action(action_tok.text) if action_tok.kind is Tok.WORD else None
        except ValueError:
            action = None
        if action is None:
            raise self.error(f"expected an action (block, review, redact, log_only), found {_describe(action_tok)}")
        self.advance()
        surfaces = self.surfaces()
        self.expect_word("when")
        condition = self.expr()
        return Rule(
            id=id_tok.text,
            action=action,
            surfaces=surfaces,
            condition=condition,
            category=str(meta.get("category", "general")),
            severity=meta.get("severity", Severity.MEDIUM),  # type: ignore[arg-type]
            enabled=bool(meta.get("enabled", True)),
            version=meta.get("version", 1),  # type: ignore[arg-type]
            description=str(meta.get("description", "")),
            line=start.line,
        )

    def surfaces(self) -> tuple[str, ...]:
        if self.at_word("when"):
            return ("any",)
        found: list[str] = []
        while True:
            tok = self.expect(Tok.WORD, "a surface or 'when'")
            if tok.text not in SURFACES:
                raise self.error(f"unknown surface {tok.text!r} (one of: {', '.join(sorted(SURFACES))})", tok)
            found.append(tok.text)
            if self.tok.kind is not Tok.COMMA:
                return tuple(dict.fromkeys(found))
            self.advance()

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")
        items = [self.conj()]
        while self.at_word("or"):
            self.advance()
            items.append(self.conj())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conj(self) -> Expr:
        items = [self.unary()]
        while self.at_word("and"):
            self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        if self.at_word("not"):
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")
            inner = self.unary()
            self.depth -= 1
            return Not(inner)
        if self.tok.kind is Tok.LPAREN:
            self.advance()
            inner = self.expr()
            self.expect(Tok.RPAREN, "')'")
            return inner
        return self.compare()

    def compare(self) -> Compare:
        field = self.tok
        if field.kind is not Tok.WORD or field.text in RESERVED:
            raise self.error(f"expected a field name, found {_describe(field)}")
        self.advance()
        op = self.operator()
        value = self.value()
        return Compare(field=field.text, op=op, value=value, line=field.line, column=field.column)

    def operator(self) -> Op:
        tok = self.tok
        if tok.kind is Tok.OP:
            self.advance()
            return _SYMBOL_OPS[tok.text]
        if tok.kind is Tok.WORD:
            if tok.text in _WORD_OPS:
                self.advance()
                return _WORD_OPS[tok.text]
            if tok.text == "not":
                self.advance()
                self.expect_word("in")
                return Op.NOT_IN
        raise self.error(
            f"expected an operator (==, !=, in, not in, contains, matches, regex, <, <=, >, >=), found {_describe(tok)}"
        )

    def kind(self) -> Tok:
        # A method rather than `self.tok.kind`, so mypy does not carry narrowing across `advance()`.
        return self.tokens[self.pos].kind

    def value(self) -> Literal:
        if self.kind() is Tok.LBRACKET:
            self.advance()
            items: list[Scalar] = []
            while self.kind() is not Tok.RBRACKET:
                items.append(self.scalar())
                if self.kind() is Tok.COMMA:
                    self.advance()
                elif self.kind() is not Tok.RBRACKET:
                    raise self.error(f"expected ',' or ']', found {_describe(self.tok)}")
            self.advance()
            return tuple(items)
        return self.scalar()

    def scalar(self) -> Scalar:
        tok = self.tok
        if tok.kind is Tok.STRING:
            self.advance()
            return tok.text
        if tok.kind is Tok.NUMBER:
            self.advance()
            return tok.value
        if tok.kind is Tok.WORD and tok.text in _CONSTANTS:
            self.advance()
            return _CONSTANTS[tok.text]
        raise self.error(f"expected a value (string, number, true, false, null or [list]), found {_describe(tok)}")


def _describe(tok: Token) -> str:
    if tok.kind is Tok.EOF:
        return "end of input"
    if tok.kind is Tok.STRING:
        return "a string"  # never echo string contents: they may be sensitive patterns
    return repr(tok.text)


def parse_policy(source: str, *, name: str = "<policy>") -> PolicyDoc:
    """Parse a policy text into its syntax tree; raises `PolicySyntaxError` naming line and column."""
    return _Parser(tokenize(source, name=name), name).policy()
