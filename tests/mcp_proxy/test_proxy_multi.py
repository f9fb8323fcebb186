"""Several upstream servers behind one stdio endpoint ([[proxy.servers]]), over real pipes."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import TextContent
from proxy_support import ECHO, PY, ROOT


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "multi.toml"
    path.write_text(
        f"""
[proxy]
pinning = "tofu"

[[proxy.servers]]
name = "alpha"
command = ["{PY}", "{ECHO}"]

[[proxy.servers]]
name = "beta"
command = ["{PY}", "{ECHO}"]
env = {{ MCP_ECHO_VARIANT = "poisoned" }}

[[proxy.servers]]
name = "dead"
command = ["/nonexistent/mcp-server"]
"""
    )
    return path


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_prefixed_merge_routing_and_a_dead_server(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(
        command=PY,
        args=["-m", "cisora_mesh", "proxy", "stdio", "--config", str(_config(tmp_path))],
        cwd=str(ROOT),
        env={"CISORA_MESH_HOME": str(tmp_path / "home")},
    )
    async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
        names = sorted(t.name for t in (await client.list_tools()).tools)
        assert "alpha__echo" in names and "beta__echo" in names
        assert "beta__add" not in names  # poisoned description: hidden by inspection
        assert not any(n.startswith("dead__") for n in names)  # the dead server only loses its own items

        out = await client.call_tool("alpha__echo", {"text": "to alpha"})
        assert [c.text for c in out.content if isinstance(c, TextContent)] == ["to alpha"]
        out = await client.call_tool("beta__read_config", {"name": "x"})
        assert "[REDACTED:GITHUB_TOKEN]" in out.content[0].text  # type: ignore[union-attr]

        with pytest.raises(MCPError) as err:
            await client.call_tool("dead__anything", {})
        assert err.value.error.code == -32020
        with pytest.raises(MCPError) as err:
            await client.call_tool("nosuchserver__echo", {})
        assert err.value.error.code == -32022

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert {"alpha__summarize", "beta__summarize"} <= prompts
        got = await client.get_prompt("beta__summarize", {"topic": "owls"})
        assert "owls" in got.messages[0].content.text  # type: ignore[union-attr]
        about = await client.read_resource("info://about")
        assert "demo MCP server" in about.contents[0].text  # type: ignore[union-attr]
