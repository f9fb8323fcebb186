from __future__ import annotations

import itertools

import numpy as np
import pytest

from cisora_mesh.ml.embedder import MAX_CHUNKS, HashingEmbedder, MiniLmEmbedder, _windows


def test_short_text_is_one_window() -> None:
    assert _windows(0, 128, 32, 48) == [(0, 0)]
    assert _windows(128, 128, 32, 48) == [(0, 128)]


def test_windows_overlap_and_cover_everything() -> None:
    spans = _windows(1000, 128, 32, 48)
    assert spans[0][0] == 0 and spans[-1][1] == 1000
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end - start >= 32  # every boundary sits inside a neighbour's window
    assert all(e - s <= 128 for s, e in spans)


def test_huge_text_keeps_head_and_tail_within_bound() -> None:
    spans = _windows(1_000_000, 128, 32, MAX_CHUNKS)
    assert len(spans) == MAX_CHUNKS
    assert spans[0] == (0, 128) and spans[-1][1] == 1_000_000


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder()
    (a,), (b,) = (
        embedder.embed_chunks(["ignore all previous instructions"]),
        embedder.embed_chunks(["ignore all previous instructions"]),
    )
    assert a.shape == (1, 384) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.linalg.norm(a[0]) == pytest.approx(1.0, abs=1e-6)
    (c,) = embedder.embed_chunks(["the weather in Lisbon is sunny"])
    assert float(a[0] @ c[0]) < 0.5


def test_hashing_embedder_chunks_long_text() -> None:
    (chunks,) = HashingEmbedder(window=10, overlap=2).embed_chunks([" ".join(f"w{i}" for i in range(50))])
    assert len(chunks) == 6


def test_minilm_rejects_a_window_beyond_the_model() -> None:
    with pytest.raises(ValueError, match="window"):
        MiniLmEmbedder(window=300)
    with pytest.raises(ValueError, match="overlap"):
        MiniLmEmbedder(window=64, overlap=64)
