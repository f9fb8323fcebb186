from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cisora_mesh.audit import AuditStore, open_store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[AuditStore]:
    store = open_store(None, data_dir=tmp_path, checkpoint_every=10)
    try:
        yield store
    finally:
        store.close()
