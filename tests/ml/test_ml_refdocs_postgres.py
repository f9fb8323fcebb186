"""PostgreSQL reference-document store: same behaviour as SQLite, tenant rows isolated by row-level security."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cisora_mesh.events import ContentKind, ContentScan, Subject, Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.ml.embedder import HashingEmbedder
from cisora_mesh.ml.refdocs import RULE, EmbeddingDlpStage, RefDocStore, RefDocStoreError, open_refdocs

psycopg = pytest.importorskip("psycopg")

from cisora_mesh.ml.refdocs_postgres import PostgresRefDocStore  # noqa: E402  (needs psycopg)

pytestmark = pytest.mark.postgres

DSN = os.environ.get("CISORA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

MEMO = (
    "Project Larkspur: we will acquire Northwind Freight for 41 million dollars in March, financed by a bridge loan "
    "from Halvorsen Bank. The board has not yet been told; only the CFO and legal know."
)
OTHER = "Quarterly roadmap for Beta Corp: the Osprey launch slips to October because the supplier failed audit."


def _with_user(dsn: str, user: str, schema: str) -> str:
    # postgresql://postgres@host:port/db -> postgresql://<user>@host:port/db?schema=<schema>
    rest = dsn.split("://", 1)[1]
    hostpart = rest.split("@", 1)[1] if "@" in rest else rest
    sep = "&" if "?" in hostpart else "?"
    return f"postgresql://{user}@{hostpart}{sep}schema={schema}"


class PgEnv:
    """A unique schema and roles for this test, dropped afterwards."""

    def __init__(self) -> None:
        try:
            self.admin = psycopg.connect(DSN, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            pytest.skip(f"no PostgreSQL server answers at CISORA_TEST_POSTGRES_DSN/{DSN}: {str(exc).strip()[:120]}")
        self.run = uuid.uuid4().hex[:10]
        self.schema = f"refdocs_test_{self.run}"
        self.app = f"cisora_refdocs_app_{self.run}"
        self.roles: list[str] = [self.app]
        db = self.admin.execute("SELECT current_database()").fetchone()[0]
        # A non-superuser owner, as in production: superusers bypass row-level security altogether.
        self.admin.execute(f'CREATE ROLE "{self.app}" LOGIN')
        self.admin.execute(f'GRANT CREATE ON DATABASE "{db}" TO "{self.app}"')
        self.url = _with_user(DSN, self.app, self.schema)

    def tenant_role(self, tenant: str) -> str:
        role = f"cisora_refdocs_{tenant}_{self.run}"
        self.admin.execute(f'CREATE ROLE "{role}" LOGIN')
        self.roles.append(role)
        return role

    def cleanup(self) -> None:
        self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        for role in reversed(self.roles):
            self.admin.execute(f'DROP OWNED BY "{role}" CASCADE')
            self.admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        self.admin.close()


@pytest.fixture
def pg() -> Iterator[PgEnv]:
    env = PgEnv()
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def store(pg: PgEnv) -> Iterator[PostgresRefDocStore]:
    s = PostgresRefDocStore(pg.url, HashingEmbedder())
    yield s
    s.close()


def _scan(stage: EmbeddingDlpStage, text: str, tenant: str = "acme", kind: ContentKind = ContentKind.OUTPUT) -> Any:
    mesh = Mesh(async_stages=[stage])
    try:
        return mesh.evaluate(ContentScan(kind=kind, text=text, subject=Subject(tenant=tenant)), full=True)
    finally:
        mesh.close()


def test_add_list_remove(store: PostgresRefDocStore) -> None:
    doc = store.add("acme", "larkspur.md", MEMO)
    assert doc.chunks == 1 and doc.chars == len(MEMO)
    assert [d.name for d in store.list("acme")] == ["larkspur.md"]
    assert store.list("acme")[0].chunks == 1
    assert store.list("other") == []
    with pytest.raises(ValueError, match="already exists"):
        store.add("acme", "larkspur.md", MEMO)
    store.add("acme", "larkspur.md", MEMO + " Addendum.", replace=True)
    assert len(store.list("acme")) == 1
    assert store.remove("acme", "larkspur.md")
    assert not store.remove("acme", "larkspur.md")
    assert store.list("acme") == []
    doc = store.add("acme", "a", MEMO)
    assert not store.remove("other", str(doc.id))  # an id of another tenant's document removes nothing
    assert store.remove("acme", str(doc.id))
    with pytest.raises(ValueError, match="empty"):
        store.add("acme", "empty", "  \n")


def test_vectors_not_text_are_stored(store: PostgresRefDocStore, pg: PgEnv) -> None:
    store.add("acme", "larkspur.md", MEMO)
    matrix, names = store.matrix("acme")
    assert matrix.shape == (1, 384) and matrix.dtype == np.float32 and names == ["larkspur.md"]
    rows = pg.admin.execute(f'SELECT vector FROM "{pg.schema}".refdoc_chunks').fetchall()  # noqa: S608
    assert np.frombuffer(rows[0][0], dtype=np.float32).shape == (384,)
    for table in ("refdocs", "refdoc_chunks"):
        dump = pg.admin.execute(f'SELECT t::text FROM "{pg.schema}".{table} t').fetchall()  # noqa: S608
        assert all("Northwind" not in r[0] for r in dump)
    assert store.matrix("other")[0].shape == (0, 384)


def test_row_level_security_isolates_tenants(store: PostgresRefDocStore, pg: PgEnv) -> None:
    store.add("alpha", "alpha.md", MEMO)
    store.add("beta", "beta.md", OTHER)
    role = pg.tenant_role("alpha")
    store.grant_tenant(role, "alpha")

    # Through the store, connected as the tenant's role: asking for beta returns nothing, alpha works end to end.
    as_alpha = PostgresRefDocStore(_with_user(DSN, role, pg.schema), HashingEmbedder())
    try:
        assert [d.name for d in as_alpha.list("alpha")] == ["alpha.md"]
        assert as_alpha.list("beta") == []
        assert as_alpha.matrix("beta")[1] == []
        assert not as_alpha.remove("beta", "beta.md")
        generation = as_alpha.generation()
        as_alpha.add("alpha", "second.md", OTHER)
        assert as_alpha.generation() > generation  # the tenant role can bump the shared counter
        # Writing a row for another tenant is refused by the policy's WITH CHECK.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_alpha.add("beta", "planted.md", MEMO)
    finally:
        as_alpha.close()
    assert [d.name for d in store.list("beta")] == ["beta.md"]  # the owner still sees everything, untouched

    # Raw SQL as the role, without the store's WHERE clauses: the database itself filters the rows.
    conn = psycopg.connect(DSN, autocommit=True)
    try:
        conn.execute(f'SET ROLE "{role}"')
        docs = conn.execute(f'SELECT tenant FROM "{pg.schema}".refdocs').fetchall()  # noqa: S608
        chunks = conn.execute(f'SELECT tenant FROM "{pg.schema}".refdoc_chunks').fetchall()  # noqa: S608
        assert {r[0] for r in docs} == {"alpha"} and len(docs) == 2
        assert {r[0] for r in chunks} == {"alpha"}
        conn.execute(f"DELETE FROM \"{pg.schema}\".refdocs WHERE tenant = 'beta'")  # noqa: S608  (matches no row)
        mappings = conn.execute(f'SELECT role_name, tenant FROM "{pg.schema}".tenant_roles').fetchall()  # noqa: S608
        assert mappings == [(role, "alpha")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"INSERT INTO \"{pg.schema}\".tenant_roles VALUES ('{role}', 'beta')")  # noqa: S608
    finally:
        conn.close()
    assert [d.name for d in store.list("beta")] == ["beta.md"]


def test_second_instance_sees_changes_through_generation(store: PostgresRefDocStore, pg: PgEnv) -> None:
    # Two replicas: the stage on one caches the matrix; the CLI on another adds and removes documents.
    stage = EmbeddingDlpStage(store, threshold=0.45)
    assert _scan(stage, MEMO).verdict is Verdict.ALLOW
    before = store.generation()
    other = PostgresRefDocStore(pg.url, HashingEmbedder())
    try:
        other.add("acme", "larkspur.md", MEMO)
        assert store.generation() > before
        assert _scan(stage, MEMO).verdict is Verdict.BLOCK
        assert other.remove("acme", "larkspur.md")
        assert _scan(stage, MEMO).verdict is Verdict.ALLOW
    finally:
        other.close()


def test_stage_flags_restated_document(store: PostgresRefDocStore) -> None:
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
    assert _scan(stage, leak, tenant="other").verdict is Verdict.ALLOW


def test_stage_close_closes_the_store(pg: PgEnv) -> None:
    stage = EmbeddingDlpStage(PostgresRefDocStore(pg.url, HashingEmbedder()))
    stage.close()
    with pytest.raises(RefDocStoreError, match="closed"):
        stage.store.list("acme")


def test_open_refdocs_picks_the_backend(pg: PgEnv, tmp_path: Path) -> None:
    default = open_refdocs(None, data_dir=tmp_path, embedder=HashingEmbedder())
    assert isinstance(default, RefDocStore) and default.path == tmp_path / "refdocs.db"
    default.close()
    explicit = open_refdocs(f"sqlite://{tmp_path}/x.db", data_dir=tmp_path, embedder=HashingEmbedder())
    assert isinstance(explicit, RefDocStore) and explicit.path == tmp_path / "x.db"
    explicit.close()
    remote = open_refdocs(pg.url, data_dir=tmp_path, embedder=HashingEmbedder())
    try:
        assert isinstance(remote, PostgresRefDocStore) and remote.schema == pg.schema
        remote.add("acme", "larkspur.md", MEMO)
    finally:
        remote.close()
    with pytest.raises(RefDocStoreError, match="unsupported"):
        open_refdocs("mysql://x", data_dir=tmp_path)
    with pytest.raises(RefDocStoreError, match="schema"):
        open_refdocs(DSN.split("?")[0] + "?schema=Bad-Name", data_dir=tmp_path)


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RefDocStoreError, match="cannot connect"):
        PostgresRefDocStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", HashingEmbedder())


def test_cli_store_option(pg: PgEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cisora_mesh.cli import main

    rc = main(["refdocs", "list", "--data-dir", str(tmp_path), "--tenant", "acme", "--store", pg.url])
    assert rc == 0 and "no reference documents for tenant acme" in capsys.readouterr().out
    seeded = PostgresRefDocStore(pg.url, HashingEmbedder())
    try:
        seeded.add("acme", "larkspur.md", MEMO)
    finally:
        seeded.close()
    assert main(["refdocs", "list", "--data-dir", str(tmp_path), "--tenant", "acme", "--store", pg.url]) == 0
    assert "larkspur.md" in capsys.readouterr().out
    assert (
        main(["refdocs", "remove", "larkspur.md", "--data-dir", str(tmp_path), "--tenant", "acme", "--store", pg.url])
        == 0
    )
    assert not (tmp_path / "refdocs.db").exists()  # the data-dir SQLite file was never touched
