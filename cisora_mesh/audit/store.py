"""The audit store: an append-only RFC 9162 Merkle log of audit records, with signed checkpoints.

Appends go through one writer thread per store ("group commit"): callers enqueue records and block on a
future; the writer drains whatever is queued, appends it all in one database transaction and resolves every
future only after COMMIT returned, i.e. after the batch is durable. Throughput then scales with concurrency
instead of paying one fsync per record, and no caller is ever acknowledged early.

Inside the transaction the head row is locked first (see `backends.base`), so the index sequence has no gaps
or forks even with several processes or replicas appending to one database.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cisora_mesh.audit import checkpoint as cpmod
from cisora_mesh.audit.backends.base import Backend, Head, ServerSideAppender, WriteTx
from cisora_mesh.audit.base import AuditSink as AuditSink
from cisora_mesh.audit.errors import AuditError, InvalidProof, StoreError
from cisora_mesh.audit.keys import KeyRing
from cisora_mesh.audit.merkle import (
    CompactRange,
    consistency_path,
    inclusion_path,
    leaf_hash,
    root_of,
)
from cisora_mesh.audit.proofs import ConsistencyProof as ConsistencyProof
from cisora_mesh.audit.proofs import InclusionProof as InclusionProof
from cisora_mesh.audit.record import AuditRecord, encode_entry, entry_decoder
from cisora_mesh.audit.verify import VerifyReport, verify_rows
from cisora_mesh.events import Decision, Event

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_EVERY: Final = 1000
_MAX_BATCH: Final = 8192  # records per transaction: bounds lock hold time and memory, still amortises fsync


class _Job:
    __slots__ = ("future", "records")

    def __init__(self, records: list[tuple[str, bytes]] | None) -> None:
        self.records = records  # None: sign a checkpoint at this point of the sequence
        self.future: Future[Any] = Future()


_STOP: Final = _Job(None)


class AuditStore:
    """An `AuditSink` backed by a Merkle log in SQLite or PostgreSQL. Use `open_store` to get one."""

    def __init__(
        self,
        backend: Backend,
        *,
        keyring: KeyRing,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = None,
        checkpoint_on_close: bool = True,
    ) -> None:
        self._backend = backend
        self._checkpoint_on_close = checkpoint_on_close
        self._keys = keyring
        self._digest_key: bytes | None = None
        self._every = checkpoint_every if checkpoint_every and checkpoint_every > 0 else None
        self._interval = checkpoint_interval
        self.log_id = backend.setup()
        self.origin = f"cisora-mesh/audit/{self.log_id}"
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_batch = 1  # records in the previous batch (group-commit linger heuristic)
        self._last_commit = 0.0  # seconds the previous commit took
        self._start_lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        """The storage backend (e.g. for `PostgresBackend.grant_tenant_reader`)."""
        return self._backend

    # --- writing ------------------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cisora-audit-writer", daemon=True)
                    self._thread.start()

    def _submit(self, job: _Job) -> Future[Any]:
        if self._closed:
            raise StoreError("audit store is closed")
        self._ensure_writer()
        self._queue.put(job)
        return job.future

    def submit(self, records: Iterable[AuditRecord]) -> Future[list[int]]:
        """Enqueue records; the future resolves to their indices once they are durable."""
        return self._submit(_Job([(r.tenant, r.canonical()) for r in records]))

    def append_many(self, records: Iterable[AuditRecord]) -> list[int]:
        result: list[int] = self.submit(records).result()
        return result

    def append_record(self, record: AuditRecord) -> int:
        return self.append_many((record,))[0]

    def append_decision(self, decision: Decision, event: Event, *, policy_version: str | None = None) -> int:
        return self.append_record(self._decision_record(decision, event, policy_version))

    def submit_decision(self, decision: Decision, event: Event) -> Future[int]:
        """Enqueue a decision; the future resolves to its index once durable (async callers await it)."""
        batch = self.submit((self._decision_record(decision, event, None),))
        single: Future[int] = Future()

        def _done(done: Future[list[int]]) -> None:
            error = done.exception()
            if error is not None:
                single.set_exception(error)
            else:
                single.set_result(done.result()[0])

        batch.add_done_callback(_done)
        return single

    def _decision_record(self, decision: Decision, event: Event, policy_version: str | None) -> AuditRecord:
        if self._digest_key is None:
            self._digest_key = self._keys.digest_key()
        return AuditRecord.from_decision(decision, event, policy_version=policy_version, digest_key=self._digest_key)

    def append_transition(
        self,
        *,
        decision_id: str,
        from_state: str,
        to_state: str,
        actor: str,
        tenant: str = "default",
        trace_id: str | None = None,
    ) -> int:
        return self.append_record(
            AuditRecord.transition(
                decision_id=decision_id,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                tenant=tenant,
                trace_id=trace_id,
            )
        )

    def checkpoint(self) -> cpmod.SignedCheckpoint:
        """Sign and store a checkpoint of the current tree (after every append already acknowledged)."""
        result: cpmod.SignedCheckpoint = self._submit(_Job(None)).result()
        return result

    def _run(self) -> None:
        interval = self._interval
        last_cp = time.monotonic()
        dirty = False  # records committed since the last checkpoint (an idle log needs no new checkpoint)
        while True:
            try:
                first = self._queue.get(timeout=interval) if interval else self._queue.get()
            except queue.Empty:
                first = None
            jobs: list[_Job] = []
            stop = first is _STOP
            if first is not None and not stop:
                jobs.append(first)
                count = len(first.records or ())
                # Drain what queued up while the previous batch was committing: this is the group commit.
                # If fewer callers are waiting than last time, the others are most likely just being woken up
                # by the previous commit: linger briefly (a fraction of a commit) so they share this one
                # instead of each paying for a transaction of their own. A lone caller never lingers.
                linger_until = time.monotonic() + min(self._last_commit * 0.5, 0.002)
                while count < _MAX_BATCH:
                    try:
                        if count < self._last_batch:
                            timeout = linger_until - time.monotonic()
                            job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                        else:
                            job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop = True
                        break
                    jobs.append(job)
                    count += len(job.records or ())
                self._last_batch = count
            dirty = dirty or any(j.records for j in jobs)
            if interval is not None and dirty and time.monotonic() - last_cp >= interval:
                jobs.append(_Job(None))  # a timed checkpoint nobody waits for
            began = time.monotonic()
            committed = bool(jobs) and self._commit(jobs)
            if jobs:
                self._last_commit = time.monotonic() - began
            if committed and any(j.records is None for j in jobs):
                last_cp = time.monotonic()
                dirty = False
            if stop:
                if dirty and self._checkpoint_on_close:
                    # Sign what this store appended, so even a short-lived process (one `scan`) leaves a log
                    # that is covered by a signature, not just by the hash chain.
                    self._commit([_Job(None)])
                return

    def _sign(self, tx: WriteTx, cr: CompactRange, now: float) -> cpmod.SignedCheckpoint:
        signed = cpmod.sign(cpmod.Checkpoint(self.origin, cr.size, cr.root()), self._keys.signing_key())
        tx.insert_checkpoint((cr.size, signed.key_ids[0], signed.root, signed.text), now)
        return signed

    def _commit(self, jobs: list[_Job]) -> bool:
        if isinstance(self._backend, ServerSideAppender):
            return self._commit_server_side(self._backend, jobs)
        now = time.time()
        every = self._every
        results: list[Any] = []
        try:
            with self._backend.write() as tx:
                head = tx.head()
                cr = CompactRange.from_bytes(head.size, head.compact)
                prev = head.last_leaf
                rows: list[tuple[int, str, bytes, bytes]] = []
                for job in jobs:
                    if job.records is None:
                        results.append(self._sign(tx, cr, now))
                        continue
                    indices = []
                    for tenant, record in job.records:
                        idx = cr.size
                        data = encode_entry(idx, prev, record, tenant)
                        lh = leaf_hash(data)
                        cr.append(lh)
                        rows.append((idx, tenant, data, lh))
                        indices.append(idx)
                        prev = lh
                        if every is not None and cr.size % every == 0:
                            self._sign(tx, cr, now)
                    results.append(indices)
                if rows:
                    tx.insert_entries(rows)
                    tx.set_head(Head(cr.size, prev, cr.to_bytes()))
        except AuditError as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - any driver error must reach the blocked callers, typed
            err = StoreError(f"audit append failed ({type(exc).__name__}: {exc})")
            for job in jobs:
                job.future.set_exception(err)
            return False
        # Only now, after COMMIT returned, is anyone told their index.
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)
        return True

    def _commit_server_side(self, backend: ServerSideAppender, jobs: list[_Job]) -> bool:
        """Runs of record jobs go to the database as one call each; checkpoint jobs are signed between them."""
        done: list[tuple[_Job, Any]] = []
        run: list[_Job] = []

        def flush() -> None:
            if not any(job.records for job in run):
                done.extend((job, []) for job in run)
                run.clear()
                return
            first, crossed = backend.append_batch([item for job in run for item in job.records or ()], self._every or 0)
            for job in run:
                n = len(job.records or ())
                done.append((job, list(range(first, first + n))))
                first += n
            run.clear()
            if crossed:
                # After the commit: the records are durable whatever happens here. A checkpoint lost to a crash
                # at this point is only a missing attestation; the next one covers the same entries.
                try:
                    now = time.time()
                    notes = [
                        cpmod.sign(cpmod.Checkpoint(self.origin, n, root), self._keys.signing_key())
                        for n, root in crossed
                    ]
                    backend.insert_checkpoints([(c.size, c.key_ids[0], c.root, c.text, now) for c in notes])
                except AuditError as exc:
                    logger.error("audit checkpoint after append failed: %s", exc)

        try:
            for job in jobs:
                if job.records is not None:
                    run.append(job)
                    continue
                flush()
                with self._backend.write() as tx:
                    head = tx.head()
                    done.append((job, self._sign(tx, CompactRange.from_bytes(head.size, head.compact), time.time())))
            flush()
        except Exception as exc:  # noqa: BLE001 - every waiting caller must get a typed error, never a hang
            err = exc if isinstance(exc, AuditError) else StoreError(f"audit append failed ({type(exc).__name__})")
            finished = {id(job) for job, _ in done}
            for job in jobs:
                if id(job) not in finished:
                    job.future.set_exception(err)
            for job, result in done:
                job.future.set_result(result)
            return False
        for job, result in done:
            job.future.set_result(result)
        return True

    # --- reading ------------------------------------------------------------------------------------------

    def _head(self) -> Head:
        head = self._backend.head()
        if head is None:
            raise StoreError("audit store has no head row")
        return head

    def size(self) -> int:
        return self._head().size

    def root(self) -> bytes:
        head = self._head()
        return CompactRange.from_bytes(head.size, head.compact).root()

    def checkpoints(self) -> list[cpmod.SignedCheckpoint]:
        return [cpmod.parse(row[3]) for row in self._backend.checkpoints()]

    def latest_checkpoint(self) -> cpmod.SignedCheckpoint | None:
        rows = self._backend.checkpoints()
        return cpmod.parse(rows[-1][3]) if rows else None

    def _leaves(self, tree_size: int) -> list[bytes]:
        size = self.size()
        if not 0 < tree_size <= size:
            raise InvalidProof(f"tree size {tree_size} is outside the log (size {size})")
        leaves = self._backend.leaf_hashes(tree_size)
        if len(leaves) != tree_size:
            raise StoreError("the log has missing entries; run verify")
        return leaves

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """RFC 9162 2.1.3.1 audit path for ``index`` in the tree of ``tree_size`` entries (default: all)."""
        size = self.size() if tree_size is None else tree_size
        leaves = self._leaves(size)
        if not 0 <= index < size:
            raise InvalidProof(f"index {index} is outside a tree of size {size}")
        return InclusionProof(index, size, leaves[index], tuple(inclusion_path(index, leaves)))

    def consistency_proof(self, old: int, new: int | None = None) -> ConsistencyProof:
        """RFC 9162 2.1.4.1 proof that the tree of ``old`` entries is a prefix of the tree of ``new``."""
        size = self.size() if new is None else new
        leaves = self._leaves(size)
        return ConsistencyProof(old, size, tuple(consistency_path(old, leaves)))

    def root_at(self, tree_size: int) -> bytes:
        return root_of(self._leaves(tree_size))

    def verify(
        self,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
        *,
        trusted: Sequence[cpmod.SignedCheckpoint] = (),
    ) -> VerifyReport:
        """Recompute everything from the raw rows (see `cisora_mesh.audit.verify`)."""
        keys = self._keys.public_keys() if public_keys is None else public_keys
        with self._backend.snapshot() as snap:
            return verify_rows(snap.entries, snap.checkpoints, snap.head, keys, origin=self.origin, trusted=trusted)

    def export(self, fp: IO[bytes]) -> int:
        """JSON lines (see docs/audit.md): a ``log`` line with the origin, every checkpoint, then every entry with
        its exact stored bytes embedded raw. Checkpoints come first (read before the entries, so every checkpoint
        is covered by the entries that follow) so `verify_export` can check the file in one streaming pass."""
        enc = msgspec.json.Encoder()
        n = 0
        with self._backend.snapshot() as snap:
            fp.write(enc.encode({"type": "log", "origin": self.origin}) + b"\n")
            for size, kid, root, note in snap.checkpoints:
                line = {"type": "checkpoint", "size": size, "key_id": kid, "root": root.hex(), "note": note}
                fp.write(enc.encode(line) + b"\n")
            for idx, tenant, entry, lh in snap.entries:
                line = {
                    "type": "entry",
                    "index": idx,
                    "tenant": tenant,
                    "leaf_hash": lh.hex(),
                    "entry": msgspec.Raw(entry),
                }
                fp.write(enc.encode(line) + b"\n")
                n += 1
        return n

    def tail(self, n: int = 10) -> list[dict[str, Any]]:
        out = []
        for idx, tenant, entry, lh in self._backend.tail(n):
            head = entry_decoder.decode(entry)
            out.append(
                {
                    "index": idx,
                    "tenant": tenant,
                    "leaf_hash": lh.hex(),
                    "record": msgspec.json.decode(bytes(head.record)),
                }
            )
        return out

    # --- keys ---------------------------------------------------------------------------------------------

    def export_public_key(self) -> bytes:
        return self._keys.export_public_key()

    def public_keys(self) -> Mapping[str, Ed25519PublicKey]:
        return self._keys.public_keys()

    def rotate_key(self) -> str:
        return self._keys.rotate()

    # --- lifecycle ----------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        # A caller that passed the closed check just as we closed may have queued behind _STOP: fail it rather
        # than leave it blocked forever.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                job.future.set_exception(StoreError("audit store is closed"))
        self._backend.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(
    url: str | None,
    *,
    data_dir: Path,
    checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
    checkpoint_interval: float | None = None,
    checkpoint_on_close: bool = True,
    create: bool = True,
) -> AuditStore:
    """Open (creating if needed) the audit store named by ``url``.

    ``None`` is SQLite at ``data_dir/audit.db``; ``sqlite:///abs/path.db``; ``postgresql://...`` (an optional
    ``schema=NAME`` query parameter selects the schema). Keys live in ``data_dir/keys``. With
    ``create=False`` a missing SQLite file is an error instead of a new empty log (verifiers use this).
    Checkpoints are signed every ``checkpoint_every`` entries, every ``checkpoint_interval`` seconds if the log
    grew, on demand, and (``checkpoint_on_close``) when a store that appended something is closed.
    """
    keyring = KeyRing(data_dir / "keys")
    backend: Backend
    if url is None or url.startswith("sqlite:"):
        from cisora_mesh.audit.backends.sqlite import SqliteBackend

        if url is None:
            path = data_dir / "audit.db"
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite://"))
        else:
            raise StoreError("SQLite store URLs look like sqlite:///absolute/path.db")
        backend = SqliteBackend(path, create=create)
    elif url.startswith(("postgresql://", "postgres://")):
        from cisora_mesh.audit.backends.postgres import PostgresBackend

        backend = PostgresBackend(url)
    else:
        raise StoreError("unsupported audit store URL (use sqlite:///path.db or postgresql://...)")
    try:
        return AuditStore(
            backend,
            keyring=keyring,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            checkpoint_on_close=checkpoint_on_close,
        )
    except BaseException:
        backend.close()
        raise
