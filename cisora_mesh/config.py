"""Configuration: `mesh.toml`, validated once, compiled into immutable runtime objects.

The file model (`MeshConfig`) is pydantic with `extra="forbid"`, so a typo is an error, not a silently ignored key.
`MeshConfig.tenant_policy(name)` compiles the settings that apply to one tenant (defaults overlaid with the
tenant's own section) into a frozen `TenantPolicy`, with custom regexes already compiled by RE2, so nothing on the
hot path parses or validates anything.
"""

from __future__ import annotations

import enum
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cisora_mesh._regex import PatternSet
from cisora_mesh.errors import ConfigError
from cisora_mesh.events import Severity

MAX_CUSTOM_PATTERNS: Final = 20
DEFAULT_TENANT: Final = "default"


class DlpAction(enum.StrEnum):
    """What happens when output DLP finds something (the seed's three actions)."""

    ALERT = "alert"  # record a finding and an incident, let the data through unchanged
    REDACT = "redact"  # replace each match with [REDACTED:TYPE]
    BLOCK = "block"  # refuse the whole message


class FailMode(enum.StrEnum):
    OPEN = "open"  # a crashed or timed-out detector lets traffic through (audited, counted)
    CLOSED = "closed"  # ... or blocks it


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomPattern(_Model):
    """A per-tenant DLP regex, compiled by RE2 (linear time) when the config is loaded."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")]
    regex: Annotated[str, Field(min_length=1, max_length=1024)]
    category: Literal["secret", "pii", "custom"] = "custom"
    severity: Severity = Severity.HIGH
    description: str = ""


class DlpSettings(_Model):
    enabled: bool = True
    action: DlpAction = DlpAction.REDACT
    categories: tuple[Literal["secret", "pii", "custom"], ...] = ("secret", "pii", "custom")
    disabled_rules: tuple[str, ...] = ()
    custom_patterns: tuple[CustomPattern, ...] = ()

    @field_validator("custom_patterns")
    @classmethod
    def _check_patterns(cls, patterns: tuple[CustomPattern, ...]) -> tuple[CustomPattern, ...]:
        if len(patterns) > MAX_CUSTOM_PATTERNS:
            raise ValueError(f"at most {MAX_CUSTOM_PATTERNS} custom patterns per tenant, got {len(patterns)}")
        names = [p.name for p in patterns]
        if len(set(names)) != len(names):
            raise ValueError("custom pattern names must be unique")
        # Compile now so an invalid regex is rejected at save time, with RE2's reason.
        PatternSet([p.regex for p in patterns], names=[f"custom pattern {p.name!r}" for p in patterns])
        return patterns


class InjectionSettings(_Model):
    enabled: bool = True
    block_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.80
    review_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.50
    hidden_content_action: Literal["allow", "review", "block"] = "review"

    @model_validator(mode="after")
    def _ordered(self) -> InjectionSettings:
        if self.review_threshold > self.block_threshold:
            raise ValueError("review_threshold must not exceed block_threshold")
        return self


class MlSettings(_Model):
    """The async classifier (the `[ml]` extra). At or above `confidence` it blocks, retroactively on streams."""

    enabled: bool = True
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    review_at: Annotated[float, Field(gt=0.0, le=1.0)] = 0.70

    @model_validator(mode="after")
    def _ordered(self) -> MlSettings:
        if self.review_at > self.confidence:
            raise ValueError("review_at must not exceed confidence")
        return self


class EmbeddingDlpSettings(_Model):
    """Paraphrased leaks of a tenant's reference documents (`cisora-mesh refdocs add`), by cosine similarity."""

    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.65
    action: Literal["allow", "review", "block"] = "block"
    store: str | None = None  # None: refdocs.db in the data dir; "postgresql://..." to share across replicas


class DetectionSettings(_Model):
    fail_mode: FailMode = FailMode.OPEN
    injection: InjectionSettings = InjectionSettings()
    dlp: DlpSettings = DlpSettings()
    ml: MlSettings = MlSettings()
    embedding_dlp: EmbeddingDlpSettings = EmbeddingDlpSettings()


class TenantSettings(_Model):
    """A tenant's overrides. Unset sections inherit the top-level `[detection]` settings."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
    injection: InjectionSettings | None = None
    dlp: DlpSettings | None = None
    fail_mode: FailMode | None = None


class AuditSettings(_Model):
    store: str | None = None  # sqlite:///path or postgresql://...; default: <data_dir>/audit.db
    checkpoint_every: Annotated[int, Field(ge=1)] = 1000
    # "preventive": block/review/redact decisions are durable before they are enforced; allow decisions are
    # committed in the background (they change nothing on the wire). "all": every decision waits for its commit.
    durable_before: Literal["preventive", "all"] = "preventive"
    # How long a background (allow) record may wait for others to share its commit; 0 commits each at once.
    background_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0


class PolicySettings(_Model):
    """Rules applied after detection (docs/policy-language.md): a shipped pack or your own file, not both."""

    pack: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PolicySettings:
        if self.pack is not None and self.file is not None:
            raise ValueError("give either pack or file (copy the pack into your file to extend it)")
        return self


class MeshConfig(_Model):
    data_dir: Path | None = None
    detection: DetectionSettings = DetectionSettings()
    policy: PolicySettings = PolicySettings()
    audit: AuditSettings = AuditSettings()
    tenants: tuple[TenantSettings, ...] = ()

    @field_validator("tenants")
    @classmethod
    def _unique_tenants(cls, tenants: tuple[TenantSettings, ...]) -> tuple[TenantSettings, ...]:
        names = [t.name for t in tenants]
        if len(set(names)) != len(names):
            raise ValueError("tenant names must be unique")
        return tenants

    def tenant_policy(self, tenant: str) -> TenantPolicy:
        """Compile the effective settings for `tenant` (unknown tenants get the defaults)."""
        override = next((t for t in self.tenants if t.name == tenant), None)
        detection = self.detection
        injection = (override.injection if override else None) or detection.injection
        dlp = (override.dlp if override else None) or detection.dlp
        fail_mode = (override.fail_mode if override else None) or detection.fail_mode
        return TenantPolicy.build(tenant, injection=injection, dlp=dlp, fail_mode=fail_mode)


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """Runtime settings for one tenant, with everything pre-compiled."""

    tenant: str
    injection: InjectionSettings
    dlp: DlpSettings
    fail_mode: FailMode
    custom_patterns: PatternSet = field(repr=False)
    version: str = "builtin-1"

    @classmethod
    def build(cls, tenant: str, *, injection: InjectionSettings, dlp: DlpSettings, fail_mode: FailMode) -> TenantPolicy:
        patterns = PatternSet([p.regex for p in dlp.custom_patterns], names=[p.name for p in dlp.custom_patterns])
        return cls(tenant=tenant, injection=injection, dlp=dlp, fail_mode=fail_mode, custom_patterns=patterns)

    @classmethod
    def default(cls) -> TenantPolicy:
        return MeshConfig().tenant_policy(DEFAULT_TENANT)


def default_data_dir(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """`$CISORA_MESH_HOME`, else `$XDG_DATA_HOME/cisora-mesh`, else `~/.local/share/cisora-mesh`."""
    env = os.environ if environ is None else environ
    if env.get("CISORA_MESH_HOME"):
        return Path(env["CISORA_MESH_HOME"]).expanduser()
    base = Path(env["XDG_DATA_HOME"]).expanduser() if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base / "cisora-mesh"


def load_config(path: Path | None) -> MeshConfig:
    """Read and validate a `mesh.toml` (or return the built-in defaults when `path` is None)."""
    if path is None:
        return MeshConfig()
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return MeshConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None
