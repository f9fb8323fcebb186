"""Argument constraints over JSON arguments addressed by JSON Pointer (RFC 6901).

Semantics (fail closed):

* Every constraint except :class:`NotPresent` requires the pointer to resolve. A missing member, an out-of-range or
  non-numeric array index, ``-``, or a path that runs through a scalar all count as *missing*, so the constraint fails.
* A value of the wrong JSON type fails: :class:`Prefix`, :class:`Glob` and :class:`Regex` need a string,
  :class:`Range` a finite number (``true``/``false`` are not numbers), :class:`MaxLength` a string (code points) or an
  array (items).
* :class:`Exact` and :class:`OneOf` compare JSON values: numbers by value (``1`` equals ``1.0``), booleans are not
  numbers, objects by members, arrays by items.
* Several constraints on one pointer are a conjunction.

Subset (``implies(child, parent)``) is *sound, not complete*: it returns True only when it can prove that every
argument accepted by ``child`` is accepted by ``parent``; anything it cannot prove (for example two different
regular expressions) is refused.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import msgspec
import re2

from capability.errors import CanonicalizationError, InvalidConstraint
from capability.jcs import canonicalize

__all__ = [
    "Constraint",
    "Exact",
    "Glob",
    "MaxLength",
    "NotPresent",
    "OneOf",
    "Prefix",
    "Range",
    "Regex",
    "check_all",
    "implies",
    "implies_all",
    "resolve",
    "validate_pointer",
]

MAX_PATTERN_LEN: Final = 256
MAX_VALUES: Final = 64
_POINTER: Final = re.compile(r"(/([^~/]|~[01])*)*")
_INDEX: Final = re.compile(r"0|[1-9][0-9]{0,9}")
_MISSING: Final = object()

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 1 << 20


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="op"):
    pass


def _check_json(value: Any) -> None:
    try:
        canonicalize(value)
    except CanonicalizationError as exc:
        raise InvalidConstraint("constraint value is not canonical JSON") from exc


class Exact(_Base, tag="exact", frozen=True):
    """The argument equals ``value`` (JSON equality)."""

    value: Any

    def __post_init__(self) -> None:
        _check_json(self.value)


class OneOf(_Base, tag="one_of", frozen=True):
    """The argument equals one of ``values``."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.values) <= MAX_VALUES:
            raise InvalidConstraint(f"one_of needs 1..{MAX_VALUES} values")
        _check_json(list(self.values))


class Prefix(_Base, tag="prefix", frozen=True):
    """The argument is a string starting with ``value``."""

    value: str


class Glob(_Base, tag="glob", frozen=True):
    r"""The whole string matches ``pattern``: ``*`` any run of characters, ``?`` one character, ``\`` escapes."""

    pattern: str

    def __post_init__(self) -> None:
        if len(self.pattern) > MAX_PATTERN_LEN:
            raise InvalidConstraint("glob too long")
        _glob_regex(self.pattern)


class Regex(_Base, tag="regex", frozen=True):
    """The whole string matches the RE2 (linear-time) ``pattern``."""

    pattern: str

    def __post_init__(self) -> None:
        if len(self.pattern) > MAX_PATTERN_LEN:
            raise InvalidConstraint("regex too long")
        _re2(self.pattern)


class Range(_Base, tag="range", frozen=True):
    """A finite number with ``min <= x <= max`` (either bound optional)."""

    min: int | float | None = None
    max: int | float | None = None

    def __post_init__(self) -> None:
        for bound in (self.min, self.max):
            if bound is not None and (isinstance(bound, bool) or not math.isfinite(bound)):
                raise InvalidConstraint("range bounds must be finite numbers")
        if self.min is None and self.max is None:
            raise InvalidConstraint("range needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidConstraint("range min > max")


class MaxLength(_Base, tag="max_length", frozen=True):
    """A string of at most ``n`` code points, or an array of at most ``n`` items."""

    n: int

    def __post_init__(self) -> None:
        if not 0 <= self.n <= 2**31:
            raise InvalidConstraint("max_length out of range")


class NotPresent(_Base, tag="not_present", frozen=True):
    """The pointer must not resolve."""


Constraint = Exact | OneOf | Prefix | Glob | Regex | Range | MaxLength | NotPresent


@functools.lru_cache(maxsize=1024)
def _re2(pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        raise InvalidConstraint("regex rejected by RE2") from exc


def _glob_parts(pattern: str) -> list[tuple[Literal["lit", "*", "?"], str]]:
    parts: list[tuple[Literal["lit", "*", "?"], str]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise InvalidConstraint("glob ends with a lone backslash")
            parts.append(("lit", pattern[i + 1]))
            i += 2
            continue
        parts.append(("*", ch) if ch == "*" else ("?", ch) if ch == "?" else ("lit", ch))
        i += 1
    return parts


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> Any:
    out = ["(?s)"]
    for kind, ch in _glob_parts(pattern):
        if kind == "*":
            out.append(".*")
        elif kind == "?":
            out.append(".")
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):x}}}")
    return _re2("".join(out))


def _glob_literal_prefix(pattern: str) -> str:
    prefix = []
    for kind, ch in _glob_parts(pattern):
        if kind != "lit":
            break
        prefix.append(ch)
    return "".join(prefix)


def validate_pointer(pointer: object) -> None:
    """Raise InvalidConstraint unless ``pointer`` is an RFC 6901 JSON Pointer."""
    if not isinstance(pointer, str) or len(pointer) > 512 or _POINTER.fullmatch(pointer) is None:
        raise InvalidConstraint("argument key must be an RFC 6901 JSON Pointer")


def resolve(doc: Any, pointer: str) -> Any:
    """Resolve ``pointer`` in ``doc``; return a private sentinel when it does not resolve."""
    if pointer == "":
        return doc
    cur = doc
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict):
            if token not in cur:
                return _MISSING
            cur = cur[token]
        elif isinstance(cur, list):
            if _INDEX.fullmatch(token) is None or int(token) >= len(cur):
                return _MISSING
            cur = cur[int(token)]
        else:
            return _MISSING
    return cur


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans distinct from numbers, no coercion between types."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) or a is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def check(c: Constraint, value: Any) -> bool:
    """Whether ``value`` (or the missing sentinel) satisfies ``c``."""
    if isinstance(c, NotPresent):
        return value is _MISSING
    if value is _MISSING:
        return False
    if isinstance(c, Exact):
        return json_equal(value, c.value)
    if isinstance(c, OneOf):
        return any(json_equal(value, v) for v in c.values)
    if isinstance(c, Range):
        return _is_number(value) and (c.min is None or value >= c.min) and (c.max is None or value <= c.max)
    if isinstance(c, MaxLength):
        return isinstance(value, str | list) and len(value) <= c.n
    if not isinstance(value, str):
        return False
    if isinstance(c, Prefix):
        return value.startswith(c.value)
    compiled = _glob_regex(c.pattern) if isinstance(c, Glob) else _re2(c.pattern)
    try:
        return compiled.fullmatch(value) is not None
    except UnicodeEncodeError:  # lone surrogates cannot be handed to RE2
        return False


def check_all(rules: Mapping[str, Sequence[Constraint]], args: Any) -> bool:
    """Whether ``args`` satisfies every constraint of every pointer."""
    for pointer, cs in rules.items():
        value = resolve(args, pointer)
        for c in cs:
            if not check(c, value):
                return False
    return True


def implies(child: Constraint, parent: Constraint) -> bool:
    """Sound subset test: True only if every value accepted by ``child`` is accepted by ``parent``."""
    if isinstance(parent, NotPresent) or isinstance(child, NotPresent):
        return isinstance(parent, NotPresent) and isinstance(child, NotPresent)
    if isinstance(child, Exact):
        return check(parent, child.value)
    if isinstance(child, OneOf):
        return all(check(parent, v) for v in child.values)
    if isinstance(parent, Prefix):
        if isinstance(child, Prefix):
            return child.value.startswith(parent.value)
        if isinstance(child, Glob):
            return _glob_literal_prefix(child.pattern).startswith(parent.value)
        return False
    if isinstance(parent, Glob):
        if isinstance(child, Glob):
            return child.pattern == parent.pattern
        if isinstance(child, Prefix):
            # parent "<literal>*" accepts every string that starts with <literal>
            lit = _glob_literal_prefix(parent.pattern)
            parts = _glob_parts(parent.pattern)
            return parts[-1:] == [("*", "*")] and len(parts) == len(lit) + 1 and child.value.startswith(lit)
        return False
    if isinstance(parent, Regex):
        return isinstance(child, Regex) and child.pattern == parent.pattern
    if isinstance(parent, Range):
        return (
            isinstance(child, Range)
            and (parent.min is None or (child.min is not None and child.min >= parent.min))
            and (parent.max is None or (child.max is not None and child.max <= parent.max))
        )
    if isinstance(parent, MaxLength):
        return isinstance(child, MaxLength) and child.n <= parent.n
    return False  # parent is Exact/OneOf and child is not an enumeration


def implies_all(child: Mapping[str, Sequence[Constraint]], parent: Mapping[str, Sequence[Constraint]]) -> bool:
    """Every parent constraint must be implied by some child constraint on the same pointer."""
    for pointer, pcs in parent.items():
        ccs = child.get(pointer, ())
        for p in pcs:
            if not any(implies(c, p) for c in ccs):
                return False
    return True
