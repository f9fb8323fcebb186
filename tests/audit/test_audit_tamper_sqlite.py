from __future__ import annotations

from pathlib import Path

import pytest
from audit_testutil import TAMPER_CASES, SqliteRaw, TamperCase, check_detected, fill

from cisora_mesh.audit import open_store


@pytest.mark.parametrize("case", TAMPER_CASES, ids=lambda c: c.name)
def test_tampering_a_real_sqlite_file_is_detected(tmp_path: Path, case: TamperCase) -> None:
    # No checkpoint on close: the last signed size stays 30, as in the PostgreSQL variant of these cases.
    with open_store(None, data_dir=tmp_path, checkpoint_every=10, checkpoint_on_close=False) as store:
        fill(store)
    raw = SqliteRaw(tmp_path / "audit.db")
    try:
        with open_store(None, data_dir=tmp_path, checkpoint_every=10, checkpoint_on_close=False) as store:
            case.apply(raw, store)
    finally:
        raw.conn.close()
    # Reopen from the file, as an auditor would.
    with open_store(None, data_dir=tmp_path, checkpoint_every=10, create=False) as store:
        check_detected(store, case)
