"""Audit store benchmark: durable appends/s, full verify of a large log, inclusion-proof verify time.

    python bench/audit.py                       # 1,000,000-entry verify, SQLite + PostgreSQL appends
    python bench/audit.py --entries 100000 --seconds 2 --no-postgres

Every append measured here is durable when it is counted: a writer thread calls `append_record` (which returns
only after COMMIT) and counts it afterwards. "N writers" means N threads appending concurrently to one store;
the store's group commit turns their concurrent calls into shared transactions. PostgreSQL is also measured
with N separate processes (several replicas appending to one log).

Targets (issue 4): >= 10,000 durable appends/s on SQLite, >= 2,000/s on PostgreSQL with 4 writers, full verify
of 1,000,000 entries <= 10 s, inclusion-proof verify <= 100 us.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from cisora_mesh.audit import AuditRecord, AuditStore, open_store
from cisora_mesh.audit.merkle import verify_inclusion
from cisora_mesh.audit.store import _Job

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        tenant=f"tenant-{i % 4}",
        agent="bench-agent",
        decision_id=f"decision-{i}",
        event_id=f"event-{i}",
        event_type="mcp.message",
        verdict="allow",
        rule_ids=("inj.ignore-previous", "dlp.aws-key"),
        policy_ids=("default",),
        score_band="low",
        content_digests=("sha256:" + "ab" * 32,),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )


def appends_per_second(store: AuditStore, writers: int, seconds: float) -> float:
    rec = _record(0)
    for _ in range(50):  # warm up: WAL growth and connection setup are not steady state
        store.append_record(rec)
    counts: list[int] = []
    stop = time.perf_counter() + seconds
    start_gate = threading.Barrier(writers + 1)

    def worker() -> None:
        n = 0
        start_gate.wait()
        while time.perf_counter() < stop:
            store.append_record(rec)
            n += 1
        counts.append(n)

    threads = [threading.Thread(target=worker) for _ in range(writers)]
    for t in threads:
        t.start()
    begin = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - begin)


_PROC = """
import sys, threading, time
from pathlib import Path
from cisora_mesh.audit import AuditRecord, open_store
url, data_dir, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
threads = int(sys.argv[4])
rec = AuditRecord(tenant="t", decision_id="d")
with open_store(url, data_dir=data_dir) as store:
    for _ in range(20):
        store.append_record(rec)
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    counts = []

    def work():
        while time.time() < start:
            time.sleep(0.001)
        n = 0
        while time.time() < start + seconds:
            store.append_record(rec)
            n += 1
        counts.append(n)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(sum(counts), flush=True)
"""


def pg_process_appends(url: str, data_dir: Path, procs: int, seconds: float, threads: int = 1) -> float:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PROC, url, str(data_dir), str(seconds), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    for c in children:
        assert c.stdout is not None
        c.stdout.readline()
    start = time.time() + 0.2
    for c in children:
        assert c.stdin is not None
        c.stdin.write(f"{start}\n")
        c.stdin.flush()
    total = 0
    for c in children:
        assert c.stdout is not None
        total += int(c.stdout.readline())
        c.wait()
    return total / seconds


def bulk_fill(store: AuditStore, entries: int) -> float:
    """Fast bulk path: pre-encoded records in big batches through the normal writer (real entries, real tree)."""
    template = _record(0).canonical()
    marker = b'"decision-0"'
    chunk = 8192
    t = time.perf_counter()
    for start in range(0, entries, chunk):
        items = [
            (f"tenant-{i % 4}", template.replace(marker, b'"decision-%d"' % i))
            for i in range(start, min(start + chunk, entries))
        ]
        store._submit(_Job(items)).result()
    return time.perf_counter() - t


def proof_verify_micros(store: AuditStore) -> tuple[float, float, int]:
    cp = store.checkpoint()
    t = time.perf_counter()
    proof = store.inclusion_proof(cp.size // 3, cp.size)
    gen = time.perf_counter() - t
    runs = 2000
    t = time.perf_counter()
    for _ in range(runs):
        verify_inclusion(proof.index, proof.tree_size, proof.leaf_hash, proof.path, cp.root)
    return (time.perf_counter() - t) / runs * 1e6, gen, len(proof.path)


def fsync_micros(directory: Path, rounds: int = 200) -> float:
    """Median latency of write+fsync in ``directory``: the floor under every durable commit, so context for
    every append figure (a shared disk under load can be 20x slower than an idle one)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    samples = []
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            os.write(fd, b"x" * 128)
            os.fsync(fd)
            samples.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples) * 1e6


def _pg_available(dsn: str) -> bool:
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure just means "no PostgreSQL here"
        print(f"PostgreSQL not measured ({type(exc).__name__}: {str(exc).strip()[:100]})", file=sys.stderr)
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size for the verify benchmark")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each append measurement")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--postgres", default=os.environ.get("CISORA_TEST_POSTGRES_DSN", DEFAULT_DSN))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cisora-audit-bench-", dir=args.dir))
    rows: list[tuple[str, str, str]] = []
    try:
        rows.append(("write+fsync latency of the scratch disk (context)", f"{fsync_micros(scratch):,.0f} us", ""))
        # --- SQLite appends ---
        for writers in (1, 4, 16, 64):
            d = scratch / f"sqlite-{writers}"
            with open_store(None, data_dir=d) as store:
                rate = appends_per_second(store, writers, args.seconds)
                assert store.verify().ok
            rows.append((f"SQLite durable appends/s, {writers} writer(s)", f"{rate:,.0f}", ">= 10,000"))
            shutil.rmtree(d)

        shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp inside it, removed afterwards
        if shm.is_dir():
            # The store's own ceiling with fsync made free: context for the figures above, never a durability figure.
            d = Path(tempfile.mkdtemp(prefix="cisora-audit-bench-", dir=shm))
            try:
                with open_store(None, data_dir=d) as store:
                    rate = appends_per_second(store, 16, args.seconds)
                rows.append(("SQLite appends/s, 16 writers, tmpfs (NOT durable: software ceiling)", f"{rate:,.0f}", ""))
            finally:
                shutil.rmtree(d, ignore_errors=True)

        # --- PostgreSQL appends ---
        if not args.no_postgres and _pg_available(args.postgres):
            import psycopg

            schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}schema={schema}"
            try:
                for writers in (1, 4, 16):
                    with open_store(url, data_dir=scratch / "pg") as store:
                        rate = appends_per_second(store, writers, args.seconds)
                    target = ">= 2,000" if writers == 4 else ""
                    rows.append((f"PostgreSQL durable appends/s, {writers} thread(s)", f"{rate:,.0f}", target))
                rate = pg_process_appends(url, scratch / "pg", 4, args.seconds)
                rows.append(("PostgreSQL durable appends/s, 4 processes x 1 thread", f"{rate:,.0f}", ">= 2,000"))
                rate = pg_process_appends(url, scratch / "pg", 4, args.seconds, threads=8)
                rows.append(("PostgreSQL durable appends/s, 4 processes x 8 threads", f"{rate:,.0f}", ""))
                with open_store(url, data_dir=scratch / "pg") as store:
                    report = store.verify()
                    rows.append(("PostgreSQL log after the runs verifies", f"{report.ok} ({report.size:,})", ""))
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        # --- full verify of a large SQLite log ---
        d = scratch / "big"
        with open_store(None, data_dir=d) as store:
            fill = bulk_fill(store, args.entries)
            rows.append((f"bulk build of {args.entries:,} entries (not a target)", f"{fill:.1f} s", ""))
        size_mb = (d / "audit.db").stat().st_size / 1e6
        times = []
        with open_store(None, data_dir=d, create=False) as store:
            for _ in range(2):
                t = time.perf_counter()
                report = store.verify()
                times.append(time.perf_counter() - t)
                assert report.ok, report
                assert report.size == args.entries
            us, gen, path_len = proof_verify_micros(store)
        rows.append(
            (f"full verify, {args.entries:,} entries ({size_mb:,.0f} MB file)", f"{min(times):.2f} s", "<= 10 s")
        )
        rows.append((f"inclusion proof verify ({path_len} hashes)", f"{us:.1f} us", "<= 100 us"))
        rows.append((f"inclusion proof generation at size {args.entries:,} (not a target)", f"{gen:.2f} s", ""))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _print(rows)
    return 0


def _print(rows: list[tuple[str, str, str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in rows:
            print(" | ".join(r))
        return
    table = Table(title=f"Cisora Mesh audit store ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    table.add_column("measurement")
    table.add_column("result", justify="right")
    table.add_column("target", justify="right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
