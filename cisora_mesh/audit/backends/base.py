"""What a storage backend provides to the store: a locked write transaction and a few reads.

The append algorithm lives once, in `cisora_mesh.audit.store`; a backend only knows its SQL. Every write
transaction starts by locking the single ``head`` row (tree size, last leaf hash, compact range), so index
assignment is serialised by the database itself: several threads, processes or replicas can append to one
log and never produce a gap or a fork.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Head:
    """The log's state after its last committed append."""

    size: int
    last_leaf: bytes  # leaf hash of entry size-1 (b"" for an empty log)
    compact: bytes  # CompactRange.to_bytes(): roots of the perfect subtrees covering [0, size)


EntryRow = tuple[int, str, bytes, bytes]  # idx, tenant, entry bytes (the leaf data), stored leaf hash
CheckpointRow = tuple[int, str, bytes, str]  # size, key id, root, note text


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Head, checkpoints and entries as of one instant (one read transaction), for verify and export: read
    separately, a concurrent append could land between the reads and look like tampering."""

    head: Head | None
    checkpoints: list[CheckpointRow]
    entries: Iterator[EntryRow]


class WriteTx(Protocol):
    def head(self) -> Head:
        """Read the head row, holding a lock on it until the transaction ends."""
        ...

    def insert_entries(self, rows: Sequence[EntryRow]) -> None: ...

    def insert_checkpoint(self, row: CheckpointRow, created_at: float) -> None: ...

    def set_head(self, head: Head) -> None: ...


class Backend(Protocol):
    name: str

    def setup(self) -> str:
        """Create the tables if missing (idempotent, safe to race); return the log id."""
        ...

    def write(self) -> AbstractContextManager[WriteTx]:
        """A write transaction: committed durably on normal exit, rolled back on an exception."""
        ...

    def head(self) -> Head | None: ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """A consistent read of head, checkpoints and (streamed) entries."""
        ...

    def iter_entries(self, start: int = 0, stop: int | None = None) -> Iterator[EntryRow]:
        """Rows in index order, exactly as stored (gaps and all)."""
        ...

    def leaf_hashes(self, stop: int) -> list[bytes]:
        """Stored leaf hashes of entries [0, stop)."""
        ...

    def checkpoints(self) -> list[CheckpointRow]:
        """All stored checkpoints, by size."""
        ...

    def tail(self, n: int) -> list[EntryRow]: ...

    def close(self) -> None: ...


@runtime_checkable
class ServerSideAppender(Protocol):
    """A backend that runs the append algorithm inside the database (PostgreSQL).

    The store then sends each batch as one call, so the head-row lock is never held across a network round
    trip; checkpoints for the sizes the batch crossed are signed right after the commit.
    """

    def append_batch(self, items: Sequence[tuple[str, bytes]], every: int) -> tuple[int, list[tuple[int, bytes]]]:
        """Append (tenant, canonical record) pairs; return the first index and the [(size, root)] to sign."""
        ...

    def insert_checkpoints(self, rows: Sequence[tuple[int, str, bytes, str, float]]) -> None: ...
