"""PostgreSQL backend: one log shared by many replicas, tenant rows isolated by row-level security.

Ordering: every write transaction first takes ``SELECT ... FROM head WHERE id = 0 FOR UPDATE``; the row lock
serialises index assignment across all connections, processes and hosts, so concurrent appenders can never
leave a gap or fork the log. Batches (the store's group commit) keep the lock hold per record tiny, and rows go
in with COPY. ``synchronous_commit`` is left at its default (``on``): COMMIT returns after the WAL is flushed,
which is what lets the store acknowledge a record.

Isolation: every table has ROW LEVEL SECURITY enabled. The owner (the role the store connects as) bypasses it
and sees everything, which the writer and the verifier need. Any other role sees:

* ``entries``: only rows whose tenant is mapped to ``current_user`` in ``tenant_readers``;
* ``tenant_readers``: only its own mappings;
* ``checkpoints``: every row (signed tree heads carry sizes and roots, no tenant data, and a tenant needs them
  to check an inclusion proof);
* ``head``, ``meta``: nothing (no policy at all means no rows).

Roles are mapped with `PostgresBackend.grant_tenant_reader`, so the database, not the application, decides
what a tenant's role can read.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import sql

from cisora_mesh.audit.backends.base import CheckpointRow, EntryRow, Head, Snapshot
from cisora_mesh.audit.errors import StoreError

DEFAULT_SCHEMA: Final = "cisora_audit"
_IDENT: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DDL: Final = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE {s}.head (
        id integer PRIMARY KEY CHECK (id = 0),
        size bigint NOT NULL,
        last_leaf bytea NOT NULL,
        compact bytea NOT NULL)""",
    """CREATE TABLE {s}.entries (
        idx bigint PRIMARY KEY,
        tenant text NOT NULL,
        entry bytea NOT NULL,
        leaf_hash bytea NOT NULL)""",
    "CREATE INDEX entries_tenant ON {s}.entries (tenant, idx)",
    """CREATE TABLE {s}.checkpoints (
        size bigint NOT NULL,
        key_id text NOT NULL,
        root bytea NOT NULL,
        note text NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (size, key_id))""",
    "CREATE TABLE {s}.tenant_readers (role_name text NOT NULL, tenant text NOT NULL, PRIMARY KEY (role_name, tenant))",
    "ALTER TABLE {s}.meta ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.head ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.entries ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.checkpoints ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE {s}.tenant_readers ENABLE ROW LEVEL SECURITY",
    """CREATE POLICY tenant_entries ON {s}.entries FOR SELECT USING (
        EXISTS (SELECT 1 FROM {s}.tenant_readers r WHERE r.role_name = current_user AND r.tenant = entries.tenant))""",
    "CREATE POLICY own_mappings ON {s}.tenant_readers FOR SELECT USING (role_name = current_user)",
    "CREATE POLICY signed_heads ON {s}.checkpoints FOR SELECT USING (true)",
    "INSERT INTO {s}.head (id, size, last_leaf, compact) VALUES (0, 0, '', '')",
]


# The append algorithm of `cisora_mesh.audit.store` (entry encoding, RFC 9162 leaf hash, compact-range update),
# run inside the database so the head-row lock is held for one statement plus the commit's WAL flush, never
# across a network round trip or a descheduled client. The entry bytes must equal `record.encode_entry` byte for
# byte: msgspec's sorted-key JSON `{"idx":N,"prev":"<hex>","record":<raw>,"tenant":<json string>}` (the client
# sends the tenant already JSON-encoded by msgspec, so escaping is never reimplemented here). `verify()`
# recomputes everything in Python, so any divergence would be reported, not trusted.
# Braces are doubled for psycopg's sql.SQL formatting; {s} is the schema.
_APPEND_FN: Final = """
CREATE FUNCTION {s}.append_entries_v1(
    p_tenants text[], p_tenant_json bytea[], p_records bytea[], p_every bigint,
    OUT first_idx bigint, OUT cp_sizes bigint[], OUT cp_roots bytea[])
LANGUAGE plpgsql AS $fn$
DECLARE
    h_size bigint; h_last bytea; h_compact bytea;
    n integer := coalesce(array_length(p_records, 1), 0);
    idxs bigint[] := ARRAY[]::bigint[]; entries bytea[] := ARRAY[]::bytea[]; leaves bytea[] := ARRAY[]::bytea[];
    e bytea; lf bytea; node bytea; r bytea; m bigint; len integer; k integer;
BEGIN
    SELECT size, last_leaf, compact INTO h_size, h_last, h_compact FROM {s}.head WHERE id = 0 FOR UPDATE;
    first_idx := h_size;
    cp_sizes := ARRAY[]::bigint[];
    cp_roots := ARRAY[]::bytea[];
    FOR i IN 1..n LOOP
        e := convert_to(chr(123) || '"idx":' || h_size::text || ',"prev":"' || encode(h_last, 'hex') || '","record":',
                        'UTF8')
             || p_records[i] || convert_to(',"tenant":', 'UTF8') || p_tenant_json[i] || convert_to(chr(125), 'UTF8');
        lf := sha256('\\x00'::bytea || e);
        node := lf;
        m := h_size;
        WHILE m & 1 = 1 LOOP
            len := length(h_compact);
            node := sha256('\\x01'::bytea || substring(h_compact FROM len - 31 FOR 32) || node);
            h_compact := substring(h_compact FROM 1 FOR len - 32);
            m := m >> 1;
        END LOOP;
        h_compact := h_compact || node;
        idxs := idxs || h_size;
        entries := entries || e;
        leaves := leaves || lf;
        h_size := h_size + 1;
        h_last := lf;
        IF p_every > 0 AND mod(h_size, p_every) = 0 THEN
            len := length(h_compact);
            r := substring(h_compact FROM len - 31 FOR 32);
            k := len - 64;
            WHILE k >= 0 LOOP
                r := sha256('\\x01'::bytea || substring(h_compact FROM k + 1 FOR 32) || r);
                k := k - 32;
            END LOOP;
            cp_sizes := cp_sizes || h_size;
            cp_roots := cp_roots || r;
        END IF;
    END LOOP;
    INSERT INTO {s}.entries (idx, tenant, entry, leaf_hash) SELECT * FROM unnest(idxs, p_tenants, entries, leaves);
    UPDATE {s}.head SET size = h_size, last_leaf = h_last, compact = h_compact WHERE id = 0;
END
$fn$
"""


def split_url(url: str) -> tuple[str, str]:
    """Remove our ``schema=`` query parameter (libpq would reject it); return (conninfo URL, schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    kept = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _IDENT.fullmatch(schema):
        raise StoreError("schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    return urlunsplit(parts._replace(query=urlencode(kept))), schema


_json_encoder: Final = msgspec.json.Encoder()


def _json_str(value: str) -> bytes:
    return _json_encoder.encode(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _PgTx:
    """One append transaction in two network round trips (the head-row lock is held across both, so every
    round trip saved is throughput gained for all replicas):

    1. pipeline ``BEGIN`` + ``SELECT ... FOR UPDATE`` on the head row;
    2. pipeline one statement that inserts the whole batch (``unnest`` of arrays) and updates the head, any
       checkpoint inserts, and ``COMMIT`` (which returns once the WAL is flushed).
    """

    def __init__(self, backend: PostgresBackend, conn: psycopg.Connection[Any]) -> None:
        self._b = backend
        self._conn = conn
        self._rows: Sequence[EntryRow] = ()
        self._checkpoints: list[tuple[Any, ...]] = []
        self._head: Head | None = None

    def head(self) -> Head:
        conn = self._conn
        with conn.pipeline():
            conn.execute("BEGIN")
            cur = conn.execute(self._b.q("SELECT size, last_leaf, compact FROM {s}.head WHERE id = 0 FOR UPDATE"))
        got = cur.fetchone()
        if got is None:
            raise StoreError("audit store has no head row (not initialised)")
        return Head(int(got[0]), bytes(got[1]), bytes(got[2]))

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        self._rows = rows

    def insert_checkpoint(self, row: CheckpointRow, created_at: float) -> None:
        self._checkpoints.append((*row, created_at))

    def set_head(self, head: Head) -> None:
        self._head = head

    def commit(self) -> None:
        conn = self._conn
        with conn.pipeline():
            if self._head is not None:
                rows = self._rows
                conn.execute(
                    self._b.q(
                        "WITH added AS (INSERT INTO {s}.entries (idx, tenant, entry, leaf_hash)"
                        " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bytea[], %s::bytea[]))"
                        " UPDATE {s}.head SET size = %s, last_leaf = %s, compact = %s WHERE id = 0"
                    ),
                    (
                        [r[0] for r in rows],
                        [r[1] for r in rows],
                        [r[2] for r in rows],
                        [r[3] for r in rows],
                        self._head.size,
                        self._head.last_leaf,
                        self._head.compact,
                    ),
                )
            for cp in self._checkpoints:
                conn.execute(
                    self._b.q(
                        "INSERT INTO {s}.checkpoints (size, key_id, root, note, created_at)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                    ),
                    cp,
                )
            conn.execute("COMMIT")


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        self._conninfo, self.schema = split_url(url)
        self._schema_sql = sql.Identifier(self.schema)
        self._read_lock = threading.Lock()
        self._writer = self._connect()
        try:
            self._reader = self._connect()
        except StoreError:
            self._writer.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            # autocommit: transactions are explicit (conn.transaction()), never left open by a read.
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the PostgreSQL audit store ({_first_line(exc)})") from None

    def q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._schema_sql)

    def setup(self) -> str:
        conn = self._writer
        try:
            with conn.transaction():
                # Two processes creating the schema at once would race on the catalogs; a transaction-scoped
                # advisory lock keyed by the schema name makes creation one-at-a-time.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cisora-audit:" + self.schema,))
                exists = conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.head",)).fetchone()
                if exists is None or exists[0] is None:
                    for stmt in _DDL:
                        conn.execute(self.q(stmt))
                    conn.execute(
                        self.q("INSERT INTO {s}.meta (key, value) VALUES ('log_id', %s)"), (str(uuid.uuid4()),)
                    )
                # Versioned name, created only when missing: a replica connecting as a non-owner role never needs
                # to alter it, and a changed algorithm gets a new name instead of replacing one in use.
                fn = conn.execute("SELECT to_regproc(%s)", (f"{self.schema}.append_entries_v1",)).fetchone()
                if fn is None or fn[0] is None:
                    conn.execute(self.q(_APPEND_FN))
                    conn.execute(self.q("REVOKE ALL ON FUNCTION {s}.append_entries_v1 FROM PUBLIC"))
                row = conn.execute(self.q("SELECT value FROM {s}.meta WHERE key = 'log_id'")).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"cannot initialise the PostgreSQL audit store ({_first_line(exc)})") from None
        if row is None:
            raise StoreError("PostgreSQL audit store has no log id")
        return str(row[0])

    @contextmanager
    def write(self) -> Iterator[_PgTx]:
        conn = self._writer
        if conn.closed or conn.broken:
            self._writer = conn = self._connect()  # the next batch after a dropped connection reconnects
        tx = _PgTx(self, conn)
        try:
            yield tx
            tx.commit()
        except BaseException:
            # Whatever failed (a statement, the network, the caller), the transaction must not survive: drop
            # the connection, which makes the server roll it back, and reconnect on the next batch.
            conn.close()
            raise

    def append_batch(self, items: Sequence[tuple[str, bytes]], every: int) -> tuple[int, list[tuple[int, bytes]]]:
        """Append records in one transaction and one round trip; return (first index, [(size, root)] for every
        size a multiple of ``every`` reached). Returns only after COMMIT, i.e. once the batch is durable."""
        conn = self._writer
        if conn.closed or conn.broken:
            self._writer = conn = self._connect()
        tenants = [t for t, _ in items]
        try:
            # One statement on an autocommit connection is its own transaction: it returns after COMMIT (WAL
            # flushed), in a single round trip, with the head-row lock held only inside the server.
            # %b: the arrays go in PostgreSQL's binary format. The text format escapes every element through a
            # Python regex, which was most of the writer thread's CPU per record (about 13 us against 2 us).
            row = conn.execute(
                self.q("SELECT first_idx, cp_sizes, cp_roots FROM {s}.append_entries_v1(%b, %b, %b, %s)"),
                (tenants, [_json_str(t) for t in tenants], [r for _, r in items], every),
            ).fetchone()
        except psycopg.Error as exc:
            conn.close()  # never reuse a connection whose transaction state is unknown; the server rolls back
            raise StoreError(f"audit append failed ({_first_line(exc)})") from None
        if row is None:
            raise StoreError("audit append returned nothing")
        return int(row[0]), [(int(n), bytes(r)) for n, r in zip(row[1], row[2], strict=True)]

    def insert_checkpoints(self, rows: Sequence[tuple[int, str, bytes, str, float]]) -> None:
        conn = self._writer
        try:
            with conn.transaction():
                for row in rows:
                    conn.execute(
                        self.q(
                            "INSERT INTO {s}.checkpoints (size, key_id, root, note, created_at)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                        ),
                        row,
                    )
        except psycopg.Error as exc:
            raise StoreError(f"cannot store checkpoint ({_first_line(exc)})") from None

    def _read(self, query: sql.Composed, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                if self._reader.closed or self._reader.broken:
                    self._reader = self._connect()
                return self._reader.execute(query, params).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"cannot read the PostgreSQL audit store ({_first_line(exc)})") from None

    def head(self) -> Head | None:
        rows = self._read(self.q("SELECT size, last_leaf, compact FROM {s}.head WHERE id = 0"))
        if not rows:
            return None
        return Head(int(rows[0][0]), bytes(rows[0][1]), bytes(rows[0][2]))

    def iter_entries(self, start: int = 0, stop: int | None = None) -> Iterator[EntryRow]:
        conn = self._connect()
        try:
            # A server-side cursor in one REPEATABLE READ transaction: a consistent snapshot streamed in pages.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                with conn.cursor(name="cisora_audit_scan") as cur:
                    cur.itersize = 10_000
                    if stop is None:
                        cur.execute(
                            self.q(
                                "SELECT idx, tenant, entry, leaf_hash FROM {s}.entries WHERE idx >= %s ORDER BY idx"
                            ),
                            (start,),
                        )
                    else:
                        cur.execute(
                            self.q(
                                "SELECT idx, tenant, entry, leaf_hash FROM {s}.entries"
                                " WHERE idx >= %s AND idx < %s ORDER BY idx"
                            ),
                            (start, stop),
                        )
                    for idx, tenant, entry, lh in cur:
                        yield int(idx), str(tenant), bytes(entry), bytes(lh)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read the PostgreSQL audit store ({_first_line(exc)})") from None
        finally:
            conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        conn = self._connect()
        try:
            # REPEATABLE READ: head, checkpoints and the streamed entries all come from one snapshot.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute(self.q("SELECT size, last_leaf, compact FROM {s}.head WHERE id = 0")).fetchone()
                head = Head(int(row[0]), bytes(row[1]), bytes(row[2])) if row is not None else None
                cps = [
                    (int(s), str(k), bytes(r), str(n))
                    for s, k, r, n in conn.execute(
                        self.q("SELECT size, key_id, root, note FROM {s}.checkpoints ORDER BY size, key_id")
                    )
                ]
                with conn.cursor(name="cisora_audit_snapshot") as cur:
                    cur.itersize = 10_000
                    cur.execute(self.q("SELECT idx, tenant, entry, leaf_hash FROM {s}.entries ORDER BY idx"))
                    rows = ((int(i), str(t), bytes(e), bytes(h)) for i, t, e, h in cur)
                    yield Snapshot(head, cps, rows)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read the PostgreSQL audit store ({_first_line(exc)})") from None
        finally:
            conn.close()

    def leaf_hashes(self, stop: int) -> list[bytes]:
        rows = self._read(self.q("SELECT leaf_hash FROM {s}.entries WHERE idx < %s ORDER BY idx"), (stop,))
        return [bytes(r[0]) for r in rows]

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._read(self.q("SELECT size, key_id, root, note FROM {s}.checkpoints ORDER BY size, key_id"))
        return [(int(s), str(k), bytes(r), str(n)) for s, k, r, n in rows]

    def tail(self, n: int) -> list[EntryRow]:
        rows = self._read(
            self.q("SELECT idx, tenant, entry, leaf_hash FROM {s}.entries ORDER BY idx DESC LIMIT %s"), (n,)
        )
        return [(int(i), str(t), bytes(e), bytes(h)) for i, t, e, h in reversed(rows)]

    def grant_tenant_reader(self, role: str, tenant: str) -> None:
        """Let database role ``role`` read ``tenant``'s entries (and nothing of any other tenant)."""
        conn = self._writer
        ident = sql.Identifier(role)
        try:
            with conn.transaction():
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(self._schema_sql, ident))
                conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(self._schema_sql, ident))
                conn.execute(
                    self.q("INSERT INTO {s}.tenant_readers (role_name, tenant) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                    (role, tenant),
                )
        except psycopg.Error as exc:
            raise StoreError(f"cannot grant tenant access ({_first_line(exc)})") from None

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
