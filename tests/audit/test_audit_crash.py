"""Crash safety: a child appends in a loop and reports each acknowledged index; we SIGKILL it at random moments.

Every record the child was told is durable must be in the log afterwards, and the log must verify.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cisora_mesh.audit import open_store
from cisora_mesh.audit.record import entry_decoder, record_decoder

_CHILD = r"""
import sys, threading
from pathlib import Path
from cisora_mesh.audit import AuditRecord, open_store

store = open_store(None, data_dir=Path(sys.argv[1]), checkpoint_every=25)
lock = threading.Lock()

def run(worker):
    i = 0
    while True:
        rec = AuditRecord(tenant=f"w{worker}", decision_id=f"{sys.argv[2]}-{worker}-{i}")
        idx = store.append_record(rec)
        with lock:
            sys.stdout.write(f"{idx} {rec.decision_id}\n")
            sys.stdout.flush()
        i += 1

threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def _run_and_kill(data_dir: Path, round_no: int, rng: random.Random) -> dict[int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir), f"r{round_no}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    buf = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    kill_at: float | None = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if kill_at is not None and time.monotonic() >= kill_at:
            break
        for _key, _ev in sel.select(timeout=0.01):
            chunk = os.read(proc.stdout.fileno(), 65536)
            buf += chunk
        if kill_at is None and b"\n" in buf:
            kill_at = time.monotonic() + rng.uniform(0.0, 0.25)  # appends are under way: kill at a random moment
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read()
    buf += rest
    proc.stdout.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    sel.close()
    assert kill_at is not None, err.decode(errors="replace")[-2000:]
    acked: dict[int, str] = {}
    for line in buf.split(b"\n")[:-1]:  # a line cut by the kill has no newline and is dropped
        idx, decision_id = line.decode().split(" ")
        acked[int(idx)] = decision_id
    return acked


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(20261122)  # noqa: S311 - reproducible kill timing, not crypto
    acked: dict[int, str] = {}
    for round_no in range(15):
        got = _run_and_kill(tmp_path, round_no, rng)
        assert not set(got) & set(acked), "an index was handed out twice"
        acked.update(got)
    assert len(acked) > 15
    with open_store(None, data_dir=tmp_path, checkpoint_every=25, create=False) as store:
        report = store.verify()
        assert report.ok, report
        stored = {
            idx: record_decoder.decode(bytes(entry_decoder.decode(entry).record)).decision_id
            for idx, _t, entry, _h in store.backend.iter_entries()
        }
    missing = {i: d for i, d in acked.items() if stored.get(i) != d}
    assert not missing, f"{len(missing)} acknowledged records lost or changed"
    assert report.size == len(stored) >= len(acked)
