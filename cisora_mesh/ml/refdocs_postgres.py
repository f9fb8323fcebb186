"""Embedding-DLP reference documents in PostgreSQL, for deployments whose tenant data lives there.

Same contract as the SQLite `RefDocStore` (`add`, `remove`, `list`, `matrix`, `generation`, `close`): names,
SHA-256, sizes and float32 window vectors (``bytea``), never the text.

Isolation: ``refdocs`` and ``refdoc_chunks`` both carry the tenant column and have ROW LEVEL SECURITY enabled. The
role that created the schema owns the tables and bypasses it (a shared service account managing every tenant); any
other role sees and writes only the tenants mapped to ``current_user`` in ``tenant_roles``
(`PostgresRefDocStore.grant_tenant`), so the database, not the application, enforces the boundary.

Cache invalidation across replicas: every change bumps ``meta.generation`` in the same transaction as the change,
so a replica that reads a new generation is guaranteed to see the rows that caused it (a sequence would be bumped
before commit and let a replica cache the old rows under the new number).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql

from cisora_mesh.ml.embedder import Embedder, shared_embedder
from cisora_mesh.ml.refdocs import Matrix, RefDoc, RefDocStoreError

DEFAULT_SCHEMA: Final = "cisora_refdocs"
_Names: TypeAlias = "list[str]"  # `list` is shadowed by the store's method inside the class
_Docs: TypeAlias = "list[RefDoc]"
_IDENT: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_TENANT_POLICY: Final = (
    "EXISTS (SELECT 1 FROM {s}.tenant_roles r WHERE r.role_name = current_user AND r.tenant = {t}.tenant)"
)

_DDL: Final = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE TABLE {s}.meta (key text PRIMARY KEY, value bigint NOT NULL)",
    "INSERT INTO {s}.meta (key, value) VALUES ('generation', 0)",
    "CREATE TABLE {s}.tenant_roles (role_name text NOT NULL, tenant text NOT NULL, PRIMARY KEY (role_name, tenant))",
    """CREATE TABLE {s}.refdocs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant text NOT NULL,
        name text NOT NULL,
        sha256 text NOT NULL,
        chars integer NOT NULL,
        created double precision NOT NULL,
        UNIQUE (tenant, name))""",
    # The tenant is repeated on every chunk so the policy is a plain column test, not a join through refdocs.
    """CREATE TABLE {s}.refdoc_chunks (
        doc_id bigint NOT NULL REFERENCES {s}.refdocs (id) ON DELETE CASCADE,
        idx integer NOT NULL,
        tenant text NOT NULL,
        vector bytea NOT NULL,
        PRIMARY KEY (doc_id, idx))""",
    "CREATE INDEX refdoc_chunks_tenant ON {s}.refdoc_chunks (tenant, doc_id, idx)",
    "ALTER TABLE {s}.meta ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.tenant_roles ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.refdocs ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.refdoc_chunks ENABLE ROW LEVEL SECURITY",
    # FOR ALL: the USING test doubles as WITH CHECK, so a tenant role can neither read nor insert another tenant.
    "CREATE POLICY tenant_docs ON {s}.refdocs FOR ALL USING (" + _TENANT_POLICY.replace("{t}", "refdocs") + ")",
    "CREATE POLICY tenant_chunks ON {s}.refdoc_chunks FOR ALL USING ("
    + _TENANT_POLICY.replace("{t}", "refdoc_chunks")
    + ")",
    "CREATE POLICY own_mappings ON {s}.tenant_roles FOR SELECT USING (role_name = current_user)",
    # The counter carries no tenant data; every writer must be able to bump it and every replica to read it.
    "CREATE POLICY generation ON {s}.meta FOR ALL USING (key = 'generation')",
]


def split_url(url: str) -> tuple[str, str]:
    """Remove our ``schema=`` query parameter (libpq would reject it); return (conninfo URL, schema)."""
    parts = urlsplit(url)
    schema = DEFAULT_SCHEMA
    kept = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _IDENT.fullmatch(schema):
        raise RefDocStoreError("schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class PostgresRefDocStore:
    """Per-tenant reference-document vectors in PostgreSQL. Thread-safe (one connection, one lock)."""

    def __init__(self, url: str, embedder: Embedder | None = None) -> None:
        self._conninfo, self.schema = split_url(url)
        self._s = sql.Identifier(self.schema)
        self._embedder = embedder
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._connect()
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            # autocommit: writes use explicit transactions, and a read never leaves one open (which would pin
            # a snapshot and hide other replicas' changes from `generation`).
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise RefDocStoreError(
                f"cannot connect to the PostgreSQL reference-document store ({_first_line(exc)})"
            ) from None

    def q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def _setup(self) -> None:
        conn = self._conn
        try:
            with conn.transaction():
                # Replicas starting together would race on the catalogs; an advisory lock keyed by the schema
                # makes creation one-at-a-time.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cisora-refdocs:" + self.schema,))
                exists = conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.meta",)).fetchone()
                if exists is None or exists[0] is None:
                    for stmt in _DDL:
                        conn.execute(self.q(stmt))
        except psycopg.Error as exc:
            raise RefDocStoreError(
                f"cannot initialise the PostgreSQL reference-document store ({_first_line(exc)})"
            ) from None

    def _db(self) -> psycopg.Connection[Any]:
        """The connection (call with the lock held); reconnects after a dropped connection, never after close."""
        if self._closed:
            raise RefDocStoreError("reference-document store is closed")
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def add(self, tenant: str, name: str, text: str, *, replace: bool = False) -> RefDoc:
        """Embed `text` and store it under `name` for `tenant` (ValueError if the name exists and not `replace`)."""
        if not text.strip():
            raise ValueError("reference document is empty")
        vectors = self.embedder.embed_chunks([text])[0].astype(np.float32)  # embed outside the lock: it is slow
        digest = hashlib.sha256(text.encode()).hexdigest()
        created = time.time()
        with self._lock:
            conn = self._db()
            try:
                with conn.transaction():
                    existing = conn.execute(
                        self.q("SELECT id FROM {s}.refdocs WHERE tenant = %s AND name = %s"),
                        (tenant, name),
                    ).fetchone()
                    if existing is not None:
                        if not replace:
                            raise ValueError(f"a reference document named {name!r} already exists")
                        conn.execute(self.q("DELETE FROM {s}.refdocs WHERE id = %s"), (existing[0],))
                    row = conn.execute(
                        self.q(
                            "INSERT INTO {s}.refdocs (tenant, name, sha256, chars, created)"
                            " VALUES (%s, %s, %s, %s, %s) RETURNING id"
                        ),
                        (tenant, name, digest, len(text), created),
                    ).fetchone()
                    if row is None:
                        raise RefDocStoreError("insert returned no id")
                    doc_id = int(row[0])
                    with conn.cursor() as cur:
                        cur.executemany(
                            self.q(
                                "INSERT INTO {s}.refdoc_chunks (doc_id, idx, tenant, vector) VALUES (%s, %s, %s, %s)"
                            ),
                            [(doc_id, i, tenant, v.tobytes()) for i, v in enumerate(vectors)],
                        )
                    self._bump(conn)
            except psycopg.errors.UniqueViolation:
                # Another replica added the same name between our SELECT and INSERT.
                raise ValueError(f"a reference document named {name!r} already exists") from None
        return RefDoc(doc_id, tenant, name, digest, len(text), len(vectors), created)

    def remove(self, tenant: str, name_or_id: str) -> bool:
        with self._lock:
            conn = self._db()
            with conn.transaction():
                cur = conn.execute(
                    self.q("DELETE FROM {s}.refdocs WHERE tenant = %s AND (name = %s OR id::text = %s)"),
                    (tenant, name_or_id, name_or_id),
                )
                removed = cur.rowcount > 0
                if removed:
                    self._bump(conn)
        return removed

    def list(self, tenant: str) -> _Docs:
        with self._lock:
            rows = (
                self._db()
                .execute(
                    self.q(
                        "SELECT d.id, d.tenant, d.name, d.sha256, d.chars, count(c.idx), d.created FROM {s}.refdocs d"
                        " LEFT JOIN {s}.refdoc_chunks c ON c.doc_id = d.id WHERE d.tenant = %s"
                        " GROUP BY d.id ORDER BY d.name"
                    ),
                    (tenant,),
                )
                .fetchall()
            )
        return [RefDoc(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), float(r[6])) for r in rows]

    def generation(self) -> int:
        """A counter bumped by every change (any replica): cached matrices compare it to know they are stale."""
        with self._lock:
            row = self._db().execute(self.q("SELECT value FROM {s}.meta WHERE key = 'generation'")).fetchone()
        if row is None:
            raise RefDocStoreError("reference-document store has no generation row (role lacks access?)")
        return int(row[0])

    def matrix(self, tenant: str) -> tuple[Matrix, _Names]:
        """All of `tenant`'s window vectors (n, d) and, per row, the document name."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    self.q(
                        "SELECT d.name, c.vector FROM {s}.refdoc_chunks c JOIN {s}.refdocs d ON d.id = c.doc_id"
                        " WHERE c.tenant = %s ORDER BY d.id, c.idx"
                    ),
                    (tenant,),
                )
                .fetchall()
            )
        if not rows:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32), []
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return matrix, [str(r[0]) for r in rows]

    def grant_tenant(self, role: str, tenant: str) -> None:
        """Let database role `role` manage and read `tenant`'s documents (and nothing of any other tenant)."""
        ident = sql.Identifier(role)
        with self._lock:
            conn = self._db()
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(self._s, ident))
                    # UPDATE on meta only: bumping the generation is the one write outside the tenant's rows.
                    for stmt in (
                        "GRANT SELECT, INSERT, DELETE ON {s}.refdocs, {s}.refdoc_chunks TO {r}",
                        "GRANT SELECT, UPDATE ON {s}.meta TO {r}",
                        "GRANT SELECT ON {s}.tenant_roles TO {r}",
                    ):
                        conn.execute(sql.SQL(stmt).format(s=self._s, r=ident))
                    conn.execute(
                        self.q(
                            "INSERT INTO {s}.tenant_roles (role_name, tenant) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                        ),
                        (role, tenant),
                    )
            except psycopg.Error as exc:
                raise RefDocStoreError(f"cannot grant tenant access ({_first_line(exc)})") from None

    def _bump(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(self.q("UPDATE {s}.meta SET value = value + 1 WHERE key = 'generation'"))
