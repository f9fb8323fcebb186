"""Tokenizer for the rule language.

Hand-written rather than regex-driven so every token carries an exact 1-based line and column, and so no
user-controlled text ever reaches a backtracking regex engine. `#` starts a comment that runs to the end of the line;
newlines are otherwise insignificant (a rule may span lines).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cisora_mesh.policy.errors import PolicySyntaxError


class Tok(enum.Enum):
    WORD = "word"  # keywords, field names, rule ids, bare enum values (high, block, tool_call...)
    STRING = "string"
    NUMBER = "number"
    OP = "op"  # == != < <= > >=
    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    EOF = "end of input"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # the decoded value for strings, the raw text otherwise
    line: int
    column: int
    value: float | int | None = None  # numbers only


_PUNCT: Final = {"[": Tok.LBRACKET, "]": Tok.RBRACKET, "(": Tok.LPAREN, ")": Tok.RPAREN, ",": Tok.COMMA}
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
MAX_POLICY_CHARS: Final = 1_000_000


def _is_word_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "_.-*")


def tokenize(source: str, *, name: str = "<policy>") -> list[Token]:
    """Split `source` into tokens, ending with one `EOF` token."""
    if len(source) > MAX_POLICY_CHARS:
        raise PolicySyntaxError(f"policy is longer than {MAX_POLICY_CHARS} characters", line=1, column=1, source=name)
    tokens: list[Token] = []
    i, line, line_start, n = 0, 1, 0, len(source)

    def fail(message: str, at: int) -> PolicySyntaxError:
        return PolicySyntaxError(message, line=line, column=at - line_start + 1, source=name)

    while i < n:
        ch = source[i]
        if ch == "\n":
            i += 1
            line, line_start = line + 1, i
        elif ch in " \t\r":
            i += 1
        elif ch == "#":
            while i < n and source[i] != "\n":
                i += 1
        elif ch == '"':
            start, i = i, i + 1
            out: list[str] = []
            while True:
                if i >= n or source[i] == "\n":
                    raise fail("unterminated string", start)
                c = source[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    esc = source[i + 1] if i + 1 < n else ""
                    if esc not in _ESCAPES:
                        raise fail(f"unknown escape \\{esc}" if esc.strip() else "unknown escape", i)
                    out.append(_ESCAPES[esc])
                    i += 2
                    continue
                out.append(c)
                i += 1
            tokens.append(Token(Tok.STRING, "".join(out), line, start - line_start + 1))
        elif ch.isdigit() or (ch == "-" and i + 1 < n and source[i + 1].isdigit()):
            start, i = i, i + 1
            while i < n and (source[i].isdigit() or source[i] in "._"):
                i += 1
            text = source[start:i]
            try:
                value: float | int = float(text) if "." in text else int(text)
            except ValueError:
                raise fail(f"invalid number {text!r}", start) from None
            tokens.append(Token(Tok.NUMBER, text, line, start - line_start + 1, value))
        elif _is_word_start(ch):
            start, i = i, i + 1
            while i < n and _is_word_char(source[i]):
                i += 1
            tokens.append(Token(Tok.WORD, source[start:i], line, start - line_start + 1))
        elif ch in "=!<>":
            two = source[i : i + 2]
            if two in ("==", "!=", "<=", ">="):
                tokens.append(Token(Tok.OP, two, line, i - line_start + 1))
                i += 2
            elif ch in "<>":
                tokens.append(Token(Tok.OP, ch, line, i - line_start + 1))
                i += 1
            else:
                raise fail(f"unexpected {ch!r} (did you mean '{ch}='?)", i)
        elif ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], ch, line, i - line_start + 1))
            i += 1
        else:
            raise fail(f"unexpected character {ch!r}", i)
    tokens.append(Token(Tok.EOF, "", line, i - line_start + 1))
    return tokens
