"""Audit store benchmark: durable appends/s, writer CPU per record, full verify of a large log, proof verify time.

    python bench/audit.py                       # 1,000,000-entry verify, SQLite + PostgreSQL appends
    python bench/audit.py --entries 100000 --seconds 2 --no-postgres
    python bench/audit.py --appends-only --repeat 3 --in-flight 64

Every append counted here is durable: it is counted only once its call returned after COMMIT (serial) or its
future resolved successfully (pipelined). Two ways of writing are measured side by side, interleaved, on one store:

* serial: each writer thread calls `append_decision` and waits for COMMIT before the next record. One writer thread
  is bounded by the disk's fsync latency (one record per commit); N threads share commits (group commit).
* pipelined: each writer thread keeps up to ``--in-flight`` records in flight with `submit_decision` (as a proxy or
  an ASGI app with many requests in flight does) and counts a record when its future resolved. The store's writer
  thread commits whatever is queued as one transaction, so one fsync covers many records.

Both build a real decision record per append (HMAC content digest, record id, canonical JSON). "CPU us/record" is
the store's writer thread (`time.pthread_getcpuclockid`) and the calling threads (`time.thread_time`), divided by the
records counted. PostgreSQL is also measured with 4 separate processes (several replicas appending to one log).

Targets (issue 4): >= 10,000 durable appends/s on SQLite, >= 2,000/s on PostgreSQL with 4 writers, full verify
of 1,000,000 entries <= 10 s, inclusion-proof verify <= 100 us.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from cisora_mesh.audit import AuditRecord, AuditStore, open_store
from cisora_mesh.audit.merkle import verify_inclusion
from cisora_mesh.audit.store import _Job
from cisora_mesh.events import ContentKind, ContentScan, Decision, Finding, Severity, Subject, Verdict

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


def _decision(i: int) -> tuple[Decision, ContentScan]:
    """A proxied message's decision: one finding, one inspected text (digested, never stored)."""
    event = ContentScan(
        kind=ContentKind.TOOL_RESULT,
        text=f"tool result {i}: " + "lorem ipsum " * 20,
        subject=Subject(tenant=f"tenant-{i % 4}", agent="bench-agent", session="s-1"),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )
    finding = Finding(
        detector="signature",
        rule_id="inj.ignore-previous",
        category="prompt_injection",
        severity=Severity.LOW,
        confidence=0.3,
    )
    decision = Decision(
        event_id=event.id,
        event_type="content.scan",
        subject=event.subject,
        verdict=Verdict.ALLOW,
        score=0.3,
        findings=(finding,),
        policy_ids=("default",),
    )
    return decision, event


@dataclass(frozen=True)
class Run:
    rate: float  # durable records per second
    writer_cpu_us: float  # the store's writer thread, CPU microseconds per record
    caller_cpu_us: float  # the appending threads, CPU microseconds per record


def _writer_clock(store: AuditStore) -> Callable[[], float]:
    """CPU seconds used so far by the store's writer thread (0.0 where per-thread clocks are unavailable)."""
    thread = store._thread
    if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return lambda: 0.0
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


def measure_appends(store: AuditStore, writers: int, seconds: float, in_flight: int) -> Run:
    """Durable appends/s with ``writers`` threads; ``in_flight`` 1 is serial (`append_decision`, wait for each),
    more is pipelined (`submit_decision`, up to ``in_flight`` futures open per thread)."""
    decision, event = _decision(0)
    for _ in range(50):  # warm up: WAL growth, connection setup, key files are not steady state
        store.append_decision(decision, event)
    writer_cpu = _writer_clock(store)
    counts: list[int] = []
    cpu: list[float] = []
    stop = time.perf_counter() + seconds
    start_gate = threading.Barrier(writers + 1)

    def serial() -> None:
        n = 0
        start_gate.wait()
        t = time.thread_time()
        while time.perf_counter() < stop:
            store.append_decision(decision, event)
            n += 1
        cpu.append(time.thread_time() - t)
        counts.append(n)

    def pipelined() -> None:
        n = 0
        open_futures: collections.deque[Future[int]] = collections.deque()
        start_gate.wait()
        t = time.thread_time()
        while time.perf_counter() < stop:
            open_futures.append(store.submit_decision(decision, event))
            if len(open_futures) >= in_flight:
                # Futures resolve in submission order (one writer, FIFO queue): waiting on the oldest is exact.
                n += open_futures.popleft().exception() is None
        while open_futures:  # records still in flight at the deadline count once durable (the wait is timed)
            n += open_futures.popleft().exception() is None
        cpu.append(time.thread_time() - t)
        counts.append(n)

    threads = [threading.Thread(target=serial if in_flight <= 1 else pipelined) for _ in range(writers)]
    for t in threads:
        t.start()
    start_gate.wait()
    begin, w0 = time.perf_counter(), writer_cpu()
    for t in threads:
        t.join()
    elapsed, w1 = time.perf_counter() - begin, writer_cpu()
    total = max(sum(counts), 1)
    return Run(total / elapsed, (w1 - w0) / total * 1e6, sum(cpu) / total * 1e6)


def compare_appends(
    store: AuditStore, writers: tuple[int, ...], seconds: float, in_flight: int, repeat: int
) -> dict[tuple[str, int], list[Run]]:
    """Serial and pipelined runs for each writer count, interleaved and repeated (a noisy disk or CPU then
    affects both alike); returns every run by (mode, writers)."""
    runs: dict[tuple[str, int], list[Run]] = collections.defaultdict(list)
    for _ in range(repeat):
        for n in writers:
            runs["serial", n].append(measure_appends(store, n, seconds, 1))
            runs["pipelined", n].append(measure_appends(store, n, seconds, in_flight))
    return runs


def _fmt(runs: list[Run]) -> str:
    rates = [r.rate for r in runs]
    med = statistics.median(rates)
    spread = f" ({min(rates):,.0f}-{max(rates):,.0f})" if len(rates) > 1 else ""
    return f"{med:,.0f}{spread}"


def append_rows(
    label: str, runs: dict[tuple[str, int], list[Run]], in_flight: int, target: Callable[[int], str]
) -> list[tuple[str, str, str]]:
    rows = []
    for (mode, n), got in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "serial")):
        how = "serial (fsync-bound)" if mode == "serial" else f"pipelined, {in_flight} in flight each"
        rows.append((f"{label} durable appends/s, {n} writer thread(s), {how}", _fmt(got), target(n)))
        writer = statistics.median(r.writer_cpu_us for r in got)
        caller = statistics.median(r.caller_cpu_us for r in got)
        rows.append(("  CPU us/record: store writer thread / appending threads", f"{writer:.1f} / {caller:.1f}", ""))
        if mode == "pipelined":
            ratio = statistics.median(r.rate for r in got) / statistics.median(r.rate for r in runs["serial", n])
            rows.append((f"  pipelined / serial, {n} writer thread(s)", f"{ratio:.1f}x", ""))
    return rows


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
    parser.add_argument("--in-flight", type=int, default=64, help="records each pipelined writer keeps in flight")
    parser.add_argument("--writers", default="1,4", help="writer thread counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repetitions of each append measurement")
    parser.add_argument("--appends-only", action="store_true", help="skip the large-log verify benchmark")
    args = parser.parse_args()
    writers = tuple(int(n) for n in args.writers.split(","))

    def sqlite_target(n: int) -> str:
        return ">= 10,000"

    def pg_target(n: int) -> str:
        return ">= 2,000" if n == 4 else ""

    scratch = Path(tempfile.mkdtemp(prefix="cisora-audit-bench-", dir=args.dir))
    rows: list[tuple[str, str, str]] = []
    try:
        rows.append(("write+fsync latency of the scratch disk (context)", f"{fsync_micros(scratch):,.0f} us", ""))
        # --- SQLite appends ---
        d = scratch / "sqlite"
        with open_store(None, data_dir=d) as store:
            runs = compare_appends(store, writers, args.seconds, args.in_flight, args.repeat)
            assert store.verify().ok
        rows += append_rows("SQLite", runs, args.in_flight, sqlite_target)
        shutil.rmtree(d)

        shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp inside it, removed afterwards
        if shm.is_dir():
            # The store's own ceiling with fsync made free: context for the figures above, never a durability figure.
            d = Path(tempfile.mkdtemp(prefix="cisora-audit-bench-", dir=shm))
            try:
                with open_store(None, data_dir=d) as store:
                    ceiling = measure_appends(store, max(writers), args.seconds, args.in_flight)
                rows.append(
                    (
                        f"SQLite appends/s, {max(writers)} pipelined writers, tmpfs (NOT durable: software ceiling)",
                        f"{ceiling.rate:,.0f}",
                        "",
                    )
                )
            finally:
                shutil.rmtree(d, ignore_errors=True)

        # --- PostgreSQL appends ---
        if not args.no_postgres and _pg_available(args.postgres):
            import psycopg

            schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}schema={schema}"
            try:
                with open_store(url, data_dir=scratch / "pg") as store:
                    runs = compare_appends(store, writers, args.seconds, args.in_flight, args.repeat)
                rows += append_rows("PostgreSQL", runs, args.in_flight, pg_target)
                rate = pg_process_appends(url, scratch / "pg", 4, args.seconds)
                rows.append(
                    ("PostgreSQL durable appends/s, 4 processes x 1 thread, serial", f"{rate:,.0f}", ">= 2,000")
                )
                with open_store(url, data_dir=scratch / "pg") as store:
                    report = store.verify()
                    rows.append(("PostgreSQL log after the runs verifies", f"{report.ok} ({report.size:,})", ""))
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

        if not args.appends_only:
            rows += verify_rows(scratch, args.entries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    _print(rows)
    return 0


def verify_rows(scratch: Path, entries: int) -> list[tuple[str, str, str]]:
    """Full verify of a large SQLite log, and inclusion-proof generation and verification in it."""
    rows = []
    d = scratch / "big"
    with open_store(None, data_dir=d) as store:
        fill = bulk_fill(store, entries)
        rows.append((f"bulk build of {entries:,} entries (not a target)", f"{fill:.1f} s", ""))
    size_mb = (d / "audit.db").stat().st_size / 1e6
    times = []
    with open_store(None, data_dir=d, create=False) as store:
        for _ in range(2):
            t = time.perf_counter()
            report = store.verify()
            times.append(time.perf_counter() - t)
            assert report.ok, report
            assert report.size == entries
        us, gen, path_len = proof_verify_micros(store)
    rows.append((f"full verify, {entries:,} entries ({size_mb:,.0f} MB file)", f"{min(times):.2f} s", "<= 10 s"))
    rows.append((f"inclusion proof verify ({path_len} hashes)", f"{us:.1f} us", "<= 100 us"))
    rows.append((f"inclusion proof generation at size {entries:,} (not a target)", f"{gen:.2f} s", ""))
    return rows


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
    Console(width=max(Console().width, 110)).print(table)


if __name__ == "__main__":
    sys.exit(main())
