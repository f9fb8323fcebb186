"""Shared helpers for the MCP proxy tests: spawn the proxy over real stdio pipes."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from mcp import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
ECHO = str(ROOT / "examples" / "mcp_echo_server.py")
PY = sys.executable


def wait_listening(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port` (a server subprocess finished starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def proxy_argv(*options: str, upstream: list[str] | None = None) -> list[str]:
    return ["-m", "cisora_mesh", "proxy", "stdio", *options, "--", *(upstream or [PY, ECHO])]


def proxy_params(home: Path, *options: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=PY,
        args=proxy_argv(*options),
        cwd=str(ROOT),
        env={"CISORA_MESH_HOME": str(home), **(env or {})},
    )


class RawProxy:
    """A proxy process driven with raw JSON-RPC lines (for fault tests the SDK client would refuse to send)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.buffer: dict[Any, dict[str, Any]] = {}
        self.others: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, home: Path, *options: str, upstream: list[str] | None = None) -> RawProxy:
        env = {**os.environ, "CISORA_MESH_HOME": str(home)}
        proc = await asyncio.create_subprocess_exec(
            PY,
            *proxy_argv(*options, upstream=upstream),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def send_raw(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        await self.proc.stdin.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(msgspec.json.encode({"jsonrpc": "2.0", **message}))

    async def next(self, wait: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        assert line, "proxy closed its stdout"
        value: dict[str, Any] = msgspec.json.decode(line)
        return value

    async def response(self, rid: Any, wait: float = 15) -> dict[str, Any]:
        """Read until the response to `rid` arrives (other messages are kept)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while rid not in self.buffer:
            msg = await self.next(max(0.1, deadline - loop.time()))
            if "id" in msg and "method" not in msg:
                self.buffer[msg["id"]] = msg
            else:
                self.others.append(msg)
        return self.buffer.pop(rid)

    async def initialize(self) -> dict[str, Any]:
        await self.send(
            {
                "id": "init",
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "1"},
                },
            }
        )
        result = await self.response("init", wait=30)
        await self.send({"method": "notifications/initialized"})
        return result

    async def call(self, rid: Any, tool: str, arguments: dict[str, Any]) -> None:
        await self.send({"id": rid, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})

    async def close(self) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()
