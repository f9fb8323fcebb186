from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from cisora_mesh.events import ContentKind, ContentScan, Subject, Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.ml.embedder import HashingEmbedder
from cisora_mesh.ml.refdocs import DB_NAME, RULE, EmbeddingDlpStage, RefDocStore

MEMO = (
    "Project Larkspur: we will acquire Northwind Freight for 41 million dollars in March, financed by a bridge loan "
    "from Halvorsen Bank. The board has not yet been told; only the CFO and legal know."
)


@pytest.fixture
def store(tmp_path: Path) -> RefDocStore:
    s = RefDocStore.in_data_dir(tmp_path, HashingEmbedder())
    yield s
    s.close()


def test_add_list_remove(store: RefDocStore) -> None:
    doc = store.add("acme", "larkspur.md", MEMO)
    assert doc.chunks == 1 and doc.chars == len(MEMO)
    assert [d.name for d in store.list("acme")] == ["larkspur.md"]
    assert store.list("other") == []
    with pytest.raises(ValueError, match="already exists"):
        store.add("acme", "larkspur.md", MEMO)
    store.add("acme", "larkspur.md", MEMO + " Addendum.", replace=True)
    assert len(store.list("acme")) == 1
    assert store.remove("acme", "larkspur.md")
    assert not store.remove("acme", "larkspur.md")
    assert store.list("acme") == []


def test_remove_by_id_and_empty_text(store: RefDocStore) -> None:
    doc = store.add("acme", "a", MEMO)
    assert store.remove("acme", str(doc.id))
    with pytest.raises(ValueError, match="empty"):
        store.add("acme", "empty", "  \n")


def test_vectors_not_text_are_stored(store: RefDocStore, tmp_path: Path) -> None:
    store.add("acme", "larkspur.md", MEMO)
    raw = (tmp_path / DB_NAME).read_bytes()
    assert b"Northwind" not in raw
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        (blob,) = db.execute("SELECT vector FROM refdoc_chunks").fetchone()
    assert np.frombuffer(blob, dtype=np.float32).shape == (384,)


def _scan(stage: EmbeddingDlpStage, text: str, tenant: str = "acme", kind: ContentKind = ContentKind.OUTPUT):
    mesh = Mesh(async_stages=[stage])
    try:
        return mesh.evaluate(ContentScan(kind=kind, text=text, subject=Subject(tenant=tenant)), full=True)
    finally:
        mesh.close()


def test_stage_flags_restated_document_per_tenant(store: RefDocStore) -> None:
    store.add("acme", "larkspur.md", MEMO)
    stage = EmbeddingDlpStage(store, threshold=0.45)
    leak = (
        "FYI: Project Larkspur: we will acquire Northwind Freight for 41 million dollars in March, via Halvorsen Bank."
    )
    decision = _scan(stage, leak)
    (finding,) = [f for f in decision.findings if f.detector == "embedding_dlp"]
    assert finding.rule_id == RULE and finding.category == "confidential" and finding.label == "REFDOC:larkspur.md"
    assert decision.verdict is Verdict.BLOCK
    assert _scan(stage, "The cafeteria menu this week has soup and salad.").verdict is Verdict.ALLOW
    assert _scan(stage, leak, tenant="other").verdict is Verdict.ALLOW  # another tenant's documents
    assert _scan(stage, leak, kind=ContentKind.PROMPT).verdict is Verdict.ALLOW  # kinds: output, tool_result


def test_action_and_threshold_are_configurable(store: RefDocStore) -> None:
    store.add("acme", "larkspur.md", MEMO)
    assert _scan(EmbeddingDlpStage(store, threshold=0.45, action=Verdict.REVIEW), MEMO).verdict is Verdict.REVIEW
    assert _scan(EmbeddingDlpStage(store, threshold=0.9), "Larkspur acquisition").verdict is Verdict.ALLOW
    with pytest.raises(ValueError, match="cosine"):
        EmbeddingDlpStage(store, threshold=1.5)


def test_cache_sees_documents_added_later(store: RefDocStore) -> None:
    stage = EmbeddingDlpStage(store, threshold=0.45)
    assert _scan(stage, MEMO).verdict is Verdict.ALLOW
    store.add("acme", "larkspur.md", MEMO)
    assert _scan(stage, MEMO).verdict is Verdict.BLOCK
    store.remove("acme", "larkspur.md")
    assert _scan(stage, MEMO).verdict is Verdict.ALLOW


def test_changes_from_another_connection_are_seen(store: RefDocStore, tmp_path: Path) -> None:
    stage = EmbeddingDlpStage(store, threshold=0.45)
    assert _scan(stage, MEMO).verdict is Verdict.ALLOW
    other = RefDocStore.in_data_dir(tmp_path, HashingEmbedder())  # e.g. the refdocs CLI in another process
    other.add("acme", "larkspur.md", MEMO)
    other.close()
    assert _scan(stage, MEMO).verdict is Verdict.BLOCK


def test_stage_close_closes_the_store(tmp_path: Path) -> None:
    stage = EmbeddingDlpStage(RefDocStore.in_data_dir(tmp_path, HashingEmbedder()))
    stage.close()
    with pytest.raises(sqlite3.ProgrammingError):
        stage.store.list("acme")
