"""Against the official reference server `@modelcontextprotocol/server-everything` (npm), through the proxy.

Installed at test time into ~/.cache/cisora-mesh-tests/npm (never into the repository). CI pre-installs it:
    npm install --prefix ~/.cache/cisora-mesh-tests/npm --no-audit --no-fund @modelcontextprotocol/server-everything
The package (2026.8.31) speaks the handshake era only, so `mode="auto"` (which tries 2026-07-28 discovery first)
must fall back to it through the proxy just as it does directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextContent
from proxy_support import ROOT

NPM_PREFIX = Path.home() / ".cache" / "cisora-mesh-tests" / "npm"
BIN = NPM_PREFIX / "node_modules" / ".bin" / "mcp-server-everything"


@pytest.fixture(scope="module")
def everything() -> Path:
    if not BIN.exists():
        if shutil.which("npx") is None or shutil.which("npm") is None or shutil.which("node") is None:
            pytest.skip("node/npm/npx not available: cannot install @modelcontextprotocol/server-everything")
        try:
            subprocess.run(
                ["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund",
                 "@modelcontextprotocol/server-everything"],
                check=True, capture_output=True, timeout=180,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"npm install of @modelcontextprotocol/server-everything failed: {type(exc).__name__}")
    return BIN


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_server_everything_through_the_proxy(everything: Path, mode: str, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cisora_mesh", "proxy", "stdio", "--", str(everything), "stdio"],
        cwd=str(ROOT),
        env={"CISORA_MESH_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")},
    )
    async with Client(params, mode=mode) as client:  # type: ignore[arg-type]
        assert client.protocol_version == "2025-11-25"
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "get-sum"} <= tools
        echo = await client.call_tool("echo", {"message": "through cisora"})
        assert [c.text for c in echo.content if isinstance(c, TextContent)] == ["Echo: through cisora"]
        total = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert "5" in "".join(c.text for c in total.content if isinstance(c, TextContent))
        resources = (await client.list_resources()).resources
        assert resources
        read = await client.read_resource(resources[0].uri)
        assert read.contents
        prompt = await client.get_prompt("simple-prompt", {})
        assert prompt.messages
