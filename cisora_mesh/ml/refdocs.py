"""Embedding DLP: flag outputs and tool results that paraphrase a tenant's confidential reference documents.

Pattern DLP finds secrets by shape; a leaked strategy memo or an unreleased contract has no shape. A tenant registers
reference documents (`cisora-mesh refdocs add`, or `RefDocStore.add` from Python); each is cut into the embedder's
token windows, embedded, and stored as float32 blobs in `refdocs.db` in the tenant's data directory. At scan time
every window of the scanned text is compared with every reference window by cosine similarity (a dot product of
normalised vectors); a best match at or above `threshold` is a `confidential` finding.

What is stored: the document's name, its SHA-256, its size and the window vectors. Never the text: the data
directory is not a document store, and the vectors are all the comparison needs.

`RefDocStore` is the SQLite implementation; `PostgresRefDocStore` (`cisora_mesh.ml.refdocs_postgres`) provides the
same methods (`add`, `remove`, `list`, `matrix`, plus `generation` for cache invalidation) for the PostgreSQL
deployment. `open_refdocs(url, data_dir=...)` picks one from a store URL.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from cisora_mesh.events import ContentKind, Finding, Severity, Verdict
from cisora_mesh.ml.embedder import Embedder, shared_embedder
from cisora_mesh.pipeline.base import ScanContext

DETECTOR: Final = "embedding_dlp"
RULE: Final = "EDLP-REFDOC-001"
DB_NAME: Final = "refdocs.db"
# Chosen on the cases in tests/ml/test_ml_model.py (three documents we wrote, five paraphrased leaks, seven texts on
# the same topics or unrelated): paraphrased leaks scored 0.70-0.87 with MiniLM, same-topic non-leaks up to 0.58,
# unrelated text < 0.25. 0.65 sits in the gap; a tenant with more boilerplate-like documents should raise it.
DEFAULT_THRESHOLD: Final = 0.65
DEFAULT_KINDS: Final = frozenset({ContentKind.OUTPUT, ContentKind.TOOL_RESULT})

Matrix = npt.NDArray[np.float32]
_Names: TypeAlias = "list[str]"
_Docs: TypeAlias = "list[RefDoc]"  # `list` is shadowed by the store's method inside the class

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refdocs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    chars INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS refdoc_chunks (
    doc_id INTEGER NOT NULL REFERENCES refdocs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (doc_id, idx)
);
CREATE TABLE IF NOT EXISTS refdoc_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO refdoc_meta (key, value) VALUES ('generation', 0);
"""


class RefDocStoreError(RuntimeError):
    """The store cannot be opened or used (unreachable server, bad URL, missing privileges)."""


@dataclass(frozen=True, slots=True)
class RefDoc:
    id: int
    tenant: str
    name: str
    sha256: str
    chars: int
    chunks: int
    created: float


class RefDocStore:
    """Per-tenant reference-document vectors in SQLite. Thread-safe (one connection, one lock)."""

    def __init__(self, path: Path, embedder: Embedder | None = None) -> None:
        self.path = path
        self._embedder = embedder
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path, embedder: Embedder | None = None) -> RefDocStore:
        return cls(Path(data_dir) / DB_NAME, embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, tenant: str, name: str, text: str, *, replace: bool = False) -> RefDoc:
        """Embed `text` and store it under `name` for `tenant` (ValueError if the name exists and not `replace`)."""
        if not text.strip():
            raise ValueError("reference document is empty")
        vectors = self.embedder.embed_chunks([text])[0].astype(np.float32)  # embed outside the lock: it is slow
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self._db.execute(
                    "SELECT id FROM refdocs WHERE tenant = ? AND name = ?", (tenant, name)
                ).fetchone()
                if existing is not None:
                    if not replace:
                        raise ValueError(f"a reference document named {name!r} already exists")
                    self._db.execute("DELETE FROM refdocs WHERE id = ?", (existing[0],))
                cursor = self._db.execute(
                    "INSERT INTO refdocs (tenant, name, sha256, chars, created) VALUES (?, ?, ?, ?, ?)",
                    (tenant, name, digest, len(text), time.time()),
                )
                doc_id = int(cursor.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO refdoc_chunks (doc_id, idx, vector) VALUES (?, ?, ?)",
                    [(doc_id, i, v.tobytes()) for i, v in enumerate(vectors)],
                )
                self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return RefDoc(doc_id, tenant, name, digest, len(text), len(vectors), time.time())

    def remove(self, tenant: str, name_or_id: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "DELETE FROM refdocs WHERE tenant = ? AND (name = ? OR CAST(id AS TEXT) = ?)",
                (tenant, name_or_id, name_or_id),
            )
            if cursor.rowcount:
                self._bump()
            self._db.execute("COMMIT")
            return cursor.rowcount > 0

    def list(self, tenant: str) -> _Docs:
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, d.tenant, d.name, d.sha256, d.chars, COUNT(c.idx), d.created FROM refdocs d "
                "LEFT JOIN refdoc_chunks c ON c.doc_id = d.id WHERE d.tenant = ? GROUP BY d.id ORDER BY d.name",
                (tenant,),
            ).fetchall()
        return [RefDoc(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), float(r[6])) for r in rows]

    def generation(self) -> int:
        """A counter bumped by every change (any process): cached matrices compare it to know they are stale."""
        with self._lock:
            row = self._db.execute("SELECT value FROM refdoc_meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def matrix(self, tenant: str) -> tuple[Matrix, _Names]:
        """All of `tenant`'s window vectors (n, d) and, per row, the document name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.name, c.vector FROM refdoc_chunks c JOIN refdocs d ON d.id = c.doc_id "
                "WHERE d.tenant = ? ORDER BY d.id, c.idx",
                (tenant,),
            ).fetchall()
        if not rows:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32), []
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return matrix, [str(r[0]) for r in rows]

    def _bump(self) -> None:
        self._db.execute("UPDATE refdoc_meta SET value = value + 1 WHERE key = 'generation'")


class RefDocs(Protocol):
    """What `EmbeddingDlpStage` and the CLI need from a store, SQLite or PostgreSQL."""

    @property
    def embedder(self) -> Embedder: ...

    def close(self) -> None: ...

    def add(self, tenant: str, name: str, text: str, *, replace: bool = False) -> RefDoc: ...

    def remove(self, tenant: str, name_or_id: str) -> bool: ...

    def list(self, tenant: str) -> _Docs: ...

    def generation(self) -> int: ...

    def matrix(self, tenant: str) -> tuple[Matrix, _Names]: ...


def open_refdocs(url: str | None, *, data_dir: Path, embedder: Embedder | None = None) -> RefDocs:
    """Open the store named by `url`: None is `refdocs.db` in `data_dir` (the embedded default),
    ``sqlite:///abs/path.db`` a SQLite file, ``postgresql://...`` PostgreSQL (``?schema=NAME`` selects the schema)."""
    if url is None:
        return RefDocStore.in_data_dir(data_dir, embedder)
    if url.startswith("sqlite:///"):
        return RefDocStore(Path(url.removeprefix("sqlite://")), embedder)
    if url.startswith(("postgresql://", "postgres://")):
        from cisora_mesh.ml.refdocs_postgres import PostgresRefDocStore  # psycopg only for PostgreSQL deployments

        return PostgresRefDocStore(url, embedder)
    raise RefDocStoreError("unsupported reference-document store URL (use sqlite:///path.db or postgresql://...)")


@dataclass(frozen=True, slots=True)
class Match:
    similarity: float
    document: str


class EmbeddingDlpStage:
    """Async stage: a `confidential` finding when a text restates a tenant's reference document."""

    name = "embedding_dlp"

    def __init__(
        self,
        store: RefDocs,
        embedder: Embedder | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        action: Verdict = Verdict.BLOCK,
        kinds: Iterable[ContentKind] = DEFAULT_KINDS,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold is a cosine similarity in [-1, 1]")
        self.store = store
        self._embedder = embedder
        self.threshold = threshold
        self.action = action
        self.kinds = frozenset(kinds)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, Matrix, list[str]]] = {}

    @property
    def embedder(self) -> Embedder:
        return self._embedder if self._embedder is not None else self.store.embedder

    def close(self) -> None:
        """Close the store's connection (the owner of the Mesh calls it at shutdown)."""
        self.store.close()

    def _reference(self, tenant: str) -> tuple[Matrix, list[str]]:
        generation = self.store.generation()
        cached = self._cache.get(tenant)
        if cached is not None and cached[0] == generation:
            return cached[1], cached[2]
        with self._lock:
            matrix, names = self.store.matrix(tenant)
            self._cache[tenant] = (generation, matrix, names)
        return matrix, names

    def best_match(self, tenant: str, text: str) -> Match | None:
        """The most similar reference window for `text` (None when the tenant has no reference documents)."""
        matrix, names = self._reference(tenant)
        if not len(names):
            return None
        query = self.embedder.embed_chunks([text])[0]
        similarity = query @ matrix.T  # (query windows, reference windows); vectors are unit length
        flat = int(np.argmax(similarity))
        return Match(float(similarity.flat[flat]), names[flat % len(names)])

    def run(self, ctx: ScanContext) -> None:
        tenant = ctx.event.subject.tenant
        for scan_text in ctx.texts:
            if scan_text.kind not in self.kinds or scan_text.derived is not None or not scan_text.match_text.strip():
                continue
            match = self.best_match(tenant, scan_text.match_text)
            if match is None:
                return  # no reference documents for this tenant: nothing to compare, skip the embedding too
            if match.similarity < self.threshold:
                continue
            ctx.add(
                Finding(
                    detector=DETECTOR,
                    rule_id=RULE,
                    category="confidential",
                    severity=Severity.HIGH,
                    confidence=round(min(max(match.similarity, 0.0), 1.0), 4),
                    location=scan_text.location,
                    action=self.action,
                    label=f"REFDOC:{match.document}",
                )
            )
