from __future__ import annotations

from pathlib import Path

import numpy as np

from cisora_mesh.ml.classifier import KINDS, Head, kind_features, load_head, save_head


def _toy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    return x, y


def test_fit_is_deterministic_and_learns() -> None:
    x, y = _toy()
    w = np.ones(len(y), dtype=np.float32)
    a = Head.fit(x, y, w, hidden=8, steps=200, seed=3)
    b = Head.fit(x, y, w, hidden=8, steps=200, seed=3)
    assert np.array_equal(a.w1, b.w1) and a.b2 == b.b2
    accuracy = float(((a.predict_features(x) >= 0.5) == y).mean())
    assert accuracy > 0.95


def test_logistic_regression_variant() -> None:
    x, y = _toy()
    head = Head.fit(x, y, np.ones(len(y), dtype=np.float32), hidden=0, steps=300)
    assert head.w1.shape == (8, 0)
    assert float(((head.predict_features(x) >= 0.5) == y).mean()) > 0.95


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    x, y = _toy()
    head = Head.fit(x, y, np.ones(len(y), dtype=np.float32), hidden=4, steps=50)
    path = tmp_path / "h.npz"
    save_head(head, path, meta={"seed": 1})
    loaded = load_head(path)
    assert loaded.meta == {"seed": 1}
    assert np.allclose(loaded.predict_features(x), head.predict_features(x), atol=1e-2)  # float16 weights


def test_shipped_head_matches_the_embedding_and_kind_layout() -> None:
    head = load_head()
    assert head.input_dim == 384 + len(KINDS)
    assert head.meta["window"] == 128
    p = head.predict(np.zeros((3, 384), dtype=np.float32), "prompt")
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))


def test_unknown_kind_reads_as_prompt() -> None:
    assert np.array_equal(kind_features("tool_arguments"), kind_features("prompt"))
