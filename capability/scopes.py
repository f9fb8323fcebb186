"""Resource patterns and their subset relation.

Grammar (see docs/capability-tokens.md)::

    pattern   = scheme "://" segment "/" kind "/" segment
    scheme    = "mcp" | "a2a"
    kind      = "tools" | "resources" | "prompts"     (mcp)
              | "skills"                             (a2a)
    segment   = "*" | name | name "*"                (whole-segment wildcard, or a prefix wildcard)
    name      = 1*128 ( ALPHA / DIGIT / "." / "_" / "-" / "~" / ":" / "@" / "+" )

A *resource* (what a request names) is a pattern without wildcards. ``a ⊆ b`` is decided segment by segment, so
the check is exact, not a heuristic.
"""

from __future__ import annotations

import functools
import re
from typing import Final, NamedTuple

from capability.errors import InvalidResource

__all__ = ["ResourcePattern", "is_subpattern", "matches", "parse_pattern"]

_KINDS: Final = {"mcp": frozenset({"tools", "resources", "prompts"}), "a2a": frozenset({"skills"})}
_SEGMENT: Final = re.compile(r"\*|[A-Za-z0-9._~:@+-]{1,128}\*?")
_PATTERN: Final = re.compile(r"([a-z0-9]+)://([^/]+)/([a-z]+)/([^/]+)")


class ResourcePattern(NamedTuple):
    """A parsed resource pattern."""

    scheme: str
    authority: str
    kind: str
    name: str

    @property
    def concrete(self) -> bool:
        """True when the pattern has no wildcard (it names one resource)."""
        return not (self.authority.endswith("*") or self.name.endswith("*"))


@functools.lru_cache(maxsize=4096)
def parse_pattern(text: str) -> ResourcePattern:
    """Parse and validate a resource pattern.

    Raises:
        InvalidResource: the text does not follow the grammar.
    """
    m = _PATTERN.fullmatch(text) if len(text) <= 512 else None
    if m is None:
        raise InvalidResource("resource must look like mcp://<server>/tools/<tool> or a2a://<agent>/skills/<skill>")
    scheme, authority, kind, name = m.groups()
    if kind not in _KINDS.get(scheme, frozenset()):
        raise InvalidResource(f"unknown scheme/kind {scheme}://…/{kind}")
    if _SEGMENT.fullmatch(authority) is None or _SEGMENT.fullmatch(name) is None:
        raise InvalidResource("invalid characters or wildcard placement in resource pattern")
    return ResourcePattern(scheme, authority, kind, name)


def _seg_match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _seg_subset(child: str, parent: str) -> bool:
    if parent == "*":
        return True
    if parent.endswith("*"):
        body = child[:-1] if child.endswith("*") else child
        return body.startswith(parent[:-1])
    return child == parent


@functools.lru_cache(maxsize=8192)
def matches(pattern: str, resource: str) -> bool:
    """Whether the concrete ``resource`` is covered by ``pattern`` (both must parse; False otherwise)."""
    try:
        p = parse_pattern(pattern)
        r = parse_pattern(resource)
    except InvalidResource:
        return False
    return (
        r.concrete
        and p.scheme == r.scheme
        and p.kind == r.kind
        and _seg_match(p.authority, r.authority)
        and _seg_match(p.name, r.name)
    )


def is_subpattern(child: str, parent: str) -> bool:
    """Whether every resource matched by ``child`` is matched by ``parent``."""
    try:
        c = parse_pattern(child)
        p = parse_pattern(parent)
    except InvalidResource:
        return False
    return (
        c.scheme == p.scheme
        and c.kind == p.kind
        and _seg_subset(c.authority, p.authority)
        and _seg_subset(c.name, p.name)
    )
