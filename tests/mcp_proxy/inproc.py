"""The proxy run inside the test process (so its spans reach an in-memory exporter), over real transports.

- `PipeClient`: a `Session` whose downstream is a pair of real OS pipes (the stdio front's `StdioDownstream`), and
  whose upstream is a spawned server process over its real stdin/stdout.
- `serve_http`: the HTTP front (`build_app`) under uvicorn on a loopback socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import uvicorn

from cisora_mesh.config import MeshConfig
from mcp_proxy.app import Runtime, build_runtime
from mcp_proxy.config import ProxySettings
from mcp_proxy.forward import Session
from mcp_proxy.listeners.stdio import StdioDownstream
from mcp_proxy.listeners.streamable_http import UVICORN_OPTIONS, build_app
from mcp_proxy.telemetry import ProxyTelemetry
from mcp_proxy.upstream.stdio import StdioUpstream

MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "inproc-test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def runtime(
    home: Path,
    *,
    provider: Any = None,
    mesh: MeshConfig | None = None,
    settings: ProxySettings | None = None,
    audit: Any = None,
) -> Runtime:
    rt = build_runtime(
        mesh or MeshConfig(), settings or ProxySettings(pinning="off"), home, tenant="default", audit=audit
    )
    rt.telemetry = ProxyTelemetry(provider)
    return rt


class PipeClient:
    """Raw JSON-RPC lines written to and read from the proxy's stdio front through OS pipes."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        self._writer = writer
        self._reader = reader
        self.buffer: dict[Any, dict[str, Any]] = {}
        self.others: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self._writer.write(msgspec.json.encode({"jsonrpc": "2.0", **message}) + b"\n")
        await self._writer.drain()

    async def next(self, wait: float = 15) -> dict[str, Any]:
        line = await asyncio.wait_for(self._reader.readline(), wait)
        assert line, "proxy closed its output"
        value: dict[str, Any] = msgspec.json.decode(line)
        return value

    async def response(self, rid: Any, wait: float = 15) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while rid not in self.buffer:
            msg = await self.next(max(0.1, deadline - loop.time()))
            if "id" in msg and "method" not in msg:
                self.buffer[msg["id"]] = msg
            else:
                self.others.append(msg)
        return self.buffer.pop(rid)

    async def request(self, rid: Any, method: str, params: dict[str, Any], wait: float = 15) -> dict[str, Any]:
        await self.send({"id": rid, "method": method, "params": params})
        return await self.response(rid, wait)

    async def handshake(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "inproc-test", "version": "1"},
        }
        if meta is not None:
            params["_meta"] = meta
        result = await self.request("init", "initialize", params, wait=30)
        await self.send({"method": "notifications/initialized"})
        return result


@contextlib.asynccontextmanager
async def stdio_proxy(rt: Runtime, command: Sequence[str], *, server: str = "echo") -> AsyncIterator[PipeClient]:
    """A session of the stdio front over real pipes, forwarding to `command` (a real child process)."""
    loop = asyncio.get_running_loop()
    c2p_r, c2p_w = os.pipe()
    p2c_r, p2c_w = os.pipe()
    proxy_reader = asyncio.StreamReader(limit=rt.settings.max_frame_bytes + 1)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(proxy_reader), os.fdopen(c2p_r, "rb", 0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(p2c_w, "wb", 0))
    downstream = StdioDownstream(proxy_reader, asyncio.StreamWriter(transport, protocol, None, loop), 1 << 24)
    client_reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(client_reader), os.fdopen(p2c_r, "rb", 0))
    c_transport, c_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(c2p_w, "wb", 0))
    client_writer = asyncio.StreamWriter(c_transport, c_protocol, None, loop)
    upstream = StdioUpstream(server, command)
    session = Session(
        downstream,
        upstream,
        inspector=rt.inspector(),
        pins=rt.pin_guard({server: "off"}),
        spans=rt.spans("pipe", upstream),
    )
    done = anyio.Event()

    async def run() -> None:
        try:
            await session.run(downstream.frames())
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield PipeClient(client_writer, client_reader)
        finally:
            client_writer.close()  # EOF on the proxy's input: the session drains and stops its upstream
            with anyio.move_on_after(15):
                await done.wait()
            tg.cancel_scope.cancel()
            transport.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def http_proxy(rt: Runtime, command: Sequence[str]) -> AsyncIterator[str]:
    """The HTTP front under uvicorn on 127.0.0.1 (a real socket), forwarding to `command`; yields the /mcp URL."""
    port = free_port()
    app = build_app(rt, host="127.0.0.1", port=port, upstream_url=None, command=list(command), name="echo")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", **UVICORN_OPTIONS)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(20):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True


def sse_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response, whether it is one JSON body or an SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            msgspec.json.decode(line[5:].strip())
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    return [response.json()] if response.content else []
