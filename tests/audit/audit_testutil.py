"""Helpers shared by the audit tests (a uniquely named module: test dirs have no __init__.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cisora_mesh.audit import AuditRecord, AuditStore
from cisora_mesh.audit import checkpoint as cpmod
from cisora_mesh.audit.merkle import CompactRange, leaf_hash
from cisora_mesh.audit.record import encode_entry, entry_decoder


def make_record(i: int, tenant: str = "acme") -> AuditRecord:
    return AuditRecord(
        tenant=tenant,
        agent=f"agent-{i % 3}",
        decision_id=f"d-{i}",
        event_id=f"e-{i}",
        event_type="mcp.message",
        verdict="allow" if i % 2 else "block",
        rule_ids=(f"rule-{i % 5}",),
        at_ms=1_700_000_000_000 + i,
    )


# --- tampering, shared by the SQLite and PostgreSQL tests ---------------------------------------------------


LOG_SIZE = 35  # checkpoints every 10: signed sizes 10, 20, 30; entries 30..34 are the unsigned tail


class RawDb(Protocol):
    """Raw SQL access behind the store's back (placeholders written as ?)."""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None: ...


class SqliteRaw:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql, params)


def _entry(db: RawDb, idx: int) -> bytes:
    return bytes(db.query("SELECT entry FROM entries WHERE idx = ?", (idx,))[0][0])


def _set(db: RawDb, idx: int, entry: bytes, *, fix_leaf: bool) -> None:
    if fix_leaf:
        db.execute("UPDATE entries SET entry = ?, leaf_hash = ? WHERE idx = ?", (entry, leaf_hash(entry), idx))
    else:
        db.execute("UPDATE entries SET entry = ? WHERE idx = ?", (entry, idx))


def _flip_verdict(entry: bytes) -> bytes:
    for a, b in ((b'"verdict":"allow"', b'"verdict":"block"'), (b'"verdict":"block"', b'"verdict":"allow"')):
        if a in entry:
            return entry.replace(a, b)
    raise AssertionError("no verdict to flip")


def _shift(db: RawDb, start: int, delta: int) -> None:
    # Two steps so the primary key never collides mid-update.
    db.execute("UPDATE entries SET idx = idx + 1000000 WHERE idx >= ?", (start,))
    db.execute("UPDATE entries SET idx = idx - 1000000 + ? WHERE idx >= 1000000", (delta,))


def change(db: RawDb, store: AuditStore) -> None:
    _set(db, 13, _flip_verdict(_entry(db, 13)), fix_leaf=False)


def change_with_leaf(db: RawDb, store: AuditStore) -> None:
    _set(db, 13, _flip_verdict(_entry(db, 13)), fix_leaf=True)


def change_tail_with_leaf(db: RawDb, store: AuditStore) -> None:
    _set(db, 34, _flip_verdict(_entry(db, 34)), fix_leaf=True)


def rewrite_suffix(db: RawDb, store: AuditStore) -> None:
    """A forger without the key rewrites entries 13.. consistently: chain, leaf hashes and head all fixed."""
    rows = db.query("SELECT idx, tenant, entry FROM entries ORDER BY idx")
    cr = CompactRange()
    prev = b""
    for idx, tenant, entry in rows:
        data = bytes(entry)
        if idx >= 13:
            rec = bytes(entry_decoder.decode(data).record)
            data = encode_entry(idx, prev, _flip_verdict(rec), tenant)
            db.execute("UPDATE entries SET entry = ?, leaf_hash = ? WHERE idx = ?", (data, leaf_hash(data), idx))
        prev = leaf_hash(data)
        cr.append(prev)
    db.execute("UPDATE head SET last_leaf = ?, compact = ? WHERE id = 0", (prev, cr.to_bytes()))


def delete(db: RawDb, store: AuditStore) -> None:
    db.execute("DELETE FROM entries WHERE idx = 13")


def delete_and_renumber(db: RawDb, store: AuditStore) -> None:
    db.execute("DELETE FROM entries WHERE idx = 13")
    _shift(db, 14, -1)
    db.execute("UPDATE head SET size = size - 1 WHERE id = 0")


def insert_and_renumber(db: RawDb, store: AuditStore) -> None:
    copy = db.query("SELECT tenant, entry, leaf_hash FROM entries WHERE idx = 5")[0]
    _shift(db, 13, 1)
    db.execute("INSERT INTO entries (idx, tenant, entry, leaf_hash) VALUES (13, ?, ?, ?)", copy)
    db.execute("UPDATE head SET size = size + 1 WHERE id = 0")


def insert_at_end(db: RawDb, store: AuditStore) -> None:
    copy = db.query("SELECT tenant, entry, leaf_hash FROM entries WHERE idx = 34")[0]
    db.execute("INSERT INTO entries (idx, tenant, entry, leaf_hash) VALUES (35, ?, ?, ?)", copy)


def reorder(db: RawDb, store: AuditStore) -> None:
    a = db.query("SELECT tenant, entry, leaf_hash FROM entries WHERE idx = 13")[0]
    b = db.query("SELECT tenant, entry, leaf_hash FROM entries WHERE idx = 14")[0]
    db.execute("UPDATE entries SET tenant = ?, entry = ?, leaf_hash = ? WHERE idx = 13", b)
    db.execute("UPDATE entries SET tenant = ?, entry = ?, leaf_hash = ? WHERE idx = 14", a)


def truncate_row(db: RawDb, store: AuditStore) -> None:
    _set(db, 13, _entry(db, 13)[:50], fix_leaf=False)


def truncate_row_with_leaf(db: RawDb, store: AuditStore) -> None:
    _set(db, 13, _entry(db, 13)[:50], fix_leaf=True)


def truncate_log(db: RawDb, store: AuditStore) -> None:
    db.execute("DELETE FROM entries WHERE idx >= 25")


def truncate_log_and_head(db: RawDb, store: AuditStore) -> None:
    rows = db.query("SELECT leaf_hash FROM entries WHERE idx < 25 ORDER BY idx")
    cr = CompactRange()
    for (h,) in rows:
        cr.append(bytes(h))
    db.execute("DELETE FROM entries WHERE idx >= 25")
    db.execute(
        "UPDATE head SET size = 25, last_leaf = ?, compact = ? WHERE id = 0", (bytes(rows[-1][0]), cr.to_bytes())
    )


def delete_head(db: RawDb, store: AuditStore) -> None:
    db.execute("DELETE FROM head")


def change_head_last_leaf(db: RawDb, store: AuditStore) -> None:
    db.execute("UPDATE head SET last_leaf = ? WHERE id = 0", (b"\x07" * 32,))


def change_tenant_column(db: RawDb, store: AuditStore) -> None:
    db.execute("UPDATE entries SET tenant = 'other' WHERE idx = 13")


def fork(db: RawDb, store: AuditStore) -> None:
    """The signer itself signs a second, different root for size 20 (a split view)."""
    signed = cpmod.sign(cpmod.Checkpoint(store.origin, 20, b"\x42" * 32), store._keys.signing_key())
    db.execute("UPDATE checkpoints SET root = ?, note = ? WHERE size = 20", (signed.root, signed.text))


@dataclass(frozen=True)
class TamperCase:
    name: str
    apply: Callable[[RawDb, AuditStore], None]
    first_bad: int | None
    bad_checkpoint: int | None = None


def corrupt_checkpoint(db: RawDb, store: AuditStore) -> None:
    note = db.query("SELECT note FROM checkpoints WHERE size = 20")[0][0]
    body, _, sig = note.partition("\n\n")
    name, blob = sig[2:].split(" ")
    bad = blob[:10] + ("A" if blob[10] != "A" else "B") + blob[11:]
    db.execute("UPDATE checkpoints SET note = ? WHERE size = 20", (f"{body}\n\n\u2014 {name} {bad}",))


def foreign_key_checkpoint(db: RawDb, store: AuditStore) -> None:
    rogue = Ed25519PrivateKey.generate()
    root = bytes(db.query("SELECT root FROM checkpoints WHERE size = 20")[0][0])
    signed = cpmod.sign(cpmod.Checkpoint(store.origin, 20, root), rogue)
    db.execute("UPDATE checkpoints SET note = ? WHERE size = 20", (signed.text,))


TAMPER_CASES = [
    TamperCase("change", change, 13),
    TamperCase("change-with-leaf-hash", change_with_leaf, 13),
    TamperCase("change-unsigned-tail-with-leaf-hash", change_tail_with_leaf, 30),
    TamperCase("rewrite-suffix-consistently", rewrite_suffix, 10),
    TamperCase("delete", delete, 13),
    TamperCase("delete-and-renumber", delete_and_renumber, 13),
    TamperCase("insert-and-renumber", insert_and_renumber, 13),
    TamperCase("insert-at-end", insert_at_end, 35),
    TamperCase("reorder", reorder, 13),
    TamperCase("truncate-row", truncate_row, 13),
    TamperCase("truncate-row-with-leaf-hash", truncate_row_with_leaf, 13),
    TamperCase("truncate-log", truncate_log, 25),
    TamperCase("truncate-log-and-head", truncate_log_and_head, 25),
    TamperCase("change-tenant-column", change_tenant_column, 13),
    TamperCase("delete-head-row", delete_head, 30),
    TamperCase("change-head-last-leaf", change_head_last_leaf, 30),
    TamperCase("fork", fork, 10),
    TamperCase("corrupt-checkpoint-signature", corrupt_checkpoint, None, bad_checkpoint=20),
    TamperCase("checkpoint-by-foreign-key", foreign_key_checkpoint, None, bad_checkpoint=20),
]


def fill(store: AuditStore) -> None:
    for start in range(0, LOG_SIZE, 7):  # several batches, so checkpoints fall inside batches too
        store.append_many([make_record(i) for i in range(start, min(start + 7, LOG_SIZE))])
    assert store.verify().ok


def check_detected(store: AuditStore, case: TamperCase) -> dict[str, Any]:
    report = store.verify()
    assert not report.ok, case.name
    assert report.first_bad_index == case.first_bad, (case.name, report)
    if case.bad_checkpoint is not None:
        assert report.bad_checkpoint == case.bad_checkpoint, (case.name, report)
    assert report.reason
    return msgspec.to_builtins(report.to_dict())  # type: ignore[no-any-return]
