"""Upstream connections: one per configured MCP server (spawned over stdio, or streamable HTTP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from mcp_proxy.framing import Oversized

FrameHandler = Callable[[bytes | Oversized], Awaitable[None]]


class Upstream(Protocol):
    """A connection to one MCP server that delivers raw JSON-RPC frames both ways."""

    name: str

    @property
    def ready(self) -> bool: ...

    async def send(self, frame: bytes) -> None:
        """Write one frame. Raises `UpstreamError` when the server is down."""
        ...

    async def run(
        self,
        on_frame: FrameHandler,
        on_up: Callable[[bool], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
    ) -> None:
        """Connect and deliver frames until cancelled, reconnecting with back-off after failures."""
        ...
