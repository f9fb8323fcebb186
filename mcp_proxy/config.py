"""Proxy configuration: the `[proxy]` section of the same TOML file as the mesh settings.

    [proxy]
    tenant = "default"          # whose policy, pins and audit records apply
    inspect = true              # run Mesh.evaluate at the inspection points (false: forward only, for benchmarks)
    pinning = "tofu"            # tofu | approve | off: first sight of a tool is trusted, or needs approval
    max_frame_bytes = 8388608   # longer JSON-RPC frames are refused with -32021

    [[proxy.servers]]           # several upstreams behind one endpoint (tools become `name__tool`)
    name = "files"
    command = ["python", "files_server.py"]   # or: url = "http://127.0.0.1:9000/mcp"
    env = { ROOT = "/srv" }
    pinning = "approve"         # per-server override

The core's `MeshConfig` forbids unknown keys, so `[proxy]` is split off here before the rest is validated by the
core: one file configures both, and the core never learns about the proxy.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cisora_mesh.config import MeshConfig
from cisora_mesh.errors import ConfigError
from mcp_proxy.errors import ProxyConfigError

PinningMode = Literal["tofu", "approve", "off"]
SERVER_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    """One upstream MCP server."""

    name: Annotated[str, Field(pattern=SERVER_NAME_RE)]
    command: tuple[str, ...] | None = None
    url: str | None = None
    env: dict[str, str] = {}
    cwd: str | None = None
    pinning: PinningMode | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' or 'url'")
        if self.command is not None and not self.command:
            raise ValueError("'command' must not be empty")
        if "__" in self.name:
            raise ValueError("server names must not contain '__' (it separates server and tool names)")
        return self


class OAuthSettings(_Model):
    """OAuth 2.1 resource-server duties for `proxy http` (MCP authorization spec).

    Access tokens are JWTs signed by `issuer` with one of the keys in `jwks_file`; their audience must be
    `resource`, this server's canonical URL (e.g. `https://mcp.example.com/mcp`).
    """

    issuer: Annotated[str, Field(min_length=1)]
    resource: Annotated[str, Field(pattern=r"^https?://")]
    jwks_file: Path
    algorithms: tuple[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"], ...] = (
        "RS256",
        "ES256",
        "EdDSA",
    )
    required_scopes: tuple[str, ...] = ()
    leeway_seconds: Annotated[float, Field(ge=0, le=300)] = 30.0


class HttpSettings(_Model):
    """Front-door checks for `proxy http` (DNS-rebinding protection is on by default)."""

    allowed_hosts: tuple[str, ...] = ()  # extra Host values; localhost/127.0.0.1/[::1] with the bound port are implied
    allowed_origins: tuple[str, ...] = ()  # extra Origin values; same-host origins are implied
    oauth: OAuthSettings | None = None


class ArgumentRule(_Model):
    """A deny rule on a tool-call argument (see `mcp_proxy.policy`)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
    server: str = "*"
    tool: str = "*"
    argument: Annotated[str, Field(min_length=1)]
    deny_regex: Annotated[str, Field(min_length=1, max_length=1024)]


class CapabilitySettings(_Model):
    """`[proxy.capability]`: require a capability token (docs/capability-tokens.md) on every `tools/call`.

    Off by default. When `required`, a call without a valid token and proof of possession for
    `mcp://<server>/tools/<tool>` (with its arguments) is refused, and `tools/list` shows only the granted tools.
    `trust_anchors` are public JWK files (relative paths are resolved from the working directory).
    """

    required: bool = False
    trust_anchors: tuple[Path, ...] = ()
    audience: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> CapabilitySettings:
        if self.required and (not self.trust_anchors or self.audience is None):
            raise ValueError("a required capability needs 'trust_anchors' and 'audience'")
        return self


class ProxySettings(_Model):
    tenant: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")] = "default"
    inspect: bool = True
    pinning: PinningMode = "tofu"
    max_frame_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 8 * 1024 * 1024
    restart_backoff_max: Annotated[float, Field(gt=0, le=300)] = 5.0
    http: HttpSettings = HttpSettings()
    servers: tuple[ServerSettings, ...] = ()
    argument_rules: tuple[ArgumentRule, ...] = ()
    capability: CapabilitySettings = CapabilitySettings()

    @model_validator(mode="after")
    def _unique(self) -> ProxySettings:
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError("server names must be unique")
        # The gate rides on the inspector; without it calls would pass unchecked, so refuse (fail closed).
        if self.capability.required and not self.inspect:
            raise ValueError("[proxy.capability] required = true needs inspect = true")
        return self


def load(path: Path | None) -> tuple[MeshConfig, ProxySettings]:
    """Read one TOML file into the core's `MeshConfig` and the proxy's `ProxySettings`."""
    if path is None:
        return MeshConfig(), ProxySettings()
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProxyConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProxyConfigError(f"{path}: cannot read config: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProxyConfigError(f"{path}: invalid TOML: {exc}") from None
    proxy_raw = raw.pop("proxy", {})
    try:
        mesh = MeshConfig.model_validate(raw)
        proxy = ProxySettings.model_validate(proxy_raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        section = "proxy." if exc.title == "ProxySettings" else ""
        raise ProxyConfigError(f"{path}: {section}{where}: {first['msg']}") from None
    except ConfigError as exc:
        raise ProxyConfigError(f"{path}: {exc}") from None
    return mesh, proxy


def server_name_for(command: list[str] | tuple[str, ...]) -> str:
    """A stable default server name for a spawned command (pins are keyed by it).

    The last non-option argument names the server: `python examples/mcp_echo_server.py` -> `mcp_echo_server`,
    `npx -y @modelcontextprotocol/server-everything` -> `server-everything`.
    """
    positional = [a for a in command if not a.startswith("-")] or list(command) or ["server"]
    base = positional[-1].rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"\.(py|js|mjs|cjs|ts)$", "", base)
    base = re.sub(r"[^A-Za-z0-9_.\-]", "-", base).strip("-._") or "server"
    return base.replace("__", "_")[:64]
