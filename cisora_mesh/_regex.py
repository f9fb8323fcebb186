"""Linear-time regular expressions (RE2) and a one-pass multi-pattern matcher.

Every pattern the pipeline runs, built-in or user-supplied, goes through RE2: its automata run in time linear in
the input, so no pattern (`(a+)+$`, `(x+x+)+y`, ...) can hang a worker. Backreferences and lookaround are not
supported and are rejected when a pattern is saved, with RE2's own message.

`PatternSet` compiles many patterns into one `re2.Set`: a single DFA pass over the text says which patterns match
at all (clean text, the common case, costs one pass), and only those are re-run to find their spans.
`SharedSet` goes one step further for stages that read the same texts (signatures and DLP): their tables are one
set, so one pass per text answers both.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from typing import Final, Protocol

import re2

from cisora_mesh.errors import PatternError

MAX_PATTERN_LENGTH: Final = 1024
# RE2 compiles to a bounded automaton; this caps the memory one pattern (or one set) may use.
_MAX_MEM: Final = 64 << 20


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would otherwise print parse errors (user input) to stderr
    options.max_mem = _MAX_MEM
    return options


def compile_linear(pattern: str, *, name: str = "pattern", as_bytes: bool = False) -> re2._Regexp:
    """Compile `pattern` with RE2 or raise `PatternError` naming the pattern and the reason.

    `as_bytes`: the returned regex matches UTF-8 bytes (offsets are byte offsets); validation is the same.
    """
    if not isinstance(pattern, str) or not pattern:  # type: ignore[redundant-expr]  # callers pass config data
        raise PatternError(f"{name}: regex must be a non-empty string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"{name}: regex is {len(pattern)} characters long (limit {MAX_PATTERN_LENGTH})")
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"{name}: invalid regex: {reason}") from None
    if compiled.search("") is not None:
        raise PatternError(f"{name}: regex matches the empty string, which would flag every text")
    return re2.compile(pattern.encode(), _options()) if as_bytes else compiled


# The binding's public `search`/`finditer` wrap each RE2 call in a generator and a match object whose every
# `start()`/`end()` asks RE2 for its group count again; on the inline path that costs as much as matching a short
# text. The spans functions below call the compiled object's `Match` directly on bytes (offsets need no
# conversion), and fall back to the public API where that object is not there (another binding version).
_UNANCHORED: Final = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _raw(regex: re2._Regexp) -> object | None:
    return getattr(regex, "_regexp", None) if _UNANCHORED is not None else None


def first_span(regex: re2._Regexp, subject: str | bytes, pos: int = 0) -> tuple[int, int] | None:
    """The leftmost match of `regex` in `subject` at or after `pos` as `(start, end)`, or None. Offsets index
    `subject`; the text before `pos` still counts as context (for `\b`)."""
    raw = _raw(regex)
    if raw is None or not isinstance(subject, bytes):
        match = regex.search(subject, pos)
        return None if match is None else (match.start(), match.end())
    start, end = raw.Match(_UNANCHORED, subject, pos, len(subject))[0]  # type: ignore[attr-defined]
    return None if start < 0 else (start, end)


def iter_spans(
    regex: re2._Regexp, subject: str | bytes, group: int = 0, pos: int = 0
) -> Iterator[tuple[int, int, int, int]]:
    """`(start, end, group_start, group_end)` of each non-overlapping match from `pos` on, as `finditer` finds them.

    A group that did not take part in a match has offsets (-1, -1).
    """
    raw = _raw(regex)
    if raw is None or not isinstance(subject, bytes):
        for match in regex.finditer(subject, pos):
            group_start, group_end = match.span(group)
            yield match.start(), match.end(), group_start, group_end
        return
    size = len(subject)
    while pos <= size:
        spans = raw.Match(_UNANCHORED, subject, pos, size)  # type: ignore[attr-defined]
        start, end = spans[0]
        if start < 0:
            return
        group_start, group_end = spans[group]
        yield start, end, group_start, group_end
        # An empty match must not stall the scan (built-in and custom patterns reject empty matches anyway).
        pos = end if end > start else end + 1


_ANCHOR_START: Final = getattr(getattr(re2, "_Anchor", None), "ANCHOR_START", None)


def iter_spans_seeking(
    regex: re2._Regexp, data: bytes, byte: int, run: bytes, group: int = 0, pos: int = 0
) -> Iterator[tuple[int, int, int, int]]:
    """`iter_spans(regex, data, group)` for a pattern shaped `[run]+ <byte> <rest>`, found by seeking to `byte`.

    RE2 skips ahead only to a *leading* literal; a pattern that opens with a character class (an e-mail address's
    local part) makes its DFA walk every byte of the text. When every match holds `byte` exactly once, preceded
    only by characters of `run` (which does not contain `byte`), each match starts where the run of `run`
    characters before one of the `byte`s starts, so `bytes.find` (memchr) visits the candidates and RE2 only
    checks each one, anchored. The caller vouches for the shape (`DlpStage` tests it against `iter_spans`).
    """
    raw = _raw(regex)
    if raw is None or _ANCHOR_START is None:
        yield from iter_spans(regex, data, group, pos)
        return
    size = len(data)
    while (at := data.find(byte, pos)) >= 0:
        # The run before `byte` back to `pos` (finditer never starts a match before the previous one's end).
        before = data[pos:at]
        start = at - (len(before) - len(before.rstrip(run)))
        spans = raw.Match(_ANCHOR_START, data, start, size) if start < at else None  # type: ignore[attr-defined]
        if spans is None or spans[0][0] < 0:
            pos = at + 1  # no match holds this byte; the next one's run cannot reach back past it
            continue
        end = spans[0][1]
        group_start, group_end = spans[group]
        yield start, end, group_start, group_end
        pos = end if end > start else end + 1


def match_subject(text: str) -> str | bytes:
    """What to hand RE2 for `text`: ASCII text as bytes, where byte offsets are character offsets.

    Matching bytes skips the binding's per-match UTF-8-to-character offset conversion, which grows with the text and
    dominates when there are many matches.
    """
    return text.encode("ascii") if text.isascii() else text


class PatternSet:
    """Many patterns matched in (close to) one pass.

    Patterns are identified by their position in `patterns`. `find(text)` yields `(index, start, end)` for every
    non-overlapping match of every pattern, in pattern order, with character offsets.
    """

    def __init__(
        self, patterns: Sequence[str], *, names: Sequence[str] | None = None, matcher: SetSlice | None = None
    ) -> None:
        """`matcher`: these patterns' slice of a set shared with other tables, instead of a set of their own."""
        self._names = list(names) if names is not None else [f"pattern {i}" for i in range(len(patterns))]
        # Each pattern alone first: a bad one is reported by name, with RE2's reason.
        self._compiled = [compile_linear(p, name=n) for p, n in zip(patterns, self._names, strict=True)]
        if matcher is not None and len(matcher) != len(patterns):
            raise ValueError("matcher slice does not match the patterns")
        self.matcher = matcher if matcher is not None else SharedSet([patterns]).slice(0)

    def __len__(self) -> int:
        return len(self._compiled)

    def matching(self, text: str) -> list[int]:
        """Indices of the patterns that match somewhere in `text` (one DFA pass)."""
        return self.matcher.matching(text, {})

    def regex(self, index: int) -> re2._Regexp:
        """The compiled pattern at `index` (to find its spans after `matching` reported it)."""
        return self._compiled[index]

    def find(self, text: str) -> Iterator[tuple[int, int, int]]:
        indices = self.matching(text)
        if not indices:
            return
        subject = match_subject(text)
        for index in indices:
            for start, end, _, _ in iter_spans(self._compiled[index], subject):
                yield index, start, end


class Scannable(Protocol):
    """A text with the memo of the set passes over it (the pipeline's `ScanText`)."""

    @property
    def match_text(self) -> str: ...

    @property
    def set_hits(self) -> MutableMapping[object, list[int]]: ...


# Joins the texts of one batch for a single pass. The line breaks end every built-in pattern that cannot span lines
# and give `\b`, `\s` and multi-line `^`/`$` the answer they give at a text's edge; the '.' stands in for a text's
# start in rules anchored to "start of text or end of sentence". Its only duty is that a pattern matching inside
# one text also matches the joined batch: tests/core/test_regex.py checks it for every built-in pattern (their set is
# built `batchable`; a set of other patterns is not, as `^dog` shows).
BATCH_SEPARATOR: Final = "\n.\n"

# `SharedSet.earliest_start`: unions kept per set, combinations remembered while waiting for a second sight, and the
# shortest text worth a union search (below it the per-pattern searches are about as cheap as the union's).
_MAX_UNIONS: Final = 256
_MAX_SEEN: Final = 4096
_UNION_MIN_TEXT: Final = 1024
# Compiling a union takes ~1 ms for 4 patterns, ~3.5 ms for 16 and ~10 ms for 32 (it happens on the inline path):
# a text that many patterns hit is rare and searches from 0 instead.
_MAX_UNION_PATTERNS: Final = 16


class SharedSet:
    """Several pattern tables compiled into one RE2 set, matched once per text for all of them.

    Each table's owner gets a `SetSlice` and sees indices into its own table only. The pass over a text is
    memoised in a mapping the caller owns for the lifetime of that text (the pipeline keeps one per scanned
    text), so the first slice asked pays for the pass and the others read the result.
    """

    def __init__(self, tables: Sequence[Sequence[str]], *, batchable: bool = False) -> None:
        """`batchable`: the caller vouches that every pattern matching a text also matches that text joined with
        others by `BATCH_SEPARATOR` (no `^`/`$` outside multi-line mode, ...), which lets `prime` batch."""
        self._batchable = batchable
        self._bounds: list[tuple[int, int]] = []
        self._set: re2.Set | None = None
        self._patterns = [pattern for table in tables for pattern in table]
        self._unions: dict[tuple[int, ...], re2._Regexp | None] = {}  # see `earliest_start`
        self._seen: set[tuple[int, ...]] = set()  # combinations seen once, waiting for a second sight
        self._start_key = object()  # this set's entry for `earliest_start` in a text's memo
        start = 0
        for table in tables:
            self._bounds.append((start, start + len(table)))
            start += len(table)
        if start == 0:
            return
        self._set = re2.Set.SearchSet(_options())
        for table in tables:
            for pattern in table:
                if self._set.Add(pattern) < 0:
                    raise PatternError(f"pattern rejected by the pattern set: {pattern[:60]!r}")
        try:
            self._set.Compile()
        except re2.error:
            raise PatternError("the patterns together exceed the regex memory budget") from None

    def slice(self, table: int) -> SetSlice:
        start, stop = self._bounds[table]
        return SetSlice(self, start, stop)

    def match(self, subject: str | bytes, memo: MutableMapping[object, list[int]]) -> list[int]:
        """Sorted indices (over all tables) of the patterns matching `subject`, memoised in `memo`."""
        hits = memo.get(self)
        if hits is None:
            found = self._set.Match(subject) if self._set is not None else None
            hits = memo[self] = sorted(found) if found else []
        return hits

    def earliest_start(self, data: bytes, memo: MutableMapping[object, list[int]]) -> int:
        """Where the earliest match of any pattern in `data` starts (0 when not worth knowing), memoised in `memo`.

        Every match of every pattern that hit starts there or later, so the searches for their spans can start
        there instead of walking the same prefix once per pattern: on a 4 KB text whose attack sits in the middle,
        eight such walks of 2 KB each. One search with the union of the patterns that hit finds it. A union (of at
        most `_MAX_UNION_PATTERNS`) is compiled, in 1-4 ms, the second time its combination of hits is seen, for at
        most `_MAX_UNIONS` combinations per set, so a one-off combination costs nothing and hostile traffic cannot
        make a worker compile without end; other combinations search from 0, as without this.
        """
        cached = memo.get(self._start_key)
        if cached is not None:
            return cached[0]
        hits = self.match(data, memo)
        start = 0
        if 1 < len(hits) <= _MAX_UNION_PATTERNS and len(data) >= _UNION_MIN_TEXT:
            union = self._union(tuple(hits))
            if union is not None:
                span = first_span(union, data)
                start = span[0] if span is not None else 0
        memo[self._start_key] = [start]
        return start

    def _union(self, hits: tuple[int, ...]) -> re2._Regexp | None:
        union = self._unions.get(hits)
        if union is not None or hits in self._unions or len(self._unions) >= _MAX_UNIONS:
            return union
        if hits not in self._seen:
            if len(self._seen) >= _MAX_SEEN:
                self._seen.clear()
            self._seen.add(hits)
            return None
        try:
            union = re2.compile("|".join(f"(?:{self._patterns[i]})" for i in hits), _options())
        except re2.error:
            union = None  # over the memory budget: this combination keeps searching from 0
        self._unions[hits] = union
        return union

    def prime(self, texts: Sequence[Scannable]) -> None:
        """One pass for a batch of texts that are usually clean (the string fields of one JSON body).

        When no pattern matches the joined batch, none matches any text in it: every text's memo records "no
        hits" and costs no pass of its own. When something matches, the texts are matched one by one as usual
        (the joined pass was one short extra pass).
        """
        if not self._batchable or len(texts) < 2 or self._set is None or self in texts[0].set_hits:
            return
        if self._set.Match(BATCH_SEPARATOR.join([t.match_text for t in texts])):
            return
        for text in texts:
            text.set_hits[self] = []


class SetSlice:
    """One table's view of a `SharedSet`."""

    __slots__ = ("_shared", "_start", "_stop")

    def __init__(self, shared: SharedSet, start: int, stop: int) -> None:
        self._shared, self._start, self._stop = shared, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def matching(self, subject: str | bytes, memo: MutableMapping[object, list[int]]) -> list[int]:
        """Indices into this table of the patterns matching `subject` (one shared pass per memo)."""
        start, stop = self._start, self._stop
        return [i - start for i in self._shared.match(subject, memo) if start <= i < stop]

    def prime(self, texts: Sequence[Scannable]) -> None:
        """See `SharedSet.prime` (the pass covers every table of the shared set)."""
        self._shared.prime(texts)

    def earliest_start(self, data: bytes, memo: MutableMapping[object, list[int]]) -> int:
        """See `SharedSet.earliest_start` (over the hits of every table of the shared set)."""
        return self._shared.earliest_start(data, memo)
