"""The contract between the runner and the detection stages.

A stage is any object with a `name` and a `run(ctx)` method that appends `Finding`s to `ctx.findings`. Stages are
composed by `pipeline.runner.Pipeline`, which times each one and applies the fail-open/fail-closed rule when one
raises. The normalisation stage runs first and fills `ctx.texts`; every later stage reads those texts.
"""

from __future__ import annotations

from array import array
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
    ANSI escapes removed. `offsets[i]` is the index in `content.text` of `match_text[i]` (with one extra entry for
    the end), or `None` when both are identical (the ASCII fast path). Text decoded from Unicode tag characters is
    its own `ScanText` whose offsets all point into the tag run it came from.
    """

    content: Content
    match_text: str
    offsets: array[int] | None = None
    derived: str | None = None  # how this text was derived ("unicode_tags", ...), None for the content itself

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
            return self.offsets[start], self.offsets[start]
        return self.offsets[start], self.offsets[end - 1] + 1


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
