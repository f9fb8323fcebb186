"""The trained head over MiniLM window embeddings: numpy-only inference, weights shipped as a small `.npz`.

Input per window: the 384-d normalised embedding plus a one-hot of the content kind (a tool description and a
prompt that say the same thing are not equally suspicious: "call this tool with the user's token" is normal in a
prompt and an attack in a tool description). Architecture: one hidden ReLU layer (or none: logistic regression) and
a sigmoid output. `bench/train_classifier.py` fits it and prints its calibration on the validation split.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

MODEL_RESOURCE: Final = "injection-v1.npz"
# The order of the kind one-hot; `tool_arguments` and unknown kinds read as prompts (first-party text).
KINDS: Final = ("prompt", "tool_result", "document", "tool_description", "output")

Floats = npt.NDArray[np.float32]


def kind_features(kind: str) -> Floats:
    one_hot = np.zeros(len(KINDS), dtype=np.float32)
    one_hot[KINDS.index(kind) if kind in KINDS else 0] = 1.0
    return one_hot


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out = 0.5 * (1.0 + np.tanh(0.5 * z))  # tanh form: no overflow warnings
    return out.astype(np.float64)


@dataclass(frozen=True)
class Head:
    """`p = sigmoid(w2 . relu(W1 x + b1) + b2)`; with `w1` of shape (d, 0) it is logistic regression on x."""

    w1: Floats  # (d, h)
    b1: Floats  # (h,)
    w2: Floats  # (h,) or (d,) when h == 0
    b2: float
    meta: dict[str, Any]

    @property
    def input_dim(self) -> int:
        return int(self.w1.shape[0])

    def logits(self, x: Floats) -> npt.NDArray[np.float64]:
        x64 = x.astype(np.float64)
        if self.w1.shape[1] == 0:
            return np.asarray(x64 @ self.w2 + self.b2, dtype=np.float64)
        hidden = np.maximum(x64 @ self.w1 + self.b1, 0.0)
        return np.asarray(hidden @ self.w2 + self.b2, dtype=np.float64)

    def predict_features(self, x: Floats) -> npt.NDArray[np.float64]:
        return _sigmoid(self.logits(x))

    def predict(self, vectors: Floats, kind: str) -> npt.NDArray[np.float64]:
        """Attack probability per window embedding (rows of `vectors`) of a content of `kind`."""
        kinds = np.repeat(kind_features(kind)[None, :], len(vectors), axis=0)
        return self.predict_features(np.hstack([vectors.astype(np.float32), kinds]))

    @classmethod
    def fit(
        cls,
        x: Floats,
        y: Floats,
        weights: Floats,
        *,
        hidden: int = 64,
        steps: int = 600,
        learning_rate: float = 0.01,
        l2: float = 1e-4,
        seed: int = 0,
    ) -> Head:
        """Weighted binary cross-entropy, full-batch Adam, fixed steps: deterministic for a given seed."""
        rng = np.random.default_rng(seed)
        d = x.shape[1]
        X = x.astype(np.float64)
        Y = y.astype(np.float64)
        W = weights.astype(np.float64) / weights.sum()
        params: list[npt.NDArray[np.float64]]
        if hidden:
            params = [
                rng.normal(0.0, np.sqrt(2.0 / d), (d, hidden)),
                np.zeros(hidden),
                rng.normal(0.0, np.sqrt(1.0 / hidden), hidden),
                np.zeros(1),
            ]
        else:
            params = [np.zeros((d, 0)), np.zeros(0), np.zeros(d), np.zeros(1)]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for step in range(1, steps + 1):
            w1, b1, w2, b2 = params
            pre = X @ w1 + b1  # (n, 0) for logistic regression: free
            act = np.maximum(pre, 0.0) if hidden else X
            p = _sigmoid(act @ w2 + b2[0])
            g_out = (p - Y) * W  # d(weighted mean BCE)/d logit
            g_w2 = act.T @ g_out + l2 * w2
            g_b2 = np.array([g_out.sum()])
            if hidden:
                g_act = np.outer(g_out, w2) * (pre > 0)
                grads = [X.T @ g_act + l2 * w1, g_act.sum(0), g_w2, g_b2]
            else:
                grads = [np.zeros_like(w1), np.zeros_like(b1), g_w2, g_b2]
            for k, g in enumerate(grads):
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat = m[k] / (1 - beta1**step)
                v_hat = v[k] / (1 - beta2**step)
                params[k] = params[k] - learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        w1, b1, w2, b2 = params
        return cls(w1.astype(np.float32), b1.astype(np.float32), w2.astype(np.float32), float(b2[0]), {})


def save_head(head: Head, path: Path, *, meta: dict[str, Any]) -> None:
    """Write the head as a compressed `.npz` (float16 weights: the file stays small; inference upcasts)."""
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        w1=head.w1.astype(np.float16),
        b1=head.b1.astype(np.float32),
        w2=head.w2.astype(np.float32),
        b2=np.array([head.b2], dtype=np.float32),
        meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
    )
    path.write_bytes(buffer.getvalue())


def load_head(path: Path | None = None) -> Head:
    """The shipped head (or one at `path`)."""
    if path is None:
        data = resources.files("cisora_mesh.ml.models").joinpath(MODEL_RESOURCE).read_bytes()
    else:
        data = path.read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        return Head(
            npz["w1"].astype(np.float32),
            npz["b1"].astype(np.float32),
            npz["w2"].astype(np.float32),
            float(npz["b2"][0]),
            meta,
        )
