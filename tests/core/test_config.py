from __future__ import annotations

from pathlib import Path

import pytest

from cisora_mesh.cli.init import TEMPLATE
from cisora_mesh.config import DlpAction, FailMode, MeshConfig, default_data_dir, load_config
from cisora_mesh.errors import ConfigError, PatternError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mesh.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    policy = config.tenant_policy("anyone")
    assert policy.dlp.action is DlpAction.REDACT
    assert policy.fail_mode is FailMode.OPEN
    assert policy.injection.block_threshold == 0.80
    assert policy.injection.review_threshold == 0.50


def test_template_written_by_init_is_valid() -> None:
    config = MeshConfig.model_validate(
        __import__("tomllib").loads(TEMPLATE.format(data_dir="/tmp/x", config_name="mesh.toml"))
    )
    assert config.detection == MeshConfig().detection


def test_tenant_override_inherits_unset_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[detection.dlp]
action = "alert"
[[tenants]]
name = "acme"
fail_mode = "closed"
[tenants.dlp]
action = "block"
[[tenants.dlp.custom_patterns]]
name = "employee_id"
regex = "EMP-[0-9]{6}"
category = "pii"
severity = "medium"
""",
    )
    config = load_config(path)
    acme = config.tenant_policy("acme")
    other = config.tenant_policy("other")
    assert acme.dlp.action is DlpAction.BLOCK and acme.fail_mode is FailMode.CLOSED
    assert other.dlp.action is DlpAction.ALERT and other.fail_mode is FailMode.OPEN
    assert len(acme.custom_patterns) == 1 and len(other.custom_patterns) == 0
    assert acme.custom_patterns.matching("id EMP-123456") == [0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("unknown_key = 1", "unknown_key: Extra inputs are not permitted"),
        ('[detection]\nfail_mode = "sideways"', "detection.fail_mode"),
        ("[detection.injection]\nblock_threshold = 0.3\nreview_threshold = 0.6", "review_threshold must not exceed"),
        ('[detection.dlp]\naction = "shred"', "detection.dlp.action"),
        ('[[tenants]]\nname = "a"\n[[tenants]]\nname = "a"', "tenant names must be unique"),
        ('[[tenants]]\nname = "../etc"', "tenants.0.name"),
        ("this is = not toml =", "invalid TOML"),
    ],
)
def test_invalid_config_names_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"mesh\.toml") as info:
        load_config(write(tmp_path, body))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("regex", "reason"),
    [
        ("(a", "missing )"),
        (r"(a)\1", "invalid escape"),
        ("(?=x)", "invalid perl operator"),  # lookahead is not linear-time: rejected
        ("a*", "matches the empty string"),
        ("x" * 1025, "at most 1024 characters"),
    ],
)
def test_custom_regex_is_validated_at_save_time(tmp_path: Path, regex: str, reason: str) -> None:
    body = f"[[detection.dlp.custom_patterns]]\nname = 'p1'\nregex = '''{regex}'''\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, body))
    assert reason in str(info.value)
    assert "detection.dlp.custom_patterns" in str(info.value)


def test_more_than_twenty_custom_patterns_is_rejected(tmp_path: Path) -> None:
    body = "".join(f'[[detection.dlp.custom_patterns]]\nname = "p{i}"\nregex = "X{i}Y"\n' for i in range(21))
    with pytest.raises(ConfigError, match="at most 20 custom patterns"):
        load_config(write(tmp_path, body))


def test_pattern_error_is_a_config_error_and_value_error() -> None:
    assert issubclass(PatternError, ConfigError)
    assert issubclass(PatternError, ValueError)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_default_data_dir_precedence(tmp_path: Path) -> None:
    assert default_data_dir({"CISORA_MESH_HOME": str(tmp_path)}) == tmp_path
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "cisora-mesh"
    assert default_data_dir({}).name == "cisora-mesh"
