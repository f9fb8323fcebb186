"""SQLite backend: the default store, one file, WAL.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` makes every COMMIT fsync the WAL before it returns,
so a record the store acknowledged survives a process crash and a power cut. (``NORMAL`` would survive a
process crash but could lose the last commits on power loss, which breaks "acknowledged means durable".)
Appends are grouped by the store's writer thread, so the fsync is paid once per batch, not once per record.

Write transactions use ``BEGIN IMMEDIATE``: the write lock is taken before the head row is read, so two
processes appending to one file serialise instead of both reading the same head (which would fork the log).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Final

from cisora_mesh.audit.backends.base import CheckpointRow, EntryRow, Head, Snapshot
from cisora_mesh.audit.errors import StoreError

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    size INTEGER NOT NULL,
    last_leaf BLOB NOT NULL,
    compact BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_tenant ON entries (tenant, idx);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (size, key_id)
);
"""

# Rows per multi-row INSERT (4 parameters each; 256 stays under the oldest SQLite's 999-parameter limit).
_INSERT_SIZES: Final = (64, 8)
_INSERT_SQL: Final = {
    size: "INSERT INTO entries (idx, tenant, entry, leaf_hash) VALUES " + ", ".join(["(?, ?, ?, ?)"] * size)  # noqa: S608 - placeholders only
    for size in (*_INSERT_SIZES, 1)
}


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def head(self) -> Head:
        row = self._conn.execute("SELECT size, last_leaf, compact FROM head WHERE id = 0").fetchone()
        if row is None:
            raise StoreError("audit store has no head row (not initialised)")
        return Head(int(row[0]), bytes(row[1]), bytes(row[2]))

    def insert_entries(self, rows: Sequence[EntryRow]) -> None:
        # Multi-row INSERTs of fixed sizes (a handful of cached statements) instead of `executemany`, which steps
        # one statement per row and drops and retakes the GIL around every step: per row that is ~1 us more CPU
        # in the writer thread and a chance for every other Python thread to preempt it.
        conn = self._conn
        i, n = 0, len(rows)
        for size in _INSERT_SIZES:
            sql = _INSERT_SQL[size]
            while n - i >= size:
                conn.execute(sql, tuple(chain.from_iterable(rows[i : i + size])))
                i += size
        if i < n:
            conn.executemany(_INSERT_SQL[1], rows[i:])

    def insert_checkpoint(self, row: CheckpointRow, created_at: float) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO checkpoints (size, key_id, root, note, created_at) VALUES (?, ?, ?, ?, ?)",
            (*row, created_at),
        )

    def set_head(self, head: Head) -> None:
        self._conn.execute(
            "UPDATE head SET size = ?, last_leaf = ?, compact = ? WHERE id = 0",
            (head.size, head.last_leaf, head.compact),
        )


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise StoreError(f"{path}: audit store not found")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._reader = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open audit store ({exc})") from None
        self._read_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves (the module's implicit
        # transactions would begin lazily and deferred, which is exactly the race BEGIN IMMEDIATE avoids).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def setup(self) -> str:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?)", (str(uuid.uuid4()),))
            # Only a new, empty log gets a fresh head: re-creating a deleted head over existing entries would
            # hide the deletion (verify reports a missing head instead).
            conn.execute(
                "INSERT OR IGNORE INTO head (id, size, last_leaf, compact)"
                " SELECT 0, 0, x'', x'' WHERE NOT EXISTS (SELECT 1 FROM entries)"
            )
            row = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot initialise audit store ({exc})") from None
        return str(row[0])

    @contextmanager
    def write(self) -> Iterator[_SqliteTx]:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start audit write transaction ({exc})") from None
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._read_lock:
            try:
                return list(self._reader.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read audit store ({exc})") from None

    def head(self) -> Head | None:
        rows = self._read("SELECT size, last_leaf, compact FROM head WHERE id = 0")
        if not rows:
            return None
        size, last, compact = rows[0]
        return Head(int(size), bytes(last), bytes(compact))  # type: ignore[call-overload]

    def iter_entries(self, start: int = 0, stop: int | None = None) -> Iterator[EntryRow]:
        # A dedicated connection: a full verify streams millions of rows and must not hold the shared reader.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            conn.execute("BEGIN")  # one snapshot for the whole scan
            sql = "SELECT idx, tenant, entry, leaf_hash FROM entries WHERE idx >= ?"
            params: tuple[int, ...] = (start,)
            if stop is not None:
                sql += " AND idx < ?"
                params = (start, stop)
            cur = conn.execute(sql + " ORDER BY idx", params)
            while rows := cur.fetchmany(4096):
                yield from rows
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read audit store ({exc})") from None
        finally:
            conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            # In WAL mode a read transaction's snapshot is fixed by its first SELECT; every later SELECT in it
            # (head, checkpoints, the streamed entries) sees the same state, while writers carry on.
            conn.execute("BEGIN")
            row = conn.execute("SELECT size, last_leaf, compact FROM head WHERE id = 0").fetchone()
            head = Head(int(row[0]), bytes(row[1]), bytes(row[2])) if row is not None else None
            cps = [
                (int(s), str(k), bytes(r), str(n))
                for s, k, r, n in conn.execute("SELECT size, key_id, root, note FROM checkpoints ORDER BY size, key_id")
            ]

            def entries() -> Iterator[EntryRow]:
                cur = conn.execute("SELECT idx, tenant, entry, leaf_hash FROM entries ORDER BY idx")
                while rows := cur.fetchmany(4096):
                    yield from rows

            yield Snapshot(head, cps, entries())
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read audit store ({exc})") from None
        finally:
            conn.close()

    def leaf_hashes(self, stop: int) -> list[bytes]:
        rows = self._read("SELECT leaf_hash FROM entries WHERE idx < ? ORDER BY idx", (stop,))
        return [bytes(r[0]) for r in rows]  # type: ignore[call-overload]

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._read("SELECT size, key_id, root, note FROM checkpoints ORDER BY size, key_id")
        return [(int(s), str(k), bytes(r), str(n)) for s, k, r, n in rows]  # type: ignore[call-overload]

    def tail(self, n: int) -> list[EntryRow]:
        rows = self._read("SELECT idx, tenant, entry, leaf_hash FROM entries ORDER BY idx DESC LIMIT ?", (n,))
        return [(int(i), str(t), bytes(e), bytes(h)) for i, t, e, h in reversed(rows)]  # type: ignore[call-overload]

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
