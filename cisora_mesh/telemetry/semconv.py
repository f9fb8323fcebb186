"""Span attribute names.

The MCP/GenAI/JSON-RPC names follow the OpenTelemetry semantic conventions (the same strings the MCP SDK's
own middleware sets). They are our own `Final` constants on purpose: ``opentelemetry.semconv._incubating`` is
private and, since 0.66b2, marks every ``gen_ai.*``/``mcp.*`` constant deprecated (moved to the GenAI semconv
repository) although the strings are unchanged. Names under ``cisora.*`` are ours.

Nothing here may carry payload text, secret values or raw detector scores: only ids, names, enums, digests.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry semantic conventions (MCP, GenAI, JSON-RPC, errors) ---
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
MCP_SESSION_ID: Final = "mcp.session.id"
MCP_RESOURCE_URI: Final = "mcp.resource.uri"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
JSONRPC_REQUEST_ID: Final = "jsonrpc.request.id"
ERROR_TYPE: Final = "error.type"
GEN_AI_OPERATION_EXECUTE_TOOL: Final = "execute_tool"
GEN_AI_PROMPT_NAME: Final = "gen_ai.prompt.name"
NETWORK_TRANSPORT: Final = "network.transport"  # "pipe" (stdio) | "tcp" (HTTP)
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"

# --- Cisora Mesh ---
CISORA_RECORD_KIND: Final = "cisora.record.kind"  # "decision" | "transition"
CISORA_DECISION_ID: Final = "cisora.decision.id"
CISORA_EVENT_ID: Final = "cisora.event.id"
CISORA_EVENT_TYPE: Final = "cisora.event.type"
CISORA_VERDICT: Final = "cisora.verdict"
CISORA_RULE_IDS: Final = "cisora.rule_ids"
CISORA_POLICY_IDS: Final = "cisora.policy_ids"
CISORA_POLICY_VERSION: Final = "cisora.policy.version"
CISORA_TENANT: Final = "cisora.tenant"
CISORA_AGENT: Final = "cisora.agent"
CISORA_USER: Final = "cisora.user"
CISORA_SESSION: Final = "cisora.session"
CISORA_SCORE_BAND: Final = "cisora.score_band"  # coarse band, never the raw probability
CISORA_STAGES: Final = "cisora.stages"
CISORA_CONTENT_DIGESTS: Final = "cisora.content.digests"  # "sha256:<hex>" per inspected text
# Findings as parallel string arrays (OTel attributes are flat): element i of each describes finding i.
CISORA_FINDING_DETECTORS: Final = "cisora.finding.detectors"
CISORA_FINDING_RULE_IDS: Final = "cisora.finding.rule_ids"
CISORA_FINDING_CATEGORIES: Final = "cisora.finding.categories"
CISORA_FINDING_SEVERITIES: Final = "cisora.finding.severities"
CISORA_FINDING_CONFIDENCE_BANDS: Final = "cisora.finding.confidence_bands"
# Lifecycle transitions (awaiting_approval -> approved, ...)
CISORA_TRANSITION_FROM: Final = "cisora.transition.from"
CISORA_TRANSITION_TO: Final = "cisora.transition.to"
CISORA_ACTOR: Final = "cisora.actor"

SPAN_DECISION: Final = "cisora.decision"
SPAN_TRANSITION: Final = "cisora.transition"
TRACER_NAME: Final = "cisora-mesh"
PROXY_TRACER_NAME: Final = "cisora-mesh.mcp-proxy"
