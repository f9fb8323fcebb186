"""Argument policy: rules on `tools/call` arguments, checked before the detection pipeline sees the call.

The hook is the `ArgumentPolicy` protocol (capability tokens or any other authorizer can implement it); the built-in
implementation is `ArgumentRules`, compiled once from `[[proxy.argument_rules]]`:

    [[proxy.argument_rules]]
    id = "no-system-files"     # rule id in the audit record and the JSON-RPC error
    server = "*"               # glob on the server name
    tool = "read_*"            # glob on the tool name
    argument = "path"          # top-level argument; "*" means every string argument
    deny_regex = "^/(etc|root)/"  # RE2 (linear time): a user-written rule cannot hang the proxy

A violation becomes a `block` decision that is audited like every other decision before the call is refused.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import re2

from mcp_proxy.errors import ProxyConfigError


@dataclass(frozen=True, slots=True)
class ArgumentViolation:
    rule_id: str
    location: str  # JSON Pointer into the request, e.g. /params/arguments/path


class ArgumentPolicy(Protocol):
    def check(self, server: str | None, tool: str, arguments: dict[str, Any]) -> ArgumentViolation | None: ...


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    server: str
    tool: str
    argument: str
    regex: Any  # re2 compiled pattern


class ArgumentRules:
    """Deny a call when a configured argument matches a configured RE2 pattern."""

    def __init__(self, rules: Sequence[Any]) -> None:
        compiled = []
        options = re2.Options()
        options.log_errors = False
        options.max_mem = 8 << 20
        for rule in rules:
            try:
                regex = re2.compile(rule.deny_regex, options)
            except re2.error as exc:
                raise ProxyConfigError(f"argument rule {rule.id!r}: invalid regex: {exc}") from None
            compiled.append(_Rule(rule.id, rule.server, rule.tool, rule.argument, regex))
        self._rules = tuple(compiled)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def check(self, server: str | None, tool: str, arguments: dict[str, Any]) -> ArgumentViolation | None:
        for rule in self._rules:
            if not fnmatch.fnmatchcase(server or "", rule.server) or not fnmatch.fnmatchcase(tool, rule.tool):
                continue
            names = list(arguments) if rule.argument == "*" else [rule.argument]
            for name in names:
                value = arguments.get(name)
                if isinstance(value, str) and rule.regex.search(value):
                    pointer = str(name).replace("~", "~0").replace("/", "~1")
                    return ArgumentViolation(rule.id, f"/params/arguments/{pointer}")
        return None
