"""The proxy's inspection as an MCP SDK server middleware: guard an in-process `MCPServer` without a proxy.

    from mcp.server import MCPServer
    from cisora_mesh import Mesh
    from mcp_proxy.server_middleware import McpGuard

    server = MCPServer("files", middleware=[McpGuard(Mesh(), server="files")])

The same inspection points as the proxy (`mcp_proxy.inspect`): `tools/call` arguments (argument policy, DLP),
`tools/call`, `resources/read` and `prompts/get` results, `tools/list` (poisoned tools hidden), `instructions`.
The SDK hands middleware the wire-form dicts, so nothing is converted. A denial is raised as `MCPError` with the
same code and problem `data` the proxy sends. Pinning is a proxy concern (it guards against a server changing
under the client) and is not applied here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from cisora_mesh.mesh import Mesh
from mcp_proxy.inspect import Inspector, Outcome
from mcp_proxy.policy import ArgumentPolicy


class McpGuard:
    """`async (ctx, call_next)` middleware for `Server.middleware` / `MCPServer(middleware=[...])`."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        tenant: str = "default",
        server: str | None = None,
        argument_policy: ArgumentPolicy | None = None,
    ) -> None:
        self.server = server
        self.inspector = Inspector(mesh, tenant=tenant, argument_policy=argument_policy)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        method = ctx.method
        params = ctx.params
        tool = params.get("name") if isinstance(params, dict) else None
        if method == "tools/call" and isinstance(tool, str) and isinstance(params, dict):
            outcome = await self.inspector.tool_call(self.server, tool, params)
            _raise_if_denied(outcome)
            if outcome.action == "rewrite":
                ctx = dataclasses.replace(ctx, params=outcome.payload)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if method == "tools/list":
            hidden, _ = await self.inspector.tools_list(self.server, result)
            if hidden:
                tools = result.get("tools") or []
                return {**result, "tools": [t for i, t in enumerate(tools) if i not in hidden]}
            return result
        if method in ("initialize", "server/discover"):
            outcome = await self.inspector.instructions(method, self.server, result)
        elif method in ("tools/call", "resources/read", "prompts/get"):
            outcome = await self.inspector.result(method, self.server, tool, result)
        else:
            return result
        _raise_if_denied(outcome)
        return outcome.payload if outcome.action == "rewrite" else result


def _raise_if_denied(outcome: Outcome) -> None:
    if outcome.action == "deny":
        from mcp.shared.exceptions import MCPError

        raise MCPError(code=outcome.code, message=outcome.message, data=outcome.data)
