"""Capability tokens at the proxy: build the gate from `[proxy.capability]`, and turn its answers into JSON-RPC.

The verification itself lives in `cisora_mesh.auth.capability.CapabilityGate` (the only adapter to the standalone
`capability` package). This module owns what is specific to MCP: the error code, the problem `data`, and
removing the credentials from a call before it goes upstream (the server has no use for them, and a token it
never sees is a token it cannot leak).
"""

from __future__ import annotations

from typing import Any, Final

from cisora_mesh.auth.capability import META_POP, META_TOKEN, CapabilityDenied, CapabilityGate
from mcp_proxy import jsonrpc
from mcp_proxy.config import CapabilitySettings
from mcp_proxy.errors import ProxyConfigError
from mcp_proxy.inspect import Outcome

__all__ = ["CAPABILITY_DENIED", "build_gate", "denial", "without_credentials"]

# Next to POLICY_DENIED (-32010) .. TOOL_NOT_APPROVED (-32012) in the implementation-defined range.
CAPABILITY_DENIED: Final = -32013


def build_gate(settings: CapabilitySettings, *, audit: Any = None, tenant: str = "default") -> CapabilityGate | None:
    """The gate for `[proxy.capability]`, or None when capabilities are not required."""
    if not settings.required:
        return None
    if settings.audience is None:  # the config validator already refuses this; kept for direct callers
        raise ProxyConfigError("[proxy.capability] needs an audience")
    try:
        return CapabilityGate.from_files(settings.trust_anchors, audience=settings.audience, audit=audit, tenant=tenant)
    except (OSError, ValueError) as exc:
        raise ProxyConfigError(f"[proxy.capability] trust_anchors: {exc.__class__.__name__}: {exc}") from None


def denial(result: CapabilityDenied, server: str, tool: str) -> Outcome:
    """The JSON-RPC error for a refused call: a fixed message, the reason stays in the audit store."""
    return Outcome(
        "deny",
        code=CAPABILITY_DENIED,
        message=f"tool call {tool!r}: {result.message}",
        data=jsonrpc.problem(result.slug, "Capability denied", server=server, tool=tool, resource=result.resource),
    )


def without_credentials(params: dict[str, Any]) -> dict[str, Any] | None:
    """`params` without the token and PoP in `_meta`, or None when there were none to remove."""
    meta = params.get("_meta")
    if not isinstance(meta, dict) or (META_TOKEN not in meta and META_POP not in meta):
        return None
    rest = {k: v for k, v in meta.items() if k not in (META_TOKEN, META_POP)}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if rest:
        out["_meta"] = rest
    return out
