"""Detection metrics with confidence intervals (used by `bench/detection.py` and the evaluation command).

Definitions follow the dev data's README: at the decision, `block`, `review` and `redact` are positive; AUC and
TPR at a fixed FPR come from the score; every rate carries a 95% Wilson score interval (Wilson 1927), which stays
inside [0, 1] and behaves at rates near 0 or 1, unlike the normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Rate:
    hits: int
    total: int

    @property
    def value(self) -> float:
        return self.hits / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.total)

    def __str__(self) -> str:
        if not self.total:
            return "n/a"
        low, high = self.interval
        return f"{self.value:.3f} [{low:.3f}, {high:.3f}] ({self.hits}/{self.total})"


def wilson(hits: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion."""
    if total == 0:
        return (0.0, 1.0)
    p = hits / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        average_rank = (i + 1 + j) / 2  # ranks are 1-based; tied scores share the mean rank
        rank_sum += average_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def tpr_at_fpr(scores: Sequence[float], labels: Sequence[int], max_fpr: float) -> tuple[float, float]:
    """The best TPR whose FPR does not exceed `max_fpr`, and the score threshold that gives it (score >= t)."""
    negatives = sorted((s for s, y in zip(scores, labels, strict=True) if not y), reverse=True)
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    if not negatives or not positives:
        return float("nan"), float("nan")
    allowed = math.floor(max_fpr * len(negatives))
    # Threshold just above the (allowed+1)-th highest negative score keeps at most `allowed` negatives above it.
    if allowed >= len(negatives):
        threshold = min(negatives)
    else:
        threshold = math.nextafter(negatives[allowed], math.inf)
    return sum(1 for s in positives if s >= threshold) / len(positives), threshold
