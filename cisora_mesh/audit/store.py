"""The audit store: an append-only RFC 9162 Merkle log of audit records, with signed checkpoints.

Appends go through one writer thread per store ("group commit"): callers enqueue records and get a future
(the blocking `append_*` calls wait on it, `aappend_*` await it); the writer drains whatever is queued, appends
it all in one database transaction and resolves every future only after COMMIT returned, i.e. after the batch is
durable. Throughput then scales with the number of records in flight (concurrent callers, or one caller keeping
several futures open) instead of paying one fsync per record, and no caller is ever acknowledged early. At most
``max_pending`` records are in flight: beyond that, enqueueing waits (backpressure) instead of growing the queue.

Inside the transaction the head row is locked first (see `backends.base`), so the index sequence has no gaps
or forks even with several processes or replicas appending to one database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import IO, Any, Final

import anyio
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
# Records accepted but not yet acknowledged (queued or being committed) before `submit` makes its caller wait: a
# producer faster than the disk is slowed down instead of growing the queue without limit. Room for one full
# batch being committed plus a few queued behind it, so the bound never costs throughput.
DEFAULT_MAX_PENDING: Final = 4 * _MAX_BATCH
# How long a record nobody waits for may wait to share a commit (see `AuditStore._linger_for_background`).
DEFAULT_BACKGROUND_LINGER: Final = 0.005


class _Job:
    __slots__ = ("future", "records", "single", "urgent")

    def __init__(
        self, records: list[tuple[str, bytes]] | None, *, single: bool = False, background: bool = False
    ) -> None:
        self.records = records  # None: sign a checkpoint at this point of the sequence
        self.single = single  # resolve to the one record's index instead of a list of indices
        # Somebody waits for it. Background records (nobody waits) may linger to share a commit.
        self.urgent = not (background and records)
        self.future: Future[Any] = Future()


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass  # the caller cancelled its future (e.g. an awaiting task was cancelled); the record stays appended


async def _await_future(future: Future[Any]) -> Any:
    """Await a future resolved by the writer thread: natively under asyncio, from a worker thread otherwise."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return await anyio.to_thread.run_sync(future.result)
    return await asyncio.wrap_future(future)


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
        max_pending: int = DEFAULT_MAX_PENDING,
        background_linger: float = DEFAULT_BACKGROUND_LINGER,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if background_linger < 0:
            raise ValueError("background_linger must not be negative")
        self._backend = backend
        self._checkpoint_on_close = checkpoint_on_close
        self._keys = keyring
        self._digest_key: bytes | None = None
        self._every = checkpoint_every if checkpoint_every and checkpoint_every > 0 else None
        self._interval = checkpoint_interval
        self._max_pending = max_pending
        self._background_linger = background_linger
        # Checked once: a runtime-checkable Protocol isinstance() walks the protocol's attributes every call.
        self._server_side = backend if isinstance(backend, ServerSideAppender) else None
        self.log_id = backend.setup()
        self.origin = f"cisora-mesh/audit/{self.log_id}"
        # The queue between callers and the writer thread. One lock guards it; the writer waits on `_work`,
        # callers short of room wait on `_room`. A caller wakes the writer only when the writer asked for it
        # (`_waiting`) and the queue reached the size it asked for (`_wake_at`), so a stream of records costs
        # one wake-up per batch, not one per record (each wake-up is a thread switch fighting for the GIL).
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # records in _jobs
        self._urgent = 0  # jobs in _jobs somebody waits for (not background)
        self._queue_started = 0.0  # when the first job of the current queue arrived
        self._pending = 0  # records accepted and not yet acknowledged (queued + being committed)
        self._waiting = False
        self._wake_at = 1
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._writer_ident: int | None = None
        self._last_batch = 1  # records in the previous batch (group-commit linger heuristic)
        self._last_commit = 0.0  # seconds the previous commit took
        self._start_lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        """The storage backend (e.g. for `PostgresBackend.grant_tenant_reader`)."""
        return self._backend

    @property
    def pending(self) -> int:
        """Records accepted but not yet durable (queued or being committed): at most ``max_pending``, or one
        larger batch on its own."""
        return self._pending

    # --- writing ------------------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cisora-audit-writer", daemon=True)
                    self._thread.start()

    def _enqueue(self, job: _Job, *, wait: bool) -> bool:
        """Queue ``job``; with ``wait``, first block while ``max_pending`` records are in flight. Without it,
        return False instead of blocking. A single batch larger than the bound is let through once the queue is
        empty, and the writer thread itself (a done-callback appending) never waits on itself."""
        n = len(job.records) if job.records is not None else 0
        self._ensure_writer()
        with self._lock:
            if self._closed:
                raise StoreError("audit store is closed")
            if n and self._pending and self._pending + n > self._max_pending:
                if not wait:
                    return False
                if threading.get_ident() != self._writer_ident:
                    while self._pending and self._pending + n > self._max_pending:
                        self._room.wait()
                        if self._closed:
                            raise StoreError("audit store is closed")
            if not self._jobs:
                self._queue_started = time.monotonic()
            self._pending += n
            self._queued += n
            self._jobs.append(job)
            self._urgent += job.urgent
            if self._waiting and (job.urgent or self._queued >= self._wake_at):
                self._work.notify()
        return True

    def _submit(self, job: _Job) -> Future[Any]:
        self._enqueue(job, wait=True)
        return job.future

    async def _asubmit(self, job: _Job) -> Future[Any]:
        if not self._enqueue(job, wait=False):
            # Full: wait for room in a worker thread, so the event loop keeps running meanwhile.
            await anyio.to_thread.run_sync(self._submit, job)
        return job.future

    def submit(self, records: Iterable[AuditRecord]) -> Future[list[int]]:
        """Enqueue records; the future resolves to their indices once they are durable.

        Blocks (backpressure) while ``max_pending`` records are already in flight; see `aappend_record`.
        """
        return self._submit(_Job([(r.tenant, r.canonical()) for r in records]))

    def submit_record(self, record: AuditRecord) -> Future[int]:
        """Enqueue one record; the future resolves to its index once it is durable (blocks like `submit`)."""
        return self._submit(_Job([(record.tenant, record.canonical())], single=True))

    def append_many(self, records: Iterable[AuditRecord]) -> list[int]:
        result: list[int] = self.submit(records).result()
        return result

    def append_record(self, record: AuditRecord) -> int:
        result: int = self.submit_record(record).result()
        return result

    async def aappend_record(self, record: AuditRecord) -> int:
        """`append_record` for async code: returns the index once the record is durable, never blocking the
        event loop, not even for backpressure. Cancelling the caller does not withdraw a record already queued."""
        future = await self._asubmit(_Job([(record.tenant, record.canonical())], single=True))
        result: int = await _await_future(future)
        return result

    def append_decision(self, decision: Decision, event: Event, *, policy_version: str | None = None) -> int:
        return self.append_record(self._decision_record(decision, event, policy_version))

    async def aappend_decision(self, decision: Decision, event: Event, *, policy_version: str | None = None) -> int:
        """`append_decision` for async code (see `aappend_record`)."""
        return await self.aappend_record(self._decision_record(decision, event, policy_version))

    def submit_decision(self, decision: Decision, event: Event, *, background: bool = False) -> Future[int]:
        """Enqueue a decision; the future resolves to its index once durable (async callers await it).

        `background=True` says nobody waits for this record (an allow the caller already acted on): the writer
        may hold it up to `background_linger` seconds to commit it together with the records that follow.
        """
        record = self._decision_record(decision, event, None)
        return self._submit(_Job([(record.tenant, record.canonical())], single=True, background=background))

    async def asubmit_decision(self, decision: Decision, event: Event, *, background: bool = False) -> Future[int]:
        """`submit_decision` for async code: waits for room (backpressure) without blocking the event loop, then
        returns the future that resolves once the record is durable."""
        record = self._decision_record(decision, event, None)
        job = _Job([(record.tenant, record.canonical())], single=True, background=background)
        future: Future[int] = await self._asubmit(job)
        return future

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

    def _take(self, interval: float | None) -> tuple[list[_Job], int, bool, bool]:
        """Wait for work and take the next batch: (jobs, records in them, a checkpoint was asked for, stop after
        this batch)."""
        with self._lock:
            if not self._jobs and not self._stopping:
                self._waiting, self._wake_at = True, 1
                self._work.wait(interval)
                self._waiting = False
            jobs: list[_Job] = []
            count = 0
            signs = False
            if self._jobs:
                # Group commit: take whatever queued up while the previous batch was committing. If fewer
                # records are waiting than last time, the other callers are most likely just being woken up by
                # the previous commit: linger briefly (a fraction of a commit) so they share this one instead of
                # each paying for a transaction of their own. One wake-up ends the linger, when the queue is
                # back to the previous batch's size. A lone caller (previous batch 1) never lingers.
                want = min(self._last_batch, _MAX_BATCH)
                linger = min(self._last_commit * 0.5, 0.002)
                if self._queued < want and linger > 0 and not self._stopping:
                    self._waiting, self._wake_at = True, want
                    self._work.wait(linger)
                    self._waiting = False
                self._linger_for_background()
                while self._jobs and count < _MAX_BATCH:
                    job = self._jobs.popleft()
                    jobs.append(job)
                    self._urgent -= job.urgent
                    if job.records is not None:
                        count += len(job.records)
                    else:
                        signs = True
                self._queued -= count
                self._last_batch = max(count, 1)
            return jobs, count, signs, self._stopping and not self._jobs

    def _linger_for_background(self) -> None:
        """With only background records queued (allows nobody waits for), wait up to `background_linger` after
        the first of them arrived, so that records arriving one at a time (a proxy relaying one call after the
        other) share a commit instead of each paying a transaction and an fsync. Any record somebody waits for,
        a checkpoint, a full batch or closing ends the wait at once. Called with the lock held."""
        deadline = self._queue_started + self._background_linger
        while self._jobs and not self._urgent and self._queued < _MAX_BATCH and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._waiting, self._wake_at = True, _MAX_BATCH
            self._work.wait(remaining)
            self._waiting = False

    def _run(self) -> None:
        self._writer_ident = threading.get_ident()
        interval = self._interval
        last_cp = time.monotonic()
        dirty = False  # records committed since the last checkpoint (an idle log needs no new checkpoint)
        while True:
            jobs, count, signs, stop = self._take(interval)
            dirty = dirty or count > 0
            if interval is not None and dirty and time.monotonic() - last_cp >= interval:
                jobs.append(_Job(None))  # a timed checkpoint nobody waits for
                signs = True
            committed = False
            if jobs:
                began = time.monotonic()
                committed = self._commit(jobs)
                self._last_commit = time.monotonic() - began
            if count:
                with self._lock:
                    self._pending -= count
                    self._room.notify_all()
            if committed and signs:
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
        if self._server_side is not None:
            return self._commit_server_side(self._server_side, jobs)
        now = time.time()
        every = self._every
        results: list[Any] = []
        sha256 = hashlib.sha256
        try:
            with self._backend.write() as tx:
                head = tx.head()
                cr = CompactRange.from_bytes(head.size, head.compact)
                append = cr.append
                prev = head.last_leaf
                rows: list[tuple[int, str, bytes, bytes]] = []
                add_row = rows.append
                for job in jobs:
                    if job.records is None:
                        results.append(self._sign(tx, cr, now))
                        continue
                    first = cr.size
                    for tenant, record in job.records:
                        idx = cr.size
                        data = encode_entry(idx, prev, record, tenant)
                        # RFC 9162 section 2.1.1 leaf hash, SHA-256(0x00 || entry), as `merkle.leaf_hash` (inlined:
                        # this loop is the per-record cost of the writer thread).
                        lh = sha256(b"\x00" + data).digest()
                        append(lh)
                        add_row((idx, tenant, data, lh))
                        prev = lh
                        if every is not None and cr.size % every == 0:
                            self._sign(tx, cr, now)
                    results.append(first if job.single else list(range(first, cr.size)))
                if rows:
                    tx.insert_entries(rows)
                    tx.set_head(Head(cr.size, prev, cr.to_bytes()))
        except AuditError as exc:
            for job in jobs:
                _settle(job.future, error=exc)
            return False
        except Exception as exc:  # noqa: BLE001 - any driver error must reach the blocked callers, typed
            err = StoreError(f"audit append failed ({type(exc).__name__}: {exc})")
            for job in jobs:
                _settle(job.future, error=err)
            return False
        # Only now, after COMMIT returned, is anyone told their index.
        for job, result in zip(jobs, results, strict=True):
            _settle(job.future, result)
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
                done.append((job, first if job.single else list(range(first, first + n))))
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
                    _settle(job.future, error=err)
            for job, result in done:
                _settle(job.future, result)
            return False
        for job, result in done:
            _settle(job.future, result)
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
        """Commit everything already accepted, sign a final checkpoint (see `open_store`), then close. Callers
        still waiting for room in the queue get `StoreError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = self._stopping = True
            self._work.notify()
            self._room.notify_all()
        if self._thread is not None:
            self._thread.join()
        # Nothing can be queued after `_closed` was set, and the writer drains the queue before it stops; this
        # only matters if the writer thread died: fail its callers rather than leave them blocked forever.
        with self._lock:
            left, self._jobs = list(self._jobs), deque()
        for job in left:
            _settle(job.future, error=StoreError("audit store is closed"))
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
    max_pending: int = DEFAULT_MAX_PENDING,
    background_linger: float = DEFAULT_BACKGROUND_LINGER,
) -> AuditStore:
    """Open (creating if needed) the audit store named by ``url``.

    ``None`` is SQLite at ``data_dir/audit.db``; ``sqlite:///abs/path.db``; ``postgresql://...`` (an optional
    ``schema=NAME`` query parameter selects the schema). Keys live in ``data_dir/keys``. With
    ``create=False`` a missing SQLite file is an error instead of a new empty log (verifiers use this).
    Checkpoints are signed every ``checkpoint_every`` entries, every ``checkpoint_interval`` seconds if the log
    grew, on demand, and (``checkpoint_on_close``) when a store that appended something is closed. At most
    ``max_pending`` records wait for their commit; beyond that `AuditStore.submit` blocks its caller. Records
    submitted as ``background`` may wait up to ``background_linger`` seconds to share a commit.
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
            max_pending=max_pending,
            background_linger=background_linger,
        )
    except BaseException:
        backend.close()
        raise
