from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cisora_mesh.cli import main

CLI = [sys.executable, "-m", "cisora_mesh.cli"]


def test_demo_blocks_redacts_allows_and_names_the_audit_log(tmp_path: Path) -> None:
    env = {**os.environ, "CISORA_MESH_HOME": str(tmp_path / "home")}
    out = subprocess.run([*CLI, "demo"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "tool result with a hidden instruction: BLOCK" in text
    assert "model answer leaking a key: REDACT" in text
    assert "[REDACTED:AWS_ACCESS_KEY]" in text
    assert "ordinary user request: ALLOW" in text
    assert str(tmp_path / "home") in text
    assert "AKIA" not in text.split("forwarded as:")[1]  # the key itself never reaches the output
    verify = subprocess.run([*CLI, "audit", "verify"], capture_output=True, text=True, env=env, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("scan", "demo", "init"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: cisora-mesh" in capsys.readouterr().err


def test_init_writes_a_valid_commented_config_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "conf" / "mesh.toml"
    data = tmp_path / "data"
    assert main(["init", "--config", str(config), "--data-dir", str(data)]) == 0
    assert data.is_dir()
    body = config.read_text()
    assert body.count("#") > 10  # commented for a newcomer
    assert tomllib.loads(body)["data_dir"] == str(data.resolve())
    assert main(["init", "--config", str(config)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["init", "--config", str(config), "--data-dir", str(data), "--force"]) == 0
    # The written file drives the other commands.
    assert main(["scan", "--config", str(config), "--no-audit", "--kind", "output", str(config)]) == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db.internal:5432/audit", "postgresql://app:***@db.internal:5432/audit"),
        ("postgresql://app@db/audit", "postgresql://app@db/audit"),
        ("sqlite:////var/lib/audit.db", "sqlite:////var/lib/audit.db"),
    ],
)
def test_store_urls_are_printed_without_passwords(url: str, shown: str) -> None:
    from cisora_mesh.cli._common import display_url

    assert display_url(url) == shown
