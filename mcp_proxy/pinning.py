"""Tool pinning against rug pulls.

A pin is the SHA-256 of what the model sees of a tool (name, title, description, inputSchema, outputSchema,
annotations) as canonical JSON (sorted keys, no insignificant whitespace, UTF-8). Pins are kept per
(tenant, server, tool) in SQLite (`<data_dir>/pins.db`), so they survive restarts and the `cisora-mesh pins`
command can approve or revoke them while a proxy is running.

States: `approved` (visible, callable); `pending` (first sight in approval mode, or a rename); `changed` (the
definition differs from the approved digest: hidden and denied until approved); `removed` (no longer listed);
`revoked` (hidden and denied until approved again). A tool is visible and callable only while its current digest
equals its approved digest and its state is `approved`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from mcp_proxy.errors import PinStoreError

PinStatus = Literal["approved", "pending", "changed", "removed", "revoked"]
DIGEST_FIELDS: Final = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS pins (
    tenant TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    status TEXT NOT NULL,
    approved_digest TEXT,
    seen_digest TEXT NOT NULL,
    shape_digest TEXT NOT NULL,
    definition TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (tenant, server, tool)
)
"""


def tool_digest(tool: dict[str, Any], *, with_name: bool = True) -> str:
    """SHA-256 (hex) of the canonical JSON of the model-visible fields of a tool definition."""
    fields = DIGEST_FIELDS if with_name else DIGEST_FIELDS[1:]
    seen = {k: tool[k] for k in fields if k in tool}
    return hashlib.sha256(msgspec.json.encode(seen, order="sorted")).hexdigest()


@dataclass(frozen=True, slots=True)
class Pin:
    tenant: str
    server: str
    tool: str
    status: PinStatus
    approved_digest: str | None
    seen_digest: str
    note: str
    first_seen: float
    updated: float

    @property
    def callable(self) -> bool:
        return self.status == "approved" and self.approved_digest == self.seen_digest

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "server": self.server,
            "tool": self.tool,
            "status": self.status,
            "approved_digest": self.approved_digest,
            "seen_digest": self.seen_digest,
            "note": self.note,
            "first_seen": self.first_seen,
            "updated": self.updated,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `observe` decided for one listed tool."""

    visible: bool
    status: PinStatus
    note: str = ""


class PinStore:
    """SQLite-backed pins. Thread-safe; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise PinStoreError(f"cannot open pin store {path}: {exc}") from None
        self._lock = threading.Lock()
        # `callable()` runs on every tools/call: answer it from memory while nobody has written the store. Writes
        # by other processes (`cisora-mesh pins approve`) show up as a new `PRAGMA data_version` (SQLite: it
        # changes when another connection commits); our own writes bump `_generation` and clear the cache.
        self._cache: dict[tuple[str, str, str], Pin | None] = {}
        self._data_version: int | None = None
        self._generation = 0

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> PinStore:
        return cls(data_dir / "pins.db")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- proxy side -------------------------------------------------------------------------------------------

    def observe(
        self,
        tenant: str,
        server: str,
        tools: list[dict[str, Any]],
        *,
        mode: Literal["tofu", "approve"],
        complete: bool,
        now: float | None = None,
    ) -> dict[str, Verdict]:
        """Record a `tools/list` page and decide, per tool name, whether the model may see it.

        `complete` is true when the page is the whole list (no cursor in or out): only then can a missing tool be
        recorded as removed, and only then is a new tool matched against removed ones to detect a rename.
        """
        ts = time.time() if now is None else now
        out: dict[str, Verdict] = {}
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    out = self._observe(tenant, server, tools, mode, complete, ts)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                self._forget()
        except sqlite3.Error as exc:
            raise PinStoreError(f"pin store write failed: {exc}") from None
        return out

    def _forget(self) -> None:
        # Called with `_lock` held, after a write through this connection.
        self._generation += 1
        self._cache.clear()

    def _observe(
        self,
        tenant: str,
        server: str,
        tools: list[dict[str, Any]],
        mode: Literal["tofu", "approve"],
        complete: bool,
        ts: float,
    ) -> dict[str, Verdict]:
        rows = {
            r[0]: r
            for r in self._db.execute(
                "SELECT tool, status, approved_digest, seen_digest, shape_digest FROM pins WHERE tenant=? AND server=?",
                (tenant, server),
            )
        }
        listed = {str(t.get("name")) for t in tools}
        # Tools that were known and are now gone: candidates for a rename, then marked removed.
        gone = {name: r for name, r in rows.items() if name not in listed and r[1] != "removed"} if complete else {}
        removed_shapes = {r[4]: name for name, r in rows.items() if name not in listed}
        out: dict[str, Verdict] = {}
        for tool in tools:
            name = str(tool.get("name"))
            digest = tool_digest(tool)
            shape = tool_digest(tool, with_name=False)
            definition = msgspec.json.encode(tool, order="sorted").decode()
            row = rows.get(name)
            if row is None:
                renamed_from = removed_shapes.get(shape) if complete else None
                if renamed_from is not None:
                    status: PinStatus = "pending"
                    note = f"renamed from {renamed_from!r}"
                elif mode == "tofu":
                    status, note = "approved", "trusted on first use"
                else:
                    status, note = "pending", "new tool awaiting approval"
                approved = digest if status == "approved" else None
                self._db.execute(
                    "INSERT INTO pins VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (tenant, server, name, status, approved, digest, shape, definition, note, ts, ts),
                )
                out[name] = Verdict(status == "approved", status, note)
                continue
            _, old_status, approved_digest, seen_digest, _ = row
            if old_status == "revoked":
                status, note = "revoked", "revoked"
            elif approved_digest == digest:
                status, note = "approved", ""
            elif approved_digest is None:
                status, note = "pending", "awaiting approval"
            else:
                status, note = "changed", "definition changed since it was approved"
            if status != old_status or digest != seen_digest:
                self._db.execute(
                    "UPDATE pins SET status=?, seen_digest=?, shape_digest=?, definition=?, note=?, updated=? "
                    "WHERE tenant=? AND server=? AND tool=?",
                    (status, digest, shape, definition, note, ts, tenant, server, name),
                )
            out[name] = Verdict(status == "approved", status, note)
        for name in gone:
            self._db.execute(
                "UPDATE pins SET status='removed', note='no longer listed', updated=? "
                "WHERE tenant=? AND server=? AND tool=?",
                (ts, tenant, server, name),
            )
        return out

    def callable(self, tenant: str, server: str, tool: str, *, mode: Literal["tofu", "approve"]) -> Pin | None:
        """The pin if calling `tool` is not allowed, else None. An unknown tool is allowed only in TOFU mode."""
        pin = self._cached(tenant, server, tool)
        if pin is None:
            if mode == "tofu":
                return None
            return Pin(tenant, server, tool, "pending", None, "", "never listed", 0.0, 0.0)
        return None if pin.callable else pin

    def _cached(self, tenant: str, server: str, tool: str) -> Pin | None:
        key = (tenant, server, tool)
        try:
            with self._lock:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
                if version != self._data_version:
                    self._data_version = version
                    self._cache.clear()
                elif key in self._cache:
                    return self._cache[key]
                generation = self._generation
        except sqlite3.Error as exc:
            raise PinStoreError(f"pin store read failed: {exc}") from None
        pin = self.get(tenant, server, tool)
        with self._lock:
            if generation == self._generation and version == self._data_version:
                self._cache[key] = pin
        return pin

    # --- operator side ----------------------------------------------------------------------------------------

    def get(self, tenant: str, server: str, tool: str) -> Pin | None:
        rows = self._select("WHERE tenant=? AND server=? AND tool=?", (tenant, server, tool))
        return rows[0] if rows else None

    def list_pins(self, tenant: str, server: str | None = None) -> list[Pin]:
        if server is None:
            return self._select("WHERE tenant=? ORDER BY server, tool", (tenant,))
        return self._select("WHERE tenant=? AND server=? ORDER BY tool", (tenant, server))

    def approve(self, tenant: str, server: str, tool: str, *, now: float | None = None) -> Pin | None:
        """Trust the tool's current definition. Returns the updated pin, or None when there is no such pin."""
        return self._set("status='approved', approved_digest=seen_digest, note='approved'", tenant, server, tool, now)

    def revoke(self, tenant: str, server: str, tool: str, *, now: float | None = None) -> Pin | None:
        """Hide the tool and deny its calls until it is approved again."""
        return self._set("status='revoked', note='revoked'", tenant, server, tool, now)

    def _set(self, assignment: str, tenant: str, server: str, tool: str, now: float | None) -> Pin | None:
        ts = time.time() if now is None else now
        try:
            with self._lock:
                cur = self._db.execute(
                    f"UPDATE pins SET {assignment}, updated=? WHERE tenant=? AND server=? AND tool=?",  # noqa: S608 - fixed fragments
                    (ts, tenant, server, tool),
                )
                self._forget()
        except sqlite3.Error as exc:
            raise PinStoreError(f"pin store write failed: {exc}") from None
        return self.get(tenant, server, tool) if cur.rowcount else None

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Pin]:
        # `where` is one of the fixed clauses above; values are always bound parameters.
        sql = "SELECT tenant, server, tool, status, approved_digest, seen_digest, note, first_seen, updated FROM pins "
        sql += where
        try:
            with self._lock:
                rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise PinStoreError(f"pin store read failed: {exc}") from None
        return [Pin(*row) for row in rows]
