"""End to end over real stdio pipes: SDK client -> `cisora-mesh proxy stdio` -> examples/mcp_echo_server.py."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitResult, TextContent
from proxy_support import proxy_params

from cisora_mesh.audit import open_store

MODES = ["legacy", "2026-07-28"]


def _text(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def _accept(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"ok": True})


@pytest.mark.parametrize("mode", MODES)
async def test_forwarding_and_inspection_both_eras(mode: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    progress: list[float] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # SDK sampling/elicitation deprecation (SEP-2577)
        async with Client(proxy_params(home), mode=mode, elicitation_callback=_accept) as client:  # type: ignore[arg-type]
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"echo", "fetch_page", "read_config", "confirm", "slow"} <= tools

            assert _text(await client.call_tool("echo", {"text": "hello"})) == "hello"

            # A prompt injection in a tool result is withheld; the model gets a readable notice.
            poisoned = await client.call_tool("fetch_page", {"url": "https://shop.example"})
            assert poisoned.is_error
            assert "withheld by policy" in _text(poisoned)
            assert "PI-OVERRIDE-001" in _text(poisoned)

            # A secret in a result is redacted in place.
            leaked = await client.call_tool("read_config", {"name": "aws"})
            assert "ghp_" not in _text(leaked) and "[REDACTED:GITHUB_TOKEN]" in _text(leaked)

            # A secret exfiltrated into a call's arguments is redacted before the server sees it.
            echoed = await client.call_tool("echo", {"text": "token ghp_R2fq8ZkL0xWm3VtN7bYp4JcH1sDg6uQe9AoK"})
            assert _text(echoed) == "token [REDACTED:GITHUB_TOKEN]"

            # Progress and elicitation (a server request in legacy, an input_required round in 2026-07-28).
            done = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
            assert _text(done) == "done 3"
            assert progress == [1, 2, 3]
            assert _text(await client.call_tool("confirm", {"question": "deploy?"})) == "confirmed=True"

            about = await client.read_resource("info://about")
            assert "demo MCP server" in about.contents[0].text  # type: ignore[union-attr]
            leaky = await client.read_resource("info://leaky")
            assert "[REDACTED:GITHUB_TOKEN]" in leaky.contents[0].text  # type: ignore[union-attr]

            prompt = await client.get_prompt("summarize", {"topic": "owls"})
            assert "owls" in prompt.messages[0].content.text  # type: ignore[union-attr]

            assert (await client.call_tool("no_such_tool", {})).is_error  # the server's own answer, forwarded

    store = open_store(None, data_dir=home)
    try:
        assert store.size() >= 8  # every inspection point left an audit record before it was enforced
    finally:
        store.close()


async def test_blocked_call_carries_problem_data(tmp_path: Path) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text('[detection.dlp]\naction = "block"\n')
    async with Client(proxy_params(tmp_path / "home", "--config", str(config)), mode="legacy") as client:
        with pytest.raises(MCPError) as err:
            await client.call_tool("echo", {"text": "token ghp_R2fq8ZkL0xWm3VtN7bYp4JcH1sDg6uQe9AoK"})
    assert err.value.error.code == -32010
    data = err.value.error.data
    assert data["type"] == "urn:cisora:problem:policy-denied"
    assert data["decision_id"] and "DLP-SECRET-GITHUB-TOKEN" in data["rule_ids"]


def test_stdio_path_imports_no_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import mcp_proxy.cli, mcp_proxy.app, mcp_proxy.forward, mcp_proxy.listeners.stdio, mcp_proxy.upstream.stdio\n"
        "from cisora_mesh.cli import build_parser\n"
        "build_parser()\n"
        "heavy = ('torch', 'sentence_transformers', 'transformers', 'mcp')\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""  # the stdio proxy never pays for the MCP SDK or an ML stack


def test_example_config_loads() -> None:
    from mcp_proxy.config import load

    root = Path(__file__).resolve().parents[2]
    _, settings = load(root / "examples" / "proxy.toml")
    assert settings.pinning == "tofu"


def test_argument_rules_unit() -> None:
    from mcp_proxy.config import ArgumentRule
    from mcp_proxy.policy import ArgumentRules

    rules = ArgumentRules(
        [
            ArgumentRule(id="no-etc", tool="read_*", argument="path", deny_regex="^/etc/"),
            ArgumentRule(id="no-urls", server="files", argument="*", deny_regex="https?://"),
        ]
    )
    assert rules.check("s", "read_file", {"path": "/etc/shadow"}) == rules.check("x", "read_x", {"path": "/etc/x"})
    violation = rules.check("s", "read_file", {"path": "/etc/shadow"})
    assert violation is not None and violation.rule_id == "no-etc" and violation.location == "/params/arguments/path"
    assert rules.check("s", "write_file", {"path": "/etc/shadow"}) is None
    assert rules.check("s", "read_file", {"path": "/home/me"}) is None
    assert rules.check("files", "any", {"a": "ok", "b": "see http://x"}).rule_id == "no-urls"  # type: ignore[union-attr]
    assert rules.check("other", "any", {"b": "see http://x"}) is None


async def test_argument_policy_denial_is_audited(tmp_path: Path) -> None:
    config = tmp_path / "mesh.toml"
    config.write_text(
        '[[proxy.argument_rules]]\nid = "no-etc"\ntool = "echo"\nargument = "text"\ndeny_regex = "^/etc/"\n'
    )
    home = tmp_path / "home"
    async with Client(proxy_params(home, "--config", str(config)), mode="legacy") as client:
        with pytest.raises(MCPError) as err:
            await client.call_tool("echo", {"text": "/etc/passwd"})
        assert err.value.error.code == -32010
        assert err.value.error.data["rule_ids"] == ["no-etc"]
        assert _text(await client.call_tool("echo", {"text": "/home/me"})) == "/home/me"
    store = open_store(None, data_dir=home)
    try:
        assert store.size() >= 2
    finally:
        store.close()
