from __future__ import annotations

import math

import pytest

from cisora_mesh.metrics import Rate, auc, tpr_at_fpr, wilson


def test_wilson_known_values() -> None:
    # Reference values from the closed form (Wilson 1927), computed independently.
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_auc_perfect_inverted_and_ties() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def test_tpr_at_fpr_never_exceeds_the_fpr_budget() -> None:
    negatives = [i / 100 for i in range(100)]
    positives = [0.5, 0.95, 0.99, 1.0]
    scores = negatives + positives
    labels = [0] * 100 + [1] * 4
    tpr, threshold = tpr_at_fpr(scores, labels, 0.01)
    assert sum(1 for s in negatives if s >= threshold) <= 1
    assert tpr == 0.5  # one negative (0.99) may pass: positives at or above 0.98+ are 0.99 and 1.0
    tpr0, _ = tpr_at_fpr(scores, labels, 0.0)
    assert tpr0 == 0.25  # 0.99 is the top negative: only scores above it count


def test_rate_formats_value_and_interval() -> None:
    assert str(Rate(1, 4)).startswith("0.250 [")
    assert str(Rate(0, 0)) == "n/a"
