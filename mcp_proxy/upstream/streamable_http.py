"""A streamable-HTTP MCP server as an upstream, through the SDK's client transport.

Frames are turned into SDK `SessionMessage`s only here (the HTTP transport speaks them). Each forwarded request is
stamped with `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers (libraries.md 1.5): the version comes
from the `initialize` result (handshake era) or the request's `_meta` (2026-07-28).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import msgspec

from mcp_proxy import jsonrpc
from mcp_proxy.errors import UpstreamError
from mcp_proxy.upstream import FrameHandler

logger = logging.getLogger("mcp_proxy.upstream")


class HttpUpstream:
    transport: Final = "tcp"  # network.transport on the spans of its messages

    def __init__(self, name: str, url: str, *, backoff_max: float = 5.0) -> None:
        self.name = name
        self.url = url
        self.backoff_max = backoff_max
        self._write: Any = None
        self._version: str | None = None

    @property
    def ready(self) -> bool:
        return self._write is not None

    async def send(self, frame: bytes) -> None:
        from mcp.shared.message import ClientMessageMetadata, SessionMessage
        from mcp.types import jsonrpc_message_adapter

        if self._write is None:
            raise UpstreamError(f"upstream {self.name!r} is not connected")
        env = jsonrpc.decode(frame)
        headers: dict[str, str] = {}
        if env.is_request or env.is_notification:
            method = str(env.method)
            params = jsonrpc.load(env.params) if len(env.params) else None
            version = self._version
            if isinstance(params, dict):
                meta = params.get("_meta")
                if isinstance(meta, dict) and isinstance(meta.get("io.modelcontextprotocol/protocolVersion"), str):
                    version = meta["io.modelcontextprotocol/protocolVersion"]
                name = params.get("name") if method in ("tools/call", "prompts/get") else params.get("uri")
                if isinstance(name, str) and name.isascii():
                    headers["mcp-name"] = name
            headers["mcp-method"] = method
            if version and method != "initialize":
                headers["mcp-protocol-version"] = version
        try:
            message = jsonrpc_message_adapter.validate_json(frame)
        except ValueError:  # pydantic's ValidationError
            raise UpstreamError(f"upstream {self.name!r}: the HTTP transport cannot carry this message") from None
        try:
            await self._write.send(SessionMessage(message, metadata=ClientMessageMetadata(headers=headers)))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise UpstreamError(f"upstream {self.name!r} connection closed") from None

    async def run(
        self,
        on_frame: FrameHandler,
        on_up: Callable[[bool], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
    ) -> None:
        from mcp.client.streamable_http import streamable_http_client

        backoff = 0.1
        restarted = False
        while True:
            try:
                async with streamable_http_client(self.url) as (read, write):
                    self._write = write
                    await on_up(restarted)
                    async for item in read:
                        if isinstance(item, Exception):
                            logger.warning("upstream %r sent an unreadable message: %s", self.name, type(item).__name__)
                            continue
                        frame = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
                        self._note_version(frame)
                        await on_frame(frame)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                logger.warning("upstream %r failed: %s", self.name, type(exc).__name__)
            self._write = None
            await on_down(f"upstream {self.name!r} disconnected")
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)
            restarted = True

    def _note_version(self, frame: bytes) -> None:
        if self._version is not None or b'"protocolVersion"' not in frame:
            return
        try:
            result = msgspec.json.decode(frame).get("result")
        except msgspec.DecodeError:
            return
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            self._version = result["protocolVersion"]
