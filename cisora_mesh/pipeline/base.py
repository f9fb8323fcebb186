"""The contract between the runner and the detection stages.

A stage is any object with a `name` and a `run(ctx)` method that appends `Finding`s to `ctx.findings`. Stages are
composed by `pipeline.runner.Pipeline`, which times each one and applies the fail-open/fail-closed rule when one
raises. The normalisation stage runs first and fills `ctx.texts`; every later stage reads those texts.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cisora_mesh.events import Content, ContentKind, Event, Finding

if TYPE_CHECKING:
    from cisora_mesh.config import TenantPolicy


@dataclass(slots=True)
class ScanText:
    """A content prepared for matching.

    `match_text` is what detectors search: NFKC-normalised, confusables folded to ASCII, invisible characters and
    ANSI escapes removed. `offsets` maps it back to `content.text` as piecewise-contiguous segments (see
    `OffsetMap`), or is `None` when both texts are identical (the ASCII fast path). Text decoded from Unicode tag
    characters is its own `ScanText` whose offsets point into the tag run it came from.
    """

    content: Content
    match_text: str
    offsets: OffsetMap | None = None
    derived: str | None = None  # how this text was derived ("unicode_tags", ...), None for the content itself
    # Results of shared pattern-set passes over `match_text` (see `_regex.SharedSet`), so stages share one pass.
    set_hits: dict[object, list[int]] = field(default_factory=dict)

    @property
    def kind(self) -> ContentKind:
        return self.content.kind

    @property
    def location(self) -> str:
        return self.content.location

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map a `[start, end)` span of `match_text` back to `content.text`."""
        if self.offsets is None:
            return start, end
        if end <= start:
            position = self.offsets.original(start)
            return position, position
        return self.offsets.original(start), self.offsets.original(end - 1) + 1


class OffsetMap:
    """Maps positions of a derived text back to its source, recorded as it is built.

    The derived text is a sequence of segments; inside a segment, consecutive characters come from consecutive
    source characters. A new segment starts only where that stops being true (a character was removed, or one
    source character became several), so copying long unchanged runs costs nothing per character.
    """

    __slots__ = ("_next_source", "_segment_sources", "_segment_starts", "length")

    def __init__(self) -> None:
        self._segment_starts: list[int] = [0]
        self._segment_sources: list[int] = [0]
        self._next_source = 0
        self.length = 0

    def _start_segment(self, source: int) -> None:
        if self._segment_starts[-1] == self.length:
            self._segment_sources[-1] = source  # an empty segment: replace it
        else:
            self._segment_starts.append(self.length)
            self._segment_sources.append(source)

    def copy(self, source: int, count: int) -> None:
        """`count` characters taken unchanged from `source` onwards."""
        if count <= 0:
            return
        if source != self._next_source:
            self._start_segment(source)
        self.length += count
        self._next_source = source + count

    def piece(self, source: int, text: str) -> None:
        """`text` produced from the one source character at `source` (may be empty, one or several characters)."""
        if not text:
            return
        self.copy(source, 1)
        for _ in range(len(text) - 1):
            self._start_segment(source)  # every extra character maps to the same source character
            self.length += 1
            self._next_source = source + 1

    def original(self, position: int) -> int:
        k = bisect_right(self._segment_starts, position) - 1
        return self._segment_sources[k] + (position - self._segment_starts[k])


@dataclass(slots=True)
class ScanContext:
    """Everything the stages share while evaluating one event."""

    event: Event
    policy: TenantPolicy
    full: bool = False  # run the async stages synchronously (`--stages full`)
    texts: list[ScanText] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    score: float = 0.0  # highest injection/poisoning probability raised by any stage

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)


@runtime_checkable
class Stage(Protocol):
    """One detection step. `run` must not block on I/O: it is on the inline path."""

    name: str

    def run(self, ctx: ScanContext) -> None: ...


StageFactory = Callable[[], Stage]


def raise_score(ctx: ScanContext, probability: float) -> None:
    """Record an injection/poisoning probability; the decision's `score` is the highest one raised."""
    if probability > ctx.score:
        ctx.score = min(1.0, probability)
