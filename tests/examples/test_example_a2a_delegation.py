"""examples/a2a_delegation.py end to end: signed cards, A2A delegation of a narrowed token, proxy over stdio pipes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("a2a")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "a2a_delegation.py"
DENIED = -32013


def _load() -> ModuleType:
    # examples/ is not a package, so load the script by path (as `python examples/a2a_delegation.py` would run it).
    spec = importlib.util.spec_from_file_location("a2a_delegation_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
async def test_b_calls_within_the_narrowed_grant_and_is_denied_outside_it() -> None:
    example = _load()
    lines: list[str] = []
    report = await example.run(log=lines.append, task="hello from the test")

    # The proxy lists only what B's narrowed token grants, though A's root token covers every echo-server tool.
    assert report["tools"] == ["echo"]
    allowed, other_tool, long_text = report["calls"]
    assert allowed == {
        "tool": "echo",
        "args": {"text": "hello from the test"},
        "allowed": True,
        "result": ["hello from the test"],
    }
    # Both refusals are inside A's root grant and outside B's: the proxy enforced the attenuation.
    assert (other_tool["tool"], other_tool["allowed"], other_tool["code"]) == ("fetch_page", False, DENIED)
    assert (long_text["tool"], long_text["allowed"], long_text["code"]) == ("echo", False, DENIED)
    assert len(long_text["args"]["text"]) > 40
    # Every trust step was taken, in order.
    text = "\n".join(lines)
    for step in (
        "[user] A's Agent Card signature verified",
        "[A] B's Agent Card signature verified",
        "[B] A's Agent Card signature verified",
        "[B] chain verified offline",
    ):
        assert step in text
