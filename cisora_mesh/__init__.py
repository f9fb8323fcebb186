"""Cisora Mesh: a security layer for AI agents.

Build an event for what you see, hand it to `Mesh.evaluate`, enforce the `Decision` you get back::

    from cisora_mesh import ContentKind, ContentScan, Mesh

    mesh = Mesh()
    decision = mesh.evaluate(ContentScan(kind=ContentKind.TOOL_RESULT, text=page))
    if decision.verdict is Verdict.BLOCK: ...
"""

from __future__ import annotations

from cisora_mesh.config import DlpAction, FailMode, MeshConfig, TenantPolicy, load_config
from cisora_mesh.errors import CisoraError, ConfigError, InputError, PatternError, StageError
from cisora_mesh.events import (
    A2AMessage,
    Content,
    ContentKind,
    ContentScan,
    Decision,
    Direction,
    Event,
    Finding,
    HttpRequest,
    McpMessage,
    MemoryIngest,
    ModelInput,
    ModelOutput,
    Rewrite,
    Severity,
    Subject,
    Verdict,
)
from cisora_mesh.mesh import AsyncStage, AuditSink, Mesh

__all__ = [
    "A2AMessage",
    "AsyncStage",
    "AuditSink",
    "CisoraError",
    "ConfigError",
    "Content",
    "ContentKind",
    "ContentScan",
    "Decision",
    "Direction",
    "DlpAction",
    "Event",
    "FailMode",
    "Finding",
    "HttpRequest",
    "InputError",
    "McpMessage",
    "MemoryIngest",
    "Mesh",
    "MeshConfig",
    "ModelInput",
    "ModelOutput",
    "PatternError",
    "Rewrite",
    "Severity",
    "StageError",
    "Subject",
    "TenantPolicy",
    "Verdict",
    "load_config",
]
