"""Suite-wide fixtures. Tests never touch the user's real data directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cisora-home"
    monkeypatch.setenv("CISORA_MESH_HOME", str(home))
    return home
